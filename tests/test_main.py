"""Errors a user can cause at the command line: one line naming the thing and what to do.

Each case runs the `efficientnet-tf` console script (the module when the script is not
installed) in a fresh process: exit code 2 for usage errors (a bad flag, config key or value, a
missing config file), 1 for runtime failures (a path that cannot be written, a full disk, no
TPU); no traceback unless --verbose.
"""

import os
import resource
import subprocess
import sys

import pytest

from efficientnet_tf.train import trainer

from trainutil import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
SCRIPT = os.path.join(os.path.dirname(sys.executable), "efficientnet-tf")
COMMAND = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "efficientnet_tf.main"]
FOLDER = "--config=experiments/folder.py:efficientnetv2-test"


def cli(*args, file_size_limit=None, env=None):
    """(exit code, stderr lines) of the command line with `args`."""
    def limit():  # a full disk, as a process sees it: writes past the limit fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    result = subprocess.run(COMMAND + list(args), cwd=ROOT, env={**ENV, **(env or {})},
                            capture_output=True,
                            text=True, timeout=300,
                            preexec_fn=limit if file_size_limit else None)
    return result.returncode, result.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A finished tiny run to export."""
    from imagedata import write_folder
    base = tmp_path_factory.mktemp("cli")
    root = str(write_folder(base / "images", per_class=8, size=(40, 32)))
    path = str(base / "run")
    trainer.train_and_evaluate(tiny_config(root, **{"train.steps": 2}), path)
    return path


@pytest.mark.parametrize("args, message", [
    (["train", "--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["train", FOLDER, "--config.train.bach_size=3"], 'Did you mean "batch_size"'),
    (["train", FOLDER, "--config.train.epochs=abc"], "could not convert string to float"),
    (["train", "--config=experiments/nowhere.py", "--workdir=/tmp/x"],
     "config file 'experiments/nowhere.py' does not exist"),
    (["fly"], "usage: efficientnet-tf {info|train|eval|export|predict|convert|scale-search|demo|"
     "tpu}"),
    (["convert", "--weights=efficientnet-b0/baseline"], "convert needs --output=FILE.weights.h5"),
    (["convert", "--weights=efficientnet-b0/noisy", "--output=/tmp/b0.weights.h5"],
     "unknown checkpoint 'efficientnet-b0/noisy': efficientnet-b0 has baseline, autoaugment, "
     "advprop, noisy-student"),
    (["predict", "--weights=/tmp/model.ckpt", "/tmp/a.jpg"],
     "--weights=/tmp/model.ckpt does not say which variant it holds: add --model=NAME"),
    (["predict", "--model=/tmp/export", "/tmp/a.jpg"],
     "predict --model=/tmp/export names the variant of --weights; an export or a workdir is "
     "--export_dir"),
    (["demo", "segmentation", "--workdir=/tmp/x"],
     "demo takes no argument, 'detection' or 'scaling', got 'segmentation'"),
    (["scale-search", "--workdir=/tmp/x"], "scale-search needs --config=experiments/FILE.py"),
    (["scale-search", FOLDER, "--workdir=/tmp/x", "--shard=2/2"],
     "shard must be i/n with 0 <= i < n (e.g. 0/2 and 1/2 on two machines), got '2/2'"),
    (["scale-search", FOLDER, "--workdir=/tmp/x", "--seeds=0,one"],
     "--seeds must be integers separated by commas, got '0,one'"),
    (["scale-search", FOLDER, "--workdir=/tmp/x", "--base=efficientdet-d0"],
     "scale-search scales a classification network; 'efficientdet-d0' is a detector"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    code, lines = cli(*args)
    assert code == 2 and len(lines) == 1, lines[-20:]
    assert lines[0].startswith("efficientnet-tf") and message in lines[0], lines


def test_a_missing_data_root_is_a_usage_error(tmp_path):
    code, lines = cli("train", FOLDER, f"--workdir={tmp_path}/run",
                      f"--config.data.root={tmp_path}/photos")
    assert code == 2 and "Traceback" not in "\n".join(lines)
    assert lines[-1] == (f"efficientnet-tf train: error: image folder '{tmp_path}/photos' does "
                         "not exist or is not a directory"), lines[-20:]


def test_an_unwritable_workdir_is_one_line_and_exit_1(workdir):
    root = os.path.dirname(workdir) + "/images"
    code, lines = cli("train", FOLDER, "--workdir=/proc/efficientnet_tf_run",
                      f"--config.data.root={root}", "--config.data.eval_percent=50",
                      "--config.train.steps=2", "--config.progressive.num_stages=1")
    assert code == 1 and "Traceback" not in "\n".join(lines), lines[-20:]
    assert lines[-1].startswith("efficientnet-tf train: error: /proc/efficientnet_tf_run")
    assert "its parent must be a directory you can write to" in lines[-1]


def test_an_unwritable_export_dir_is_one_line_and_exit_1(workdir):
    code, lines = cli("export", f"--workdir={workdir}", "--export_dir=/proc/efficientnet_export")
    assert code == 1 and "Traceback" not in "\n".join(lines), lines[-20:]
    assert lines[-1].startswith("efficientnet-tf export: error: ") and \
        "/proc/efficientnet_export" in lines[-1]


def test_a_full_disk_is_one_line_and_exit_1(workdir, tmp_path):
    code, lines = cli("export", f"--workdir={workdir}", f"--export_dir={tmp_path}/export",
                      file_size_limit=32 * 1024)
    assert code == 1 and "Traceback" not in "\n".join(lines), lines[-20:]
    assert lines[-1].startswith("efficientnet-tf export: error: ")
    assert lines[-1].endswith("the disk is full or the file too large; free space or write "
                              "elsewhere"), lines[-1]


def test_verbose_shows_the_traceback(tmp_path):
    code, lines = cli("train", FOLDER, f"--workdir={tmp_path}/run",
                      f"--config.data.root={tmp_path}/photos", "--verbose")
    assert code != 0 and "Traceback (most recent call last):" in lines


def test_predict_on_a_missing_export_says_it_does_not_exist(tmp_path):
    code, lines = cli("predict", f"--export_dir={tmp_path}/export", f"{tmp_path}/a.jpg")
    assert code == 2 and lines[-1] == (f"efficientnet-tf predict: error: '{tmp_path}/export' "
                                       "does not exist")


def test_info_lists_the_official_checkpoints():
    result = subprocess.run(COMMAND + ["info", "--weights"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith(("efficientnet", "efficientdet"))]
    assert len(rows) == 78 and "78 checkpoints." in result.stdout
    assert rows[0].split()[:5] == ["efficientnet-b0/baseline", "1000", "mean_std", "224",
                                   "shadows"]
    assert any(row.startswith("efficientnetv2-xl/imagenet21k ") and " 21843 " in row
               for row in rows)


def test_a_download_without_network_is_one_line_and_exit_1(tmp_path):
    from weightserver import refused_port

    with refused_port() as port:
        code, lines = cli("convert", "--weights=efficientnet-b0/baseline",
                          f"--output={tmp_path}/b0.weights.h5",
                          env={"EFFICIENTNET_TF_WEIGHTS_MIRROR": f"http://127.0.0.1:{port}",
                               "EFFICIENTNET_TF_CACHE": str(tmp_path / "cache")})
    assert code == 1 and "Traceback" not in "\n".join(lines), lines[-20:]
    assert lines[-1].startswith("efficientnet-tf convert: error: cannot download http://127.0.0.1")
    assert f"put it at {tmp_path}/cache/storage.googleapis.com/cloud-tpu-checkpoints/" \
           "efficientnet/ckpts/efficientnet-b0.tar.gz" in lines[-1]


def test_each_command_s_help_shows_its_own_flags_and_train_s_its_experiments():
    result = subprocess.run(COMMAND + ["train", "--help"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("efficientnet-tf train:")
    assert "--dry_run" in text and "--workdir" in text and "--quantize" not in text
    assert "experiments/detect_folder.py" in text and "experiments/folder.py" in text
    assert "efficientnet_tf/train/config.py" in text
    result = subprocess.run(COMMAND + ["export", "-h"], cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert "--quantize (default: none)" in result.stdout and "--dry_run" not in result.stdout
    assert "experiments/" not in result.stdout


def test_train_dry_run_prints_the_decided_config_and_trains_nothing(tmp_path):
    from imagedata import write_folder
    root = str(write_folder(tmp_path / "images", per_class=4, size=(48, 48)))
    held_out = str(write_folder(tmp_path / "held_out", per_class=2, size=(48, 48)))
    workdir = tmp_path / "run"
    result = subprocess.run(
        COMMAND + ["train", FOLDER, f"--config.data.root={root}", f"--workdir={workdir}",
                   f"--config.data.eval_root={held_out}",
                   "--config.train.epochs=8", "--dry_run"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "# decided from the data: progressive.image_size_max = 48" in result.stdout
    assert "epochs: 8" in result.stdout and "# stage  steps" in result.stdout
    assert not workdir.exists()
