"""The compound-scaling search (V1 paper §3.3 step 1): its grid, the FLOPs filter on counted
MACs, de-duplication, the baselines, sharded and resumed training, and the report files."""

import csv
import importlib.util
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf import scaling_report, scaling_search
from efficientnet_tf.models import efficientnet, stats
from efficientnet_tf.specs import registry
from efficientnet_tf.train import config as config_lib

from test_cli import COMMAND, ENV, ROOT
from trainutil import tiny_config


def test_grid_is_every_point_within_tolerance_of_the_factor():
    # Worked by hand. factor 1.5, step 0.25, tolerance 10%: α in {1, 1.25, 1.5}, β and γ in
    # {1, 1.25} (at most sqrt(1.65)); α·β²·γ² = 1.5625 for one 1.25, 1.5 for α = 1.5, and
    # 1, 1.25, 1.95, 2.44, ... (more than 10% off) for the rest.
    assert scaling_search.grid(1.5, 0.25, 0.1) == [(1.0, 1.0, 1.25), (1.0, 1.25, 1.0),
                                                   (1.5, 1.0, 1.0)]
    # factor 2, step 0.1, tolerance 2% (α·β²·γ² in [1.96, 2.04]): β²γ² = 1 takes α = 2;
    # 1.44 (one 1.2) takes α = 1.4 (2.016); 1.69 (one 1.3) α = 1.2 (2.028); 1.96 (one 1.4)
    # α = 1 (1.96). 1.21 would need α in [1.62, 1.69], 1.4641 in [1.34, 1.39], 1.7424 in
    # [1.125, 1.171]: no grid value; 2.0449 (1.1 and 1.3) is 2.2% over.
    assert scaling_search.grid(2.0, 0.1, 0.02) == [
        (1.0, 1.0, 1.4), (1.0, 1.4, 1.0), (1.2, 1.0, 1.3), (1.2, 1.3, 1.0), (1.4, 1.0, 1.2),
        (1.4, 1.2, 1.0), (2.0, 1.0, 1.0)]


def test_config_scales_the_sizes_the_recipe_sets():
    base = registry.get("efficientnetv2-test")  # resolution 64
    config = tiny_config("/data", **{"progressive.image_size_min": 24,
                                     "progressive.image_size_max": 40, "eval.image_size": 40,
                                     "train.image_size": None})
    scaled = config_lib.for_model(config, "efficientnetv2-test:phi=1,alpha=1,beta=1,gamma=1.25",
                                  base.name)  # resolution 80: the sizes x 1.25, to 8s
    assert scaled.model.name.endswith("gamma=1.25")
    assert (scaled.progressive.image_size_min, scaled.progressive.image_size_max,
            scaled.eval.image_size, scaled.train.image_size) == (32, 48, 48, None)
    assert config.eval.image_size == 40  # the recipe itself is left alone
    assert scaling_search.eval_size(config, base, scaled.model.name) == 48
    config.eval.image_size = None
    assert scaling_search.eval_size(config, base, scaled.model.name) == 80  # the row's own


