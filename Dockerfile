# efficientnet-tf in a container: training, evaluation, export and predict from one image.
#   docker build -t efficientnet-tf .
#   docker run --rm efficientnet-tf info --model=efficientnetv2-s
#   mkdir -p runs && docker run --rm --user "$(id -u)" -v "$PWD/runs:/runs" efficientnet-tf \
#       demo --workdir=/runs/digits
# CPUs by default. For NVIDIA GPUs, build with TensorFlow's CUDA libraries from PyPI and run with
# the GPUs passed in (the host needs only the NVIDIA driver and the container toolkit):
#   docker build --build-arg TENSORFLOW='tensorflow[and-cuda]' -t efficientnet-tf:gpu .
#   docker run --rm --gpus all efficientnet-tf:gpu info --model=efficientnetv2-s
# TensorFlow here is the PyPI wheel, which cannot drive TPUs. On a Cloud TPU VM, install the
# package on the host instead (scripts/tpu/install.sh), under the image's TPU build of
# TensorFlow.
FROM python:3.11-slim

# "tensorflow" (CPUs) or "tensorflow[and-cuda]" (NVIDIA GPUs, Linux)
ARG TENSORFLOW=tensorflow

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
RUN pip install "$TENSORFLOW" .

USER 1000:1000
WORKDIR /home/efficientnet
ENTRYPOINT ["efficientnet-tf"]
CMD ["--help"]
