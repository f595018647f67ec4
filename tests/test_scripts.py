"""Every script in scripts/ runs: a one-round smoke run each (slow), ending in its JSON line.

The numbers of a smoke run mean nothing (one round, tiny sizes); what it proves is that the
script still runs against today's interfaces. Scripts with a test of their own: chaos.py
(test_chaos.py), make_tfrecords.py (data/test_tfrecords.py), make_detection_tfrecords.py
(tasks/detection/test_sources.py); benchtiming.py is the benchmarks' shared timing module.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TESTED_ELSEWHERE = {"chaos.py", "make_tfrecords.py", "make_detection_tfrecords.py",
                    "benchtiming.py", "smalldetection.py"}
# script -> (its smoke arguments, keys its last line's JSON must hold)
SMOKE = {
    "bench_detect.py": (["--model=efficientdet-test", "--rounds=1", "--calls=1"],
                        ["d0_img_s_b1", "backbone_img_s_b1"]),
    "bench_detect_serving.py": (["--model=efficientdet-test", "--size=128", "--latency_calls=2",
                                 "--throughput_calls=1"], ["batch1_ms", "export_speedup"]),
    "bench_detect_train.py": (["--model=efficientdet-test", "--image_size=128", "--batch=2",
                               "--rounds=1", "--steps_per_round=1", "--pipeline_batches=2"],
                              ["train_step_speedup", "pipeline_img_s_1core"]),
    "bench_input.py": (["--images=8", "--keras_images=4", "--batches=2"],
                       ["randaugment_speedup"]),
    "bench_model.py": (["--variant=efficientnet-b0", "--batch=1", "--image_size=64",
                        "--rounds=1", "--iterations=1"], []),
    "bench_progressive.py": (["--steps=8", "--batch=8", "--min_size=32", "--max_size=48",
                              "--compile_model=", "--set=progressive.num_stages=2"],
                             ["time_ratio"]),
    "bench_serving.py": (["--variant=efficientnet-b0", "--latency_calls=2",
                          "--throughput_calls=1"], []),
    "bench_train.py": (["--variants=efficientnetv2-b0", "--batch=2", "--image_size=64",
                        "--steps=1", "--rounds=1", "--steps_per_round=1"],
                       ["train_step_speedup"]),
    "bench_small_data.py": (["--datasets=digits", "--epochs=1", "--data_dir={samples}"],
                            ["min_top1_gain", "time_ratio"]),
    "ablate_small_data.py": (["--datasets=digits", "--epochs=1", "--variants=recipe",
                              "--data_dir={samples}", "--out={tmp}/ablation.jsonl"], []),
    "bench_small_detection.py": (["--sets=coins", "--seeds=0", "--epochs=1", "--train_images=8",
                                  "--eval_images=2", "--extra=model.name=efficientdet-test",
                                  "--peer_depth=18", "--out={tmp}/bench.jsonl"],
                                 ["min_ap_gain", "mean_ap_gain", "time_ratio"]),
    "ablate_small_detection.py": (["--sets=coins", "--variants=recipe", "--epochs=1",
                                   "--train_images=8", "--eval_images=2",
                                   "--extra=model.name=efficientdet-test",
                                   "--out={tmp}/detection.jsonl"], ["recipe/coins/0"]),
}


def test_every_script_has_a_smoke_run_or_a_test_of_its_own():
    scripts = {path.name for path in (ROOT / "scripts").glob("*.py")}
    assert scripts - TESTED_ELSEWHERE == set(SMOKE)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """One folder for the sample sets the small-data scripts write (the second reuses them)."""
    return tmp_path_factory.mktemp("samples")


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_a_smoke_run_of_each_script_finishes(script, tmp_path, samples):
    arguments, keys = SMOKE[script]
    command = [sys.executable, f"scripts/{script}"] + [
        a.format(tmp=tmp_path, samples=samples) for a in arguments]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    if script == "ablate_small_data.py":  # ends in its markdown table; the runs are JSON lines
        last = (tmp_path / "ablation.jsonl").read_text().splitlines()[-1]
    figures = json.loads(last)
    assert set(keys) <= set(figures), sorted(figures)
