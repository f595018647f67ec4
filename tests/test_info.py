"""`efficientnet-tf info`: GMACs counted from the graph agree with docs/reference.md §2-3 (5%)."""

import os
import re
import subprocess
import sys

import pytest

import efficientnet_tf
from efficientnet_tf import info
from efficientnet_tf.models import stats
from efficientnet_tf.specs import registry

# keras.applications GMACs at the eval size (docs/reference.md §2-3).
GMACS = {"efficientnet-b0": 0.40, "efficientnet-b1": 0.71, "efficientnet-b2": 1.03,
         "efficientnet-b3": 1.88, "efficientnet-b4": 4.51, "efficientnet-b5": 10.5,
         "efficientnet-b6": 19.5, "efficientnet-b7": 38.4, "efficientnetv2-b0": 0.73,
         "efficientnetv2-b1": 1.21, "efficientnetv2-b2": 1.72, "efficientnetv2-b3": 3.05,
         "efficientnetv2-s": 8.45, "efficientnetv2-m": 24.8, "efficientnetv2-l": 56.4}
FAST = {"efficientnet-b0", "efficientnet-b3", "efficientnetv2-b0", "efficientnetv2-s"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in GMACS])
def test_gmacs_agree_with_reference(name):
    spec = registry.get(name)
    macs = stats.count_macs(efficientnet_tf.create_model(spec), spec.eval_size)
    assert macs / 1e9 == pytest.approx(GMACS[name], rel=0.05)


def test_macs_grow_with_the_square_of_the_image_size():
    model = efficientnet_tf.create_model("efficientnetv2-b0")
    ratio = stats.count_macs(model, 448) / stats.count_macs(model, 224)
    assert ratio == pytest.approx(4.0, rel=0.01)


def test_stage_table_adds_up():
    spec = registry.get("efficientnet-b0")
    model = efficientnet_tf.create_model(spec)
    rows = stats.stage_table(spec, model)
    assert [r.stage for r in rows] == ["stem", "1", "2", "3", "4", "5", "6", "7", "head"]
    assert sum(r.params for r in rows) == model.count_params() == 5_330_564
    assert sum(r.macs for r in rows) == stats.count_macs(model, 224)
    assert [r.resolution for r in rows] == [112, 112, 56, 28, 14, 14, 7, 7, 7]
    assert [(r.filters_out, r.repeats) for r in rows[1:-1]] == [
        (16, 1), (24, 2), (40, 2), (80, 3), (112, 3), (192, 4), (320, 1)]
    # The stem: 3x3x3x32 conv + 4x32 BN; its MACs: 112*112*27*32 plus normalization and BN.
    assert rows[0].params == 864 + 128 and rows[0].macs >= 112 * 112 * 27 * 32


def test_variant_line_and_stage_lines():
    name, params, gmacs, train, evaluation, dropout = info.variant_line(
        registry.get("efficientnetv2-b0")).split()
    assert [name, params, train, evaluation, dropout] == [
        "efficientnetv2-b0", "7,200,312", "192", "224", "0.2"]
    assert float(gmacs) == pytest.approx(0.73, rel=0.05)
    lines = info.stage_lines(registry.get("efficientnetv2-s"))
    total = re.fullmatch(r"total: 21,612,360 parameters, ([\d.]+) GMACs at 384x384", lines[-3])
    assert total and float(total.group(1)) == pytest.approx(8.45, rel=0.05)
    assert ("official (automl), (min, max): image size (128, 300), RandAugment (5.0, 10.0)"
            in lines[-2])
    assert "paper (Table 6), (min, max): image size (128, 300), RandAugment (5, 15)" in lines[-1]


def test_command_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "efficientnet_tf.main", "info",
                             "--model=efficientnet_b0"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    total = re.search(r"total: 5,330,564 parameters, ([\d.]+) GMACs at 224x224", result.stdout)
    assert total and float(total.group(1)) == pytest.approx(0.40, rel=0.05), result.stdout
    bad = subprocess.run([sys.executable, "-m", "efficientnet_tf.main", "info",
                          "--model=efficientnet-b9"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode != 0 and "unknown model 'efficientnet-b9'" in bad.stderr


def test_tensorflow_start_up_noise_is_hidden_unless_verbose():
    """The oneDNN notice and CUDA probing lines TensorFlow prints while it loads (TF 2.21 logs
    them before TF_CPP_MIN_LOG_LEVEL applies) stay off the CLI's stderr; errors still show."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "efficientnet_tf.main", "info",
               "--model=efficientnet-b0:phi=0.5"]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and "total:" in quiet.stdout
    assert not re.search(r"oneDNN|cuda|cuInit|absl::InitializeLog", quiet.stderr), quiet.stderr
    bad = subprocess.run(command[:-1] + ["--model=efficientnet-b0:phi=x"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "is not KEY=NUMBER" in bad.stderr.strip().splitlines()[-1]


def test_the_installed_command_lists_its_subcommands_in_help():
    command = os.path.join(os.path.dirname(sys.executable), "efficientnet-tf")
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    # absl ends --help with exit status 1; what matters is what it printed.
    for name in ("info", "train", "eval", "export", "predict", "demo"):
        assert re.search(rf"^  {name} ", result.stdout, re.MULTILINE), result.stdout
