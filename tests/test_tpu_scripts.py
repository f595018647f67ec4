"""scripts/tpu/*.sh against a stand-in `gcloud` on PATH that records its calls and answers
from a script of replies, and host_install.sh run twice in a scratch virtualenv that stands in
for a TPU VM image. No Google Cloud is reached: what is checked is what the scripts ask for and
how they react to the answers."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TPU = ROOT / "scripts" / "tpu"

# The stand-in gcloud: appends its arguments (one JSON list per call) to $GCLOUD_CALLS; for
# `versions list` prints $GCLOUD_VERSIONS; for `queued-resources describe` prints the next line
# of $GCLOUD_STATES (the last line once they run out).
GCLOUD = textwrap.dedent("""\
    #!/usr/bin/env python3
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["GCLOUD_CALLS"], "a") as calls:
        calls.write(json.dumps(args) + "\\n")
    if args[:4] == ["compute", "tpus", "tpu-vm", "versions"]:
        print(os.environ.get("GCLOUD_VERSIONS", "").replace(",", "\\n"))
    elif args[:4] == ["compute", "tpus", "queued-resources", "describe"]:
        states = os.environ["GCLOUD_STATES"].split(",")
        asked = os.environ["GCLOUD_CALLS"] + ".asked"
        n = int(open(asked).read()) if os.path.exists(asked) else 0
        open(asked, "w").write(str(n + 1))
        print(states[min(n, len(states) - 1)])
    """)


def run_script(name, tmp_path, **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(GCLOUD)
    gcloud.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    environ = {key: value for key, value in os.environ.items()
               if key not in ("TPU_NAME", "ZONE", "ACCELERATOR", "TF_VERSION", "TF_TPU",
                              "RUNTIME_VERSION", "QUEUED", "SPOT", "PROJECT")}
    environ.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", GCLOUD_CALLS=str(calls),
                   POLL_SECONDS="0", **env)
    result = subprocess.run(["bash", str(TPU / name)], env=environ, capture_output=True,
                            text=True, timeout=60, check=False)
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result, made


@pytest.mark.parametrize("state", ["FAILED", "SUSPENDED"])
def test_a_queued_resource_that_fails_stops_create_with_a_clear_line(tmp_path, state):
    result, calls = run_script("create.sh", tmp_path, QUEUED="1",
                               GCLOUD_VERSIONS="tpu-vm-tf-2.16.1-pjrt",
                               GCLOUD_STATES=f"WAITING_FOR_RESOURCES,PROVISIONING,{state}")
    assert result.returncode == 1
    assert result.stdout.count("waiting for capacity") == 2
    assert "(queued resource efficientnet: PROVISIONING)" in result.stdout
    assert f"error: queued resource efficientnet is {state} and will not become ACTIVE" in (
        result.stderr)
    assert "QUEUED=1 bash scripts/tpu/delete.sh" in result.stderr
    assert not any(call[2:4] == ["tpu-vm", "describe"] for call in calls)


def test_a_queued_resource_that_becomes_active_is_described(tmp_path):
    result, calls = run_script("create.sh", tmp_path, QUEUED="1", SPOT="1",
                               GCLOUD_VERSIONS="tpu-vm-tf-2.16.1-pjrt",
                               GCLOUD_STATES="ACCEPTED,ACTIVE")
    assert result.returncode == 0, result.stderr
    create = next(call for call in calls if call[2:4] == ["queued-resources", "create"])
    assert create[create.index("--runtime-version") + 1] == "tpu-vm-tf-2.16.1-pjrt"
    assert "--spot" in create and "--accelerator-type" in create
    assert calls[-1][2:4] == ["tpu-vm", "describe"]


@pytest.mark.parametrize("accelerator, runtime", [
    ("v6e-8", "v2-alpha-tpuv6e"), ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v4-8", "tpu-ubuntu2204-base")])
def test_tf_tpu_creates_the_generations_base_image(tmp_path, accelerator, runtime):
    result, calls = run_script("create.sh", tmp_path, TF_TPU="2.19.1", ACCELERATOR=accelerator,
                               GCLOUD_VERSIONS=f"tpu-vm-tf-2.16.1-pjrt,{runtime}")
    assert result.returncode == 0, result.stderr
    create = next(call for call in calls if call[2:4] == ["tpu-vm", "create"])
    assert create[create.index("--version") + 1] == runtime


def test_a_runtime_the_zone_lacks_is_refused_before_anything_is_created(tmp_path):
    result, calls = run_script("create.sh", tmp_path, TF_VERSION="2.99.0",
                               GCLOUD_VERSIONS="tpu-vm-tf-2.18.0-pjrt,tpu-vm-tf-2.16.1-pjrt")
    assert result.returncode == 1
    assert "runtime tpu-vm-tf-2.99.0-pjrt is not offered in us-central1-a" in result.stderr
    assert "tpu-vm-tf-2.16.1-pjrt\ntpu-vm-tf-2.18.0-pjrt" in result.stderr
    assert len(calls) == 1  # only the list


@pytest.mark.parametrize("accelerator, tpu_flag, runtime_env", [
    ("v3-8", "--tpu=local", "NEXT_PLUGGABLE_DEVICE_USE_C_API=true"),
    ("v4-32", "--tpu=efficientnet", "TPU_NAME=efficientnet TPU_LOAD_LIBRARY=0")])
def test_train_keeps_the_start_up_messages_in_the_log(tmp_path, accelerator, tpu_flag,
                                                       runtime_env):
    result, calls = run_script("train.sh", tmp_path, ACCELERATOR=accelerator,
                               WORKDIR="gs://b/runs/x", DATA="gs://b/imagenet")
    assert result.returncode == 0, result.stderr
    (ssh,) = calls
    command = ssh[ssh.index("--command") + 1]
    assert f"{tpu_flag} " in command and runtime_env in command  # --tpu keeps start-up errors
    assert "> train.log 2>&1" in command
    assert "--worker=0" in ssh


def test_tf_tpu_is_refused_for_a_multi_host_slice(tmp_path):
    for script in ("create.sh", "install.sh"):
        result, calls = run_script(script, tmp_path, TF_TPU="2.19.1", ACCELERATOR="v5p-32")
        assert result.returncode == 1 and calls == []
        assert "TF_TPU=2.19.1 (a base image) is for single-host slices" in result.stderr


def test_install_passes_tf_tpu_to_every_host_and_checks_from_host_0(tmp_path):
    index = "https://example.invalid/libtpu/index.html"
    result, calls = run_script("install.sh", tmp_path, TF_TPU="2.19.1", ACCELERATOR="v5p-8",
                               PIP_FIND_LINKS=index)
    assert result.returncode == 0, result.stderr
    scp, install, check = calls
    assert scp[2:4] == ["tpu-vm", "scp"] and "--worker=all" in install
    assert f"PIP_FIND_LINKS={index} TF_TPU=2.19.1 bash ~/efficientnet_tf/scripts/tpu/" \
        "host_install.sh 0" in install[install.index("--command") + 1]
    assert "efficientnet-tf tpu --tpu=local" in check[check.index("--command") + 1]


def _stand_in_image(tmp_path):
    """A virtualenv holding what a TPU VM image has and we must not touch: a TensorFlow build
    (a stand-in distribution named tensorflow 2.16.1) and a package installed from a local
    file (a "name @ file://" line in pip freeze)."""
    venv = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = pathlib.Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    for name, version, extra in (("tensorflow", "2.16.1", None),
                                 ("image-tool", "1.0", "file:///opt/image-tool")):
        package = site / name.replace("-", "_")
        package.mkdir()
        (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
        if extra:
            (info / "direct_url.json").write_text(json.dumps({"url": extra, "dir_info": {}}))
    return python


@pytest.mark.slow  # installs Keras and its dependencies into a scratch virtualenv
def test_host_install_runs_twice_and_leaves_the_images_tensorflow_alone(tmp_path):
    # This checkout, with one light requirement, so that the test installs little.
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "efficientnet_tf", checkout / "efficientnet_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TPU, checkout / "scripts" / "tpu")
    for name in ("setup.py", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, checkout / name)
    (checkout / "requirements.txt").write_text("absl-py\n")
    python = _stand_in_image(tmp_path)
    environ = dict(os.environ, PYTHON=str(python))
    environ.pop("TF_TPU", None)
    runs, frozen = [], []
    for _ in range(2):
        runs.append(subprocess.run(["bash", str(checkout / "scripts" / "tpu" / "host_install.sh")],
                                   env=environ, capture_output=True, text=True, timeout=600,
                                   check=False))
        frozen.append(subprocess.run([python, "-m", "pip", "freeze", "--all"],
                                     capture_output=True, text=True, check=True).stdout)
    assert frozen[0] == frozen[1]  # the second run changed nothing
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip().splitlines()[-1] == (
            "TensorFlow: tensorflow 2.16.1 | Keras 3.8.0 | libtpu none found")
    assert "installing keras==3.8.0" in runs[0].stdout  # the image had none
    assert "installing keras" not in runs[1].stdout  # the second run keeps it
    assert "tensorflow==2.16.1" in frozen[1] and "image-tool @ file:///opt/image-tool" in frozen[1]
