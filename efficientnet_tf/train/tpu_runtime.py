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

import fcntl
import importlib.metadata
import importlib.util
import os

# Where TPU VM images keep libtpu. Where TensorFlow is the `tensorflow-tpu` distribution, the pip
# package `libtpu` it depends on comes first: it is the one built for that TensorFlow, and what
# Google's TensorFlow TPU tests and keras.io load (libtpu.get_library_path(), the package's own
# libtpu.so). Otherwise the image's copy comes first (a pip libtpu may be JAX's).
LIBTPU_PATHS = ("/lib/libtpu.so", "/usr/lib/libtpu.so")


def _pip_libtpu():
    spec = importlib.util.find_spec("libtpu")  # found without importing it
    for directory in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(directory, "libtpu.so")  # local: the installed package
        if os.path.exists(candidate):  # local: the installed package
            return candidate
    return None


def libtpu_path():
    """The libtpu.so TensorFlow should load, or None when this machine has none."""
    image = next((path for path in LIBTPU_PATHS if os.path.exists(path)), None)  # local: the image
    pip = _pip_libtpu()
    if pip and (_version("tensorflow-tpu") or not image):
        return pip
    return image


def loaded_libtpu():
    """The libtpu this process has loaded (from /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:  # local: proc
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                name = path.rsplit("/", 1)[-1]
                if name.startswith("libtpu") and name.endswith(".so"):
                    return path
    except OSError:
        pass
    return None


# libtpu lets one process at a time use the chips: it holds a POSIX lock on this file. A second
# process that loads it as TensorFlow's PJRT plugin dies in a native check failure ("Internal
# error when accessing libtpu multi-process lockfile"), so the CLI looks first.
LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"


class TPUInUseError(ValueError):
    EXIT_CODE = 1  # the machine's state, not a usage error


def tpu_holder(lockfile=LIBTPU_LOCKFILE):
    """The process holding libtpu's lock ("pid N (command)"), or None when it is free. Only
    before this process loads libtpu: closing the file drops this process's own POSIX locks."""
    try:
        descriptor = os.open(lockfile, os.O_RDWR)  # local: libtpu's lock file on this machine
    except OSError:
        return None  # none yet, or another user's: libtpu reports that case itself
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # free (closing the file below releases the lock at once)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    pid = lock_owner(lockfile)
    if pid is None:
        return "another process"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:  # local: the kernel's process table
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({command.strip()[:120]})"


def lock_owner(lockfile=LIBTPU_LOCKFILE):
    """The pid (text) of the process holding a POSIX lock on `lockfile`, from the kernel's lock
    table, or None (no lock, no file, or no /proc)."""
    try:
        inode = os.stat(lockfile).st_ino  # local: libtpu's lock file on this machine
        with open("/proc/locks", encoding="ascii") as locks:  # local: the kernel's lock table
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[5].endswith(f":{inode}"):
                    return fields[4]
    except OSError:
        pass
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
    if tpu == "local" and environ.get("TPU_LOAD_LIBRARY") == "0":
        # TensorFlow's plugin loader aborts the process (a native check failure) on this.
        raise ValueError("--tpu=local loads libtpu as TensorFlow's PJRT plugin, which "
                         "TPU_LOAD_LIBRARY=0 (set in this environment) forbids: TensorFlow "
                         "would abort. Unset it; it is for host 0 of a pod slice (--tpu=NAME)")
    if tpu == "local" and environ.get("ALLOW_MULTIPLE_LIBTPU_LOAD") != "1":
        holder = tpu_holder()
        if holder:
            raise TPUInUseError(
                f"the TPU is in use: {holder} holds libtpu's lock {LIBTPU_LOCKFILE} (one "
                f"process at a time may use the chips): wait for it to end, or stop it")
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
    # The library this process loaded, else the one the CLI set or would set, with the pip
    # package's version when that is where it lives.
    loaded = loaded_libtpu()
    path = loaded or os.environ.get("TF_PLUGGABLE_DEVICE_LIBRARY_PATH") or libtpu_path()
    version = next((f"{name} {version}" for name, version in packages.items()
                    if name.startswith("libtpu") and version), None)
    if path and version and path == _pip_libtpu():
        path = f"{path} ({version})"
    report["libtpu"] = (path + ("" if loaded else ", not loaded")) if path else "not found"
    report["runtime"] = os.environ.get("TPU_RUNTIME_VERSION", "unknown (scripts/tpu/train.sh "
                                                              "sets TPU_RUNTIME_VERSION)")
    return report


def describe_software():
    return ", ".join(f"{name} {value}" for name, value in software().items())
