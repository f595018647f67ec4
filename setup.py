"""efficientnet_tf: train, fine-tune and serve EfficientNet V1/V2 with TensorFlow and Keras 3."""

from setuptools import find_packages, setup

setup(
    name="efficientnet_tf",
    version="0.1.0",
    description="Train, fine-tune and serve EfficientNet V1/V2 on Cloud TPU, GPUs or a laptop",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["efficientnet_tf", "efficientnet_tf.*"]),
    # TensorFlow 2.16.1 with Keras 3.8 is the oldest pair the tests pass on (.ci/run's floor
    # tier: the replicated step loop and the TPU readiness tests); the TPU build tensorflow-tpu
    # 2.19.1 is tested too, but is a distribution of its own that this requirement does not
    # see: on a TPU VM install with scripts/tpu/install.sh (--no-deps). requirements.txt lists
    # the rest.
    install_requires=["tensorflow>=2.16.1", "keras>=3.8"] + [
        line.strip() for line in open("requirements.txt", encoding="utf-8")  # local: build
        if line.strip() and not line.startswith("#")],
    extras_require={
        # Resolving a pod slice by name (TPUClusterResolver(tpu=NAME)) asks the Cloud TPU API
        # through TensorFlow's own client, which needs these two. On a TPU build of TensorFlow
        # install them by name, not as this extra: with dependencies, pip would put the PyPI
        # `tensorflow` over `tensorflow-tpu` (scripts/tpu/host_install.sh does it right).
        "tpu": ["google-api-python-client", "oauth2client"],
        # TFDS datasets as a data source (the fine-tuning recipes); heavy, so optional.
        "tfds": ["tensorflow-datasets"],
        "dev": ["pytest", "pytest-xdist", "scikit-image", "tensorflow-serving-api", "ruff",
                "tensorflow-datasets",
                # the peer of scripts/bench_small_detection.py (keras-hub's RetinaNet)
                "keras-hub"],
    },
    entry_points={"console_scripts": ["efficientnet-tf=efficientnet_tf.main:run"]},
    classifiers=["Programming Language :: Python :: 3",
                 "License :: OSI Approved :: Apache Software License"],
)
