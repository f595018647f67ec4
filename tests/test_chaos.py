"""scripts/chaos.py: its checks catch a bad restart, and a short run of it passes (slow)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def chaos():
    spec = importlib.util.spec_from_file_location("chaos", os.path.join(ROOT, "scripts",
                                                                        "chaos.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STAGES = [(0, 60, 16), (60, 120, 24), (120, 180, 32), (180, 240, 40)]


def log(resume, stage_line):
    return (f"I1 trainer.py:1] resuming at step {resume} of 240\n" if resume is not None
            else "") + f"I1 trainer.py:2] {stage_line}, dropout 0.100\n"


def test_the_restart_checks_catch_what_they_should():
    check = chaos().check_restart
    good = log(80, "stage 2/4: steps 80-120, image size 24")
    assert check(good, 80, STAGES) == (80, [])
    assert check(good, 60, STAGES) == (80, [])  # after the last logged save: fine
    assert "before the saved step 100" in check(good, 100, STAGES)[1][0]
    assert "from scratch" in check(log(None, "stage 1/4: steps 0-60, image size 16"), 40,
                                   STAGES)[1][0]
    wrong_stage = log(80, "stage 3/4: steps 80-180, image size 32")
    assert "the stage table says steps 120-180" in check(wrong_stage, 80, STAGES)[1][0]
    wrong_size = log(80, "stage 2/4: steps 80-120, image size 16")
    assert "at 24 px" in check(wrong_size, 80, STAGES)[1][0]


@pytest.mark.slow
def test_a_run_killed_three_times_comes_back(tmp_path):
    result = subprocess.run([sys.executable, "scripts/chaos.py", "--kills=3", "--max_delay=15",
                             f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stdout[-3000:]
    assert summary["kills"] == summary["resumed_ok"] == 3
    assert summary["corrupt_checkpoints"] == 0 and summary["steps"] == 240
