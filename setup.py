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
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "absl-py",
        "ml_collections",
        "tensorflow-datasets",
        "h5py",
        "numpy",
        "tqdm",
        "tensorboard",
        "matplotlib",
        # The embedded default run (efficientnet-tf demo) writes scikit-learn's digits as PNGs.
        "scikit-learn",
        "pillow",
    ],
    extras_require={
        "tpu": ["cloud-tpu-client"],
        "dev": ["pytest", "scikit-image", "tensorflow-serving-api", "ruff"],
    },
    entry_points={"console_scripts": ["efficientnet-tf=efficientnet_tf.main:run"]},
    classifiers=["Programming Language :: Python :: 3",
                 "License :: OSI Approved :: Apache Software License"],
)
