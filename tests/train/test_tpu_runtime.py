"""The TPU VM runtime environment (PJRT), set before TensorFlow starts, and the software report."""

import os
import subprocess
import sys

import pytest

from efficientnet_tf.train import tpu_runtime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_single_host_pjrt_loads_libtpu_as_a_pluggable_device():
    assert tpu_runtime.environment("local", libtpu="/lib/libtpu.so") == {
        "NEXT_PLUGGABLE_DEVICE_USE_C_API": "true",
        "TF_PLUGGABLE_DEVICE_LIBRARY_PATH": "/lib/libtpu.so"}


def test_a_pod_slice_reaches_its_hosts_by_name_without_loading_libtpu():
    assert tpu_runtime.environment("v4-32-pod") == {"TPU_NAME": "v4-32-pod",
                                                     "TPU_LOAD_LIBRARY": "0"}
    assert tpu_runtime.environment("grpc://10.0.0.2:8470") == {}
    assert tpu_runtime.environment(None) == {}


def test_the_pip_libtpu_comes_first_where_tensorflow_is_tensorflow_tpu(tmp_path, monkeypatch):
    package = tmp_path / "site" / "libtpu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    image_copy = tmp_path / "lib" / "libtpu.so"
    image_copy.parent.mkdir()
    image_copy.write_bytes(b"")
    monkeypatch.setattr(tpu_runtime, "LIBTPU_PATHS", (str(image_copy),))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")] + sys.path)
    monkeypatch.delitem(sys.modules, "libtpu", raising=False)
    tensorflow_tpu = {"tensorflow-tpu": "2.19.1"}
    monkeypatch.setattr(tpu_runtime, "_version", tensorflow_tpu.get)
    assert tpu_runtime.libtpu_path() == str(image_copy)  # the package holds no libtpu.so yet
    (package / "libtpu.so").write_bytes(b"")
    assert tpu_runtime.libtpu_path() == str(package / "libtpu.so")
    assert tpu_runtime.environment("local")["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] == str(
        package / "libtpu.so")
    tensorflow_tpu.clear()  # an image's own TensorFlow build: its libtpu (a pip one may be JAX's)
    assert tpu_runtime.libtpu_path() == str(image_copy)
    image_copy.unlink()
    assert tpu_runtime.libtpu_path() == str(package / "libtpu.so")


def test_configure_keeps_what_the_user_set():
    environ = {"TPU_LOAD_LIBRARY": "1"}
    applied = tpu_runtime.configure("my-pod", environ)
    assert applied == {"TPU_NAME": "my-pod"}
    assert environ == {"TPU_LOAD_LIBRARY": "1", "TPU_NAME": "my-pod"}


def test_local_with_libtpu_loading_switched_off_is_refused_before_tensorflow_aborts():
    # tensorflow-tpu 2.19.1 dies in TF_LoadPluggableDeviceLibrary ("TPU_LOAD_LIBRARY=0, not
    # loading libtpu") when both are set: the setting of a pod's host 0 left in the environment.
    with pytest.raises(ValueError, match="TPU_LOAD_LIBRARY=0 .* forbids"):
        tpu_runtime.configure("local", {"TPU_LOAD_LIBRARY": "0"})
    assert tpu_runtime.configure("my-pod", {"TPU_LOAD_LIBRARY": "0"}) == {"TPU_NAME": "my-pod"}


def test_the_software_report_names_tensorflow_keras_libtpu_and_runtime(monkeypatch):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("TPU_RUNTIME_VERSION", "tpu-vm-tf-2.16.1-pjrt")
    report = tpu_runtime.software()
    assert report["tensorflow"] == tf.__version__ and report["keras"] == keras.__version__
    assert report["runtime"] == "tpu-vm-tf-2.16.1-pjrt"
    # The TPU build's tier has the pip libtpu that tensorflow-tpu depends on, loaded when
    # TensorFlow was imported; the CPU wheels have none.
    loaded = tpu_runtime.loaded_libtpu()
    found = loaded or tpu_runtime.libtpu_path()
    if found is None:
        assert report["libtpu"] == "not found"
    else:
        assert report["libtpu"].startswith(found)
        assert report["libtpu"].endswith(", not loaded") == (loaded is None)
    assert report["tensorflow package"].startswith("tensorflow")


def test_the_tpu_command_without_a_tpu_is_one_line_and_sets_the_runtime_first():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("NEXT_PLUGGABLE_DEVICE_USE_C_API", None)
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from efficientnet_tf import main; "
         "sys.argv = ['efficientnet-tf', 'tpu', '--tpu=local']; main.run()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert "Traceback" not in result.stderr
    # The TPU build loads libtpu when TensorFlow is imported, and the first process of the tier to
    # do so (a pytest worker) holds libtpu's lock.
    holder = tpu_runtime.lock_owner()
    if holder is None:
        assert len(errors) == 1 and "no TPU found for --tpu='local'" in errors[0]
        assert "TPU runtime: NEXT_PLUGGABLE_DEVICE_USE_C_API=true" in result.stderr
    else:  # the TPU build: a process of this test run loaded libtpu when it imported TensorFlow
        assert len(errors) == 1 and f"the TPU is in use: pid {holder} (" in errors[0]


def test_a_tpu_held_by_another_process_is_named_before_libtpu_aborts(tmp_path):
    lockfile = tmp_path / "libtpu_lockfile"
    lockfile.write_bytes(b"")
    assert tpu_runtime.tpu_holder(str(lockfile)) is None
    holder = subprocess.Popen(  # holds the lock as libtpu does (a POSIX lock on the file)
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lockfile)!r}, os.O_RDWR)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert tpu_runtime.tpu_holder(str(lockfile)).startswith(f"pid {holder.pid} (")
    finally:
        holder.kill()
        holder.wait()
    assert tpu_runtime.tpu_holder(str(lockfile)) is None  # released with its process


CHILD = """
import os, sys
import tensorflow as tf
from efficientnet_tf import main
discover = tf.config.list_physical_devices
def noisy_discovery(*args):  # a native start-up message, as libtpu writes when chips are busy
    os.write(2, b"libtpu-like: the TPU is already in use by process 123\\n")
    return discover(*args)
tf.config.list_physical_devices = noisy_discovery
sys.argv = ["efficientnet-tf", "tpu"] + sys.argv[1:]
main.run()
"""


def test_with_tpu_set_tensorflows_start_up_messages_reach_the_log():
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "NEXT_PLUGGABLE_DEVICE_USE_C_API",
                 "TF_PLUGGABLE_DEVICE_LIBRARY_PATH"):
        env.pop(name, None)
    with_tpu, without = (subprocess.run([sys.executable, "-c", CHILD, *flags], cwd=ROOT, env=env,
                                        capture_output=True, text=True, timeout=300, check=False)
                         for flags in (["--tpu=grpc://127.0.0.1:1"], []))
    assert with_tpu.returncode == 1 and "no TPU found" in with_tpu.stderr
    assert "the TPU is already in use by process 123" in with_tpu.stderr
    # Without --tpu the same start-up lines stay hidden (the usage error is all there is).
    assert without.returncode == 2 and "needs --tpu=" in without.stderr
    assert "already in use" not in without.stderr