@pytest.mark.parametrize("settings, message", [
    (dict(factor=1.0), "factor must be > 1"),
    (dict(grid_step=0), "grid_step must be in (0, 1]"),
    (dict(tolerance=1.5), "tolerance must be in (0, 1)"),
    (dict(epochs=0), "epochs must be > 0"),
    (dict(seeds=(1, 1)), "seeds must be distinct integers >= 0"),
    (dict(base="efficientdet-d0"), "'efficientdet-d0' is a detector"),
    (dict(base="efficientnet-b9"), "unknown model 'efficientnet-b9'"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scaling_search.Settings(**{"base": "efficientnet-b0", **settings})


def test_shards_and_spearman():
    assert scaling_search.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match=f"shard must be i/n .*got '{bad}'"):
            scaling_search.parse_shard(bad)
    assert scaling_report.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert scaling_report.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    # Ties share their mean rank: x ranks (1.5, 1.5, 3), y (1, 2, 3): 1.5 / sqrt(1.5 * 2).
    assert scaling_report.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)


def write_digit_folder(root, per_class=12):
    """ROOT/CLASS/i.png for three of scikit-learn's digits (small, quick to learn)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in (0, 1, 7):
        tf.io.gfile.makedirs(f"{root}/{label}")
        images = digits.images[digits.target == label][:per_class]
        for index, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(np.uint8(image * 15)).resize((32, 32)).save(buffer, format="PNG")
            with tf.io.gfile.GFile(f"{root}/{label}/{index}.png", "wb") as stream:
                stream.write(buffer.getvalue())
    return root


SETTINGS = scaling_search.Settings(base="efficientnetv2-test", factor=2.0, grid_step=0.2,
                                   tolerance=0.15)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = write_digit_folder(str(tmp_path_factory.mktemp("scaling") / "digits"))
    return tiny_config(root, **{"train.steps": 2, "progressive.image_size_min": 40,
                                "progressive.image_size_max": 40, "eval.image_size": 40})


@pytest.fixture(scope="module")
def plan(recipe):
    return scaling_search.make_plan(recipe, SETTINGS)


def test_plan_keeps_counted_macs_within_tolerance_and_one_point_per_network(plan, recipe):
    base = registry.get("efficientnetv2-test")
    by_role = {role: [point for point in plan.points if role in point.roles]
               for role in ("base", "paper", "depth", "width", "resolution", "candidate")}
    assert [point.coefficients for point in by_role["base"]] == [(1.0, 1.0, 1.0)]
    assert [point.coefficients for point in by_role["paper"]] == [(1.2, 1.1, 1.15)]
    assert by_role["candidate"], "some grid point must survive the MACs filter"
    # The FLOPs filter reads MACs counted on the built graph, within 15% of 2x the base's.
    for point in by_role["candidate"]:
        assert abs(point.macs / plan.base_macs / 2 - 1) <= 0.15, point
    for rejected in plan.rejected:
        assert abs(rejected["macs"] / plan.base_macs / 2 - 1) > 0.15, rejected
    spot = by_role["candidate"][-1]
    model = efficientnet.build(registry.get(spot.name), num_classes=3)
    assert spot.macs == stats.count_macs(model, spot.resolution)
    assert spot.params == model.count_params()
    assert spot.resolution == scaling_search.eval_size(recipe, base, spot.name)
    # One point per network: no two share an architecture, and every grid point is either a
    # trained candidate (itself or a same_as of one) or rejected, exactly once.
    keys = [scaling_search.architecture_key(registry.get(point.name), point.resolution)
            for point in plan.points]
    assert len(set(keys)) == len(keys)
    grid = scaling_search.grid(2.0, 0.2, 0.15)
    accounted = [tuple(rejected[key] for key in ("alpha", "beta", "gamma"))
                 for rejected in plan.rejected]
    for point in by_role["candidate"]:
        members = [point.coefficients] + [tuple(same) for same in point.same_as]
        accounted += [member for member in members if member in grid]
    assert sorted(accounted) == grid
    # Each baseline scales its own dimension alone, to the grid value closest to 2x the MACs.
    for role, index in scaling_search.BASELINES:
        (point,) = by_role[role]
        assert [value > 1 for value in point.coefficients] == [axis == index
                                                                for axis in range(3)]
        neighbours = []
        for value in (point.coefficients[index] - 0.2, point.coefficients[index] + 0.2):
            coefficients = tuple(value if axis == index else 1.0 for axis in range(3))
            name = registry.compound_name("efficientnetv2-test", *coefficients)
            resolution = scaling_search.eval_size(recipe, base, name)
            neighbours.append(stats.count_macs(
                efficientnet.build(registry.get(name), num_classes=3), resolution))
        assert all(abs(point.macs - 2 * plan.base_macs) <= abs(macs - 2 * plan.base_macs)
                   for macs in neighbours), (role, point.macs, neighbours)


def test_plan_round_trips_and_refuses_other_settings(plan, recipe, tmp_path):
    assert scaling_search.Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    workdir = str(tmp_path)
    with tf.io.gfile.GFile(f"{workdir}/plan.json", "w") as stream:
        stream.write(json.dumps(plan.to_dict()))
    assert scaling_search.load_or_make_plan(recipe, workdir, SETTINGS) == plan
    other = scaling_search.Settings(**{**SETTINGS.__dict__, "tolerance": 0.2})
    with pytest.raises(ValueError, match="another search's plan .*tolerance: 0.15 there, 0.2"):
        scaling_search.load_or_make_plan(recipe, workdir, other)
    changed = recipe.copy_and_resolve_references()
    changed.train.batch_size = 4
    with pytest.raises(ValueError, match="config train.batch_size: 8 there, 4 now"):
        scaling_search.load_or_make_plan(changed, workdir, SETTINGS)


def test_jobs_split_disjointly_into_shards(plan):
    jobs = scaling_search.jobs(plan, "ram://search", (0, 1))
    assert len(jobs) == 2 * len(plan.points)
    assert [job.seed for job in jobs] == [0] * len(plan.points) + [1] * len(plan.points)
    shards = [jobs[index::3] for index in range(3)]
    directories = [job.workdir for shard in shards for job in shard]
    assert sorted(directories) == sorted(job.workdir for job in jobs)
    assert len(set(directories)) == len(jobs)
    assert jobs[0].workdir == "ram://search/runs/a1_b1_g1/seed0"


def test_sharded_search_resumes_and_reports(plan, recipe, caplog, tmp_path):
    """Two shards on a workdir that is not the local disk (as gs://), then a rerun that trains
    nothing and writes the whole report."""
    caplog.set_level("INFO", logger="absl")
    workdir = "ram://scaling-search"
    scaling_search.load_or_make_plan(recipe, workdir, SETTINGS)  # the plan above, once
    trained = {}
    for shard in ((0, 2), (1, 2)):
        caplog.clear()
        result = scaling_search.run(recipe, workdir, SETTINGS, shard=shard)
        trained[shard] = [record.getMessage() for record in caplog.records
                          if "scale-search: run " in record.getMessage()]
    jobs = scaling_search.jobs(plan, workdir, (0,))
    assert len(trained[(0, 2)]) == len(jobs[0::2]) and len(trained[(1, 2)]) == len(jobs[1::2])
    assert all(job.finished for job in jobs)
    assert result.pending == 0 and all(row.top1 for row in result.rows)
    caplog.clear()
    result = scaling_search.run(recipe, workdir, SETTINGS)
    assert not [record for record in caplog.records
                if "scale-search: run " in record.getMessage()]
    assert result.chosen is not None and "candidate" in result.chosen.point.roles

    rows = list(csv.DictReader(io.StringIO(tf.io.gfile.GFile(f"{workdir}/report.csv").read())))
    assert [row["network"] for row in rows] == [point.key for point in plan.points]
    for row, point in zip(rows, plan.points):
        assert (int(row["macs"]), int(row["params"])) == (point.macs, point.params)
        with tf.io.gfile.GFile(f"{workdir}/runs/{point.key}/seed0/results.json") as stream:
            assert float(row["top1_seed0"]) == json.load(stream)["eval_top1"]
    table = tf.io.gfile.GFile(f"{workdir}/report.md").read()
    assert sum(line.startswith(f"| {point.key} |") for line in table.splitlines()
               for point in plan.points) == len(plan.points)
    assert f"Chosen: α = {result.chosen.point.alpha:g}" in table
    assert "φ=7: efficientnetv2-test:phi=7," in table
    png = tf.io.decode_png(tf.io.gfile.GFile(f"{workdir}/report.png", "rb").read())
    assert png.shape[0] > 300 and png.shape[1] > 500
    summary = json.loads(tf.io.gfile.GFile(f"{workdir}/report.json").read())
    assert summary["chosen"] == result.chosen.point.key
    assert [row["phi"] for row in summary["phi_rows"]] == list(range(1, 8))

    # scaled.py: the recipe with the chosen scaling, at any phi, as train and info read it.
    scaled = tf.io.gfile.GFile(f"{workdir}/scaled.py").read()
    spec = importlib.util.spec_from_loader("scaled", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(scaled, "scaled.py", "exec"), module.__dict__)  # noqa: S102
    config = module.get_config("3")
    alpha, beta, gamma = result.chosen.point.coefficients
    assert config.model.name == registry.compound_name("efficientnetv2-test", alpha, beta,
                                                           gamma, phi=3)
    assert config.train.batch_size == recipe.train.batch_size
    assert config.train.seed == recipe.train.seed
    row = registry.get(config.model.name)
    assert config.eval.image_size == max(8, round(40 * row.eval_size / 64 / 8) * 8)
    # ... and loads without TensorFlow: the command line reads --config before it sets up
    # TensorFlow's logging (main.py), as experiments/*.py do.
    (tmp_path / "scaled.py").write_text(scaled)
    loaded = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; config = runpy.run_path(sys.argv[1])"
         "['get_config']('2'); print(config.model.name, 'tensorflow' in sys.modules)",
         str(tmp_path / "scaled.py")], capture_output=True, text=True, timeout=120)
    assert loaded.stdout.split() == [registry.compound_name("efficientnetv2-test", alpha, beta,
                                                            gamma, phi=2), "False"], loaded


def test_a_diverged_run_is_recorded_and_skipped(plan, recipe, monkeypatch):
    workdir = "ram://scaling-diverged"
    scaling_search.load_or_make_plan(recipe, workdir, SETTINGS)
    calls = []

    def diverge(config, job_workdir, strategy=None):
        calls.append(job_workdir)
        raise scaling_search.trainer.TrainingDiverged(f"loss nan at step 3 ({config.model.name})")

    monkeypatch.setattr(scaling_search.trainer, "train_and_evaluate", diverge)
    result = scaling_search.run(recipe, workdir, SETTINGS)
    assert len(calls) == len(plan.points)
    assert [row.failed for row in result.rows] == [[0]] * len(plan.points)
    failed = json.loads(tf.io.gfile.GFile(f"{calls[0]}/failed.json").read())
    assert failed["error"].startswith("loss nan at step 3 (efficientnetv2-test")
    assert result.chosen is None and not tf.io.gfile.exists(f"{workdir}/scaled.py")
    assert "nothing chosen" in tf.io.gfile.GFile(f"{workdir}/report.md").read()
    calls.clear()
    scaling_search.run(recipe, workdir, SETTINGS)  # the rerun skips them
    assert calls == []


@pytest.mark.slow
def test_the_command_line_searches_and_info_reads_scaled_py(tmp_path):
    """`efficientnet-tf scale-search` with the digits recipe (a fraction of an epoch per run),
    then `info --config=WORKDIR/scaled.py:3`: the chosen row at phi 3."""
    from efficientnet_tf.data import digits

    def command_line(*args):
        return subprocess.run(COMMAND + list(args), cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=900)

    root = str(tmp_path / "digits")
    digits.write_digits(root)
    workdir = str(tmp_path / "search")
    search = command_line("scale-search", f"--config=experiments/scale_digits.py:{root}",
                          f"--workdir={workdir}", "--grid_step=0.2", "--tolerance=0.15",
                          "--search_epochs=0.2", "--seeds=0", "--shard=0/1")
    assert search.returncode == 0, search.stderr[-3000:]
    assert f"files: {workdir}/report.md" in search.stdout
    summary = json.loads(tf.io.gfile.GFile(f"{workdir}/report.json").read())
    assert summary["settings"] == {"base": "efficientnetv2-test", "factor": 2.0,
                                   "grid_step": 0.2, "tolerance": 0.15, "epochs": 0.2}
    with tf.io.gfile.GFile(f"{workdir}/runs/a1_b1_g1/seed0/results.json") as stream:
        assert json.load(stream)["steps"] == 5  # 0.2 epochs of 1,348 images in batches of 64
    phi3 = next(row["name"] for row in summary["phi_rows"] if row["phi"] == 3)
    info = command_line("info", f"--config={workdir}/scaled.py:3")
    assert info.returncode == 0 and info.stderr == "", info.stderr
    assert info.stdout.startswith(f"{phi3}: width "), info.stdout
