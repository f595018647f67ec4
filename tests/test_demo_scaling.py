"""`efficientnet-tf demo scaling` end to end: the compound-scaling search on the bundled digits,
both seeds, with its report, plot and scaled.py."""

import csv
import io
import json

import pytest
import tensorflow as tf

from efficientnet_tf import demo
from efficientnet_tf.scaling import plan as scaling_plan
from efficientnet_tf.scaling import search as scaling_search

# Measured (README, "Compound scaling search"): 9 networks at 95.7-97.7% mean top-1 over the
# two seeds on the 434 held-out digits, the base at 97.2%. Under the tests' op determinism the
# deepest network (depth only) has reached 87.3% under one seed: the floors are far below.
NETWORK_FLOOR = 0.80  # any network, any seed (chance is 10%)
BEST_FLOOR = 0.93  # the base's and the chosen network's mean
NETWORKS = 9


@pytest.mark.slow
@pytest.mark.release  # 12 minutes: 18 training runs (the search is tested piece by piece in CI)
def test_the_scaling_demo_searches_reports_and_chooses(tmp_path):
    workdir = str(tmp_path / "scale")
    result = demo.run_scaling(workdir)
    assert result.seeds == [0, 1] and result.pending == 0
    assert len(result.rows) == NETWORKS
    roles = {role for row in result.rows for role in row.point.roles}
    assert roles == {"base", "paper", "depth", "width", "resolution", "candidate"}
    for row in result.rows:
        assert sorted(row.top1) == [0, 1] and min(row.top1.values()) >= NETWORK_FLOOR, row
    (base,) = [row for row in result.rows if "base" in row.point.roles]
    chosen = result.chosen
    assert chosen is not None and "candidate" in chosen.point.roles
    assert base.mean >= BEST_FLOOR and chosen.mean >= BEST_FLOOR

    rows = list(csv.DictReader(io.StringIO(tf.io.gfile.GFile(f"{workdir}/report.csv").read())))
    assert len(rows) == NETWORKS
    assert all(float(row["top1_seed0"]) >= NETWORK_FLOOR for row in rows)
    summary = json.loads(tf.io.gfile.GFile(f"{workdir}/report.json").read())
    (pair,) = summary["spread"]
    assert pair["seeds"] == [0, 1] and pair["networks"] == NETWORKS
    assert -1 <= pair["spearman"] <= 1 and pair["max_abs_difference"] <= 1 - NETWORK_FLOOR
    assert set(summary["comparison"]["baselines"]) == {"depth", "width", "resolution"}
    assert tf.io.gfile.stat(f"{workdir}/report.png").length > 10_000
    scaled = tf.io.gfile.GFile(f"{workdir}/scaled.py").read()
    assert f"ALPHA, BETA, GAMMA = {chosen.point.alpha!r}, {chosen.point.beta!r}" in scaled
    # The rerun finds every run finished: it trains nothing and reports the same.
    again = scaling_search.search(demo.scaling_config(f"{workdir}/digits"), workdir,
                               scaling_plan.Settings(**demo.SCALING_SEARCH))
    assert [row.top1 for row in again.rows] == [row.top1 for row in result.rows]
