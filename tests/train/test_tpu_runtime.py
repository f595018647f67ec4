"""The TPU VM runtime environment (PJRT), set before TensorFlow starts, and the software report."""

import os
import subprocess
import sys

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


def test_configure_keeps_what_the_user_set():
    environ = {"TPU_LOAD_LIBRARY": "1"}
    applied = tpu_runtime.configure("my-pod", environ)
    assert applied == {"TPU_NAME": "my-pod"}
    assert environ == {"TPU_LOAD_LIBRARY": "1", "TPU_NAME": "my-pod"}


def test_the_software_report_names_tensorflow_keras_libtpu_and_runtime(monkeypatch):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("TPU_RUNTIME_VERSION", "tpu-vm-tf-2.16.1-pjrt")
    report = tpu_runtime.software()
    assert report["tensorflow"] == tf.__version__ and report["keras"] == keras.__version__
    assert report["runtime"] == "tpu-vm-tf-2.16.1-pjrt"
    assert report["libtpu"] == "not found"  # no TPU on this machine
    assert report["tensorflow package"].startswith("tensorflow")


def test_the_tpu_command_without_a_tpu_is_one_line_and_sets_the_runtime_first():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("NEXT_PLUGGABLE_DEVICE_USE_C_API", None)
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from efficientnet_tf import main; "
         "sys.argv = ['efficientnet-tf', 'tpu', '--tpu=local']; main.run()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no TPU found for --tpu='local'" in errors[0]
    assert "Traceback" not in result.stderr
    assert "TPU runtime: NEXT_PLUGGABLE_DEVICE_USE_C_API=true" in result.stderr
