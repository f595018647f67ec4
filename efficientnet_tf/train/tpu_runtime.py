"""The Cloud TPU VM software a run meets: the environment PJRT runtimes need, and what is there.

TensorFlow reaches TPU chips through libtpu, which TensorFlow loads when it is imported, so the
environment must be set before the first `import tensorflow` (the CLI does it right after
parsing its flags, before any command runs). What Google's TPU tests and Vertex docs set
(docs/reference.md has the sources; README "Training on Cloud TPU"):

  one host (--tpu=local)   NEXT_PLUGGABLE_DEVICE_USE_C_API=true and
                           TF_PLUGGABLE_DEVICE_LIBRARY_PATH=<libtpu.so>: TensorFlow loads libtpu
                           as a pluggable device (the -pjrt runtimes).
  pod slice (--tpu=NAME)   TPU_NAME=NAME and TPU_LOAD_LIBRARY=0: the program on host 0 does not
                           load libtpu itself; it reaches every host's TensorFlow server.
A variable the user already set is kept. This module imports no TensorFlow at load time.
"""

import importlib.metadata
import importlib.util
import os

# Where TPU VM images keep libtpu; a pip-installed libtpu package holds its own copy.
LIBTPU_PATHS = ("/lib/libtpu.so", "/usr/lib/libtpu.so")


def libtpu_path():
    """The libtpu.so TensorFlow should load, or None when this machine has none."""
    for path in LIBTPU_PATHS:
        if os.path.exists(path):  # local: a file of this machine's image
            return path
    spec = importlib.util.find_spec("libtpu")
    if spec and spec.submodule_search_locations:
        for directory in spec.submodule_search_locations:
            candidate = os.path.join(directory, "libtpu.so")  # local: the installed package
            if os.path.exists(candidate):  # local: the installed package
                return candidate
    return None


def environment(tpu, libtpu=None):
    """{variable: value} that a run with --tpu=`tpu` needs ({} without a TPU)."""
    if not tpu:
        return {}
    if tpu == "local":
        libtpu = libtpu or libtpu_path()
        settings = {"NEXT_PLUGGABLE_DEVICE_USE_C_API": "true"}
        if libtpu:
            settings["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] = libtpu
        return settings
    if tpu.startswith("grpc://"):  # an explicit address: nothing to look up or load
        return {}
    return {"TPU_NAME": tpu, "TPU_LOAD_LIBRARY": "0"}


def configure(tpu, environ=None):
    """Sets what `environment(tpu)` lists, keeping values already set; returns what it set.

    Must run before TensorFlow is imported."""
    environ = os.environ if environ is None else environ
    applied = {}
    for name, value in environment(tpu).items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def software():
    """{name: version} of the TPU software stack, for the start-of-run log."""
    import tensorflow as tf  # only here: importing it earlier would load libtpu too early
    import keras

    packages = {name: _version(name) for name in ("tensorflow", "tensorflow-tpu",
                                                    "tensorflow-cpu", "libtpu",
                                                    "libtpu-nightly")}
    report = {"tensorflow": tf.__version__, "keras": keras.__version__}
    report["tensorflow package"] = next(
        (f"{name} {version}" for name, version in packages.items()
         if name.startswith("tensorflow") and version), "unknown")
    libtpu = next((f"{name} {version}" for name, version in packages.items()
                   if name.startswith("libtpu") and version), None)
    report["libtpu"] = libtpu or os.environ.get("TF_PLUGGABLE_DEVICE_LIBRARY_PATH") or (
        libtpu_path() or "not found")
    report["runtime"] = os.environ.get("TPU_RUNTIME_VERSION", "unknown (scripts/tpu/train.sh "
                                                              "sets TPU_RUNTIME_VERSION)")
    return report


def describe_software():
    return ", ".join(f"{name} {value}" for name, value in software().items())
