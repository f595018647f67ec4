# efficientnet-tf in a container: training, evaluation, export and predict from one image.
#   docker build -t efficientnet-tf .
#   docker run --rm efficientnet-tf info --model=efficientnetv2-s
#   mkdir -p runs && docker run --rm --user "$(id -u)" -v "$PWD/runs:/runs" efficientnet-tf \
#       demo --workdir=/runs/digits
# For CPUs and GPUs: TensorFlow here is the PyPI wheel, which cannot drive TPUs. On a Cloud TPU
# VM, install the package on the host instead (scripts/tpu/install.sh), under the image's TPU
# build of TensorFlow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin efficientnet

WORKDIR /opt/efficientnet_tf
COPY setup.py README.md requirements.txt MANIFEST.in ./
COPY efficientnet_tf ./efficientnet_tf
COPY experiments ./experiments
COPY scripts ./scripts
# The package installed is this checkout itself; its dependencies are the ranges setup.py declares.
# hadolint ignore=DL3013
RUN pip install .

USER 1000:1000
WORKDIR /home/efficientnet
ENTRYPOINT ["efficientnet-tf"]
CMD ["--help"]
