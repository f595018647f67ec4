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

from efficientnet_tf.scaling import plan as scaling_plan
from efficientnet_tf.scaling import report as scaling_report
from efficientnet_tf.scaling import search as scaling_search
from efficientnet_tf.models import efficientnet, stats
from efficientnet_tf.specs import registry
from efficientnet_tf.train import config as config_lib

from test_main import COMMAND, ENV, ROOT
from trainutil import tiny_config


def test_grid_is_every_point_within_tolerance_of_the_factor():
    # Worked by hand. factor 1.5, step 0.25, tolerance 10%: α in {1, 1.25, 1.5}, β and γ in
    # {1, 1.25} (at most sqrt(1.65)); α·β²·γ² = 1.5625 for one 1.25, 1.5 for α = 1.5, and
    # 1, 1.25, 1.95, 2.44, ... (more than 10% off) for the rest.
    assert scaling_plan.grid(1.5, 0.25, 0.1) == [(1.0, 1.0, 1.25), (1.0, 1.25, 1.0),
                                                   (1.5, 1.0, 1.0)]
    # factor 2, step 0.1, tolerance 2% (α·β²·γ² in [1.96, 2.04]): β²γ² = 1 takes α = 2;
    # 1.44 (one 1.2) takes α = 1.4 (2.016); 1.69 (one 1.3) α = 1.2 (2.028); 1.96 (one 1.4)
    # α = 1 (1.96). 1.21 would need α in [1.62, 1.69], 1.4641 in [1.34, 1.39], 1.7424 in
    # [1.125, 1.171]: no grid value; 2.0449 (1.1 and 1.3) is 2.2% over.
    assert scaling_plan.grid(2.0, 0.1, 0.02) == [
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
    assert scaling_plan.eval_size(config, base, scaled.model.name) == 48
    config.eval.image_size = None
    assert scaling_plan.eval_size(config, base, scaled.model.name) == 80  # the row's own
    # A V2 base trains smaller than it evaluates (V2-B0: 192 and 224); its scaled rows too.
    v2 = registry.get(registry.compound_name("efficientnetv2-b0", 1, 1, 1.25))
    assert (v2.train_size, v2.eval_size) == (240, 280)


def test_a_recipe_that_adapts_to_the_data_is_settled_once_for_the_base(tmp_path):
    """The folder recipe decides image sizes from the images: for the base, once; each network
    then scales them (deciding per network would cap every one at the images' size)."""
    root = write_digit_folder(str(tmp_path / "digits"), per_class=4)
    config = tiny_config(root, **{"progressive.image_size_min": None,
                                  "progressive.image_size_max": None, "eval.image_size": None})
    config.adapt_to_data = True
    base = registry.get("efficientnetv2-test")
    settled = scaling_plan.settle_recipe(config, base)
    assert not settled.adapt_to_data and config.adapt_to_data
    assert settled.eval.image_size == settled.progressive.image_size_max == 32  # 32-px images
    name = registry.compound_name(base.name, 1, 1, 1.25)  # resolution 80 = 1.25 x 64
    assert scaling_plan.eval_size(settled, base, name) == 40


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
        scaling_plan.Settings(**{"base": "efficientnet-b0", **settings})


def test_shards_and_spearman():
    assert scaling_search.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match=f"shard must be i/n .*got '{bad}'"):
            scaling_search.parse_shard(bad)
    assert scaling_report.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert scaling_report.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    # Ties share their mean rank: x ranks (1.5, 1.5, 3), y (1, 2, 3): 1.5 / sqrt(1.5 * 2).
    assert scaling_report.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)


def hand_report(networks, seeds=(0, 1)):
    """A Report of hand-set networks: (coefficients, roles, top-1 per seed, MACs, grid points)."""
    points = [scaling_plan.Point(*coefficients, name=f"n{index}", resolution=64, macs=macs,
                                   params=1, roles=list(roles), grid_points=grid_points)
              for index, (coefficients, roles, _, macs, grid_points) in enumerate(networks)]
    plan = scaling_plan.Plan({"base": "efficientnetv2-test", "factor": 2.0}, {}, 100, points,
                               [])
    rows = [scaling_report.Row(point, dict(zip(seeds, network[2])), {}, [])
            for point, network in zip(points, networks)]
    return scaling_report.Report(plan, list(seeds), rows, 0)


def test_report_ties_choice_and_verdicts():
    result = hand_report([
        ((1.0, 1.0, 1.4), ("resolution", "candidate"), (0.9, 0.9), 210,
         [[1.0, 1.0, 1.4], [1.1, 1.0, 1.35]]),
        ((1.1, 1.1, 1.2), ("candidate",), (0.9, 0.8), 190, [[1.1, 1.1, 1.2]]),
        ((2.0, 1.0, 1.0), ("depth",), (0.9, 0.8), 200, []),
        ((1.0, 1.4, 1.0), ("width",), (0.8, 0.7), 200, [])])
    # Three networks tie for seed 0's best; under seed 1 they rank 1, 2.5 and 2.5 (a tie).
    (pair,) = result.spread()
    assert pair["best_of_first"] == ["a1_b1_g1.4", "a1.1_b1.1_g1.2", "a2_b1_g1"]
    assert pair["their_ranks_under_second"] == [1.0, 2.5, 2.5]
    assert pair["mean_abs_difference"] == pytest.approx(0.075)
    # The chosen: the best mean top-1 among candidates; its coefficients for φ >= 2 are its
    # grid point closest to α·β²·γ² = 2 (1.1 x 1.35² = 2.005 against 1.4² = 1.96).
    assert result.chosen.point.name == "n0"
    assert result.chosen_coefficients == (1.1, 1.0, 1.35)
    assert result.phi_rows()[1]["name"] == ("efficientnetv2-test:phi=2,alpha=1.1,beta=1,"
                                            "gamma=1.35")
    # Compound (two or three dimensions: n1, 85%) against each baseline, noise 7.5 points.
    comparison = result.comparison()["baselines"]
    assert {role: entry["verdict"] for role, entry in comparison.items()} == {
        "depth": "within seed noise", "width": "compound better",
        "resolution": "within seed noise"}
    # On equal means the candidate with fewer MACs is chosen.
    tie = hand_report([((1.1, 1.1, 1.2), ("candidate",), (0.9, 0.9), 210, [[1.1, 1.1, 1.2]]),
                       ((1.2, 1.1, 1.15), ("candidate",), (0.9, 0.9), 190, [[1.2, 1.1, 1.15]])])
    assert tie.chosen.point.name == "n1"
    # One seed: no noise to compare with, and the verdict says so.
    single = hand_report([((1.1, 1.1, 1.2), ("candidate",), (0.9,), 200, [[1.1, 1.1, 1.2]]),
                          ((1.0, 1.4, 1.0), ("width",), (0.8,), 200, [])], seeds=(0,))
    assert single.spread() == []
    assert single.comparison()["baselines"]["width"]["verdict"] == \
        "seed noise unknown (one seed)"
    assert scaling_report.spearman([0.5, 0.5], [0.1, 0.2]) is None


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


SETTINGS = scaling_plan.Settings(base="efficientnetv2-test", factor=2.0, grid_step=0.2,
                                   tolerance=0.15)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = write_digit_folder(str(tmp_path_factory.mktemp("scaling") / "digits"))
    return tiny_config(root, **{"train.steps": 2, "progressive.image_size_min": 40,
                                "progressive.image_size_max": 40, "eval.image_size": 40})


@pytest.fixture(scope="module")
def plan(recipe):
    return scaling_plan.make_plan(recipe, SETTINGS)


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
    assert spot.resolution == scaling_plan.eval_size(recipe, base, spot.name)
    # One point per network: no two share an architecture, and every grid point either builds
    # a trained candidate or is rejected, exactly once.
    keys = [scaling_plan.architecture_key(registry.get(point.name), point.resolution)
            for point in plan.points]
    assert len(set(keys)) == len(keys)
    grid = scaling_plan.grid(2.0, 0.2, 0.15)
    accounted = [tuple(rejected[key] for key in ("alpha", "beta", "gamma"))
                 for rejected in plan.rejected]
    accounted += [tuple(member) for point in plan.points for member in point.grid_points]
    assert sorted(accounted) == grid
    for point in plan.points:
        assert bool(point.grid_points) == ("candidate" in point.roles)
        for member in point.grid_points:  # each builds the very network it is counted under
            name = registry.compound_name("efficientnetv2-test", *member)
            resolution = scaling_plan.eval_size(recipe, base, name)
            assert scaling_plan.architecture_key(registry.get(name), resolution) == \
                scaling_plan.architecture_key(registry.get(point.name), point.resolution)
        if point.roles == ["candidate"]:  # named by its member closest to the constraint
            assert point.coefficients == point.closest_grid_point(2.0)
    assert by_role["base"][0].name == "efficientnetv2-test"  # the base row as registered
    # Each baseline scales its own dimension alone, to the grid value closest to 2x the MACs.
    for role, index in scaling_plan.BASELINES:
        (point,) = by_role[role]
        assert [value > 1 for value in point.coefficients] == [axis == index
                                                                for axis in range(3)]
        neighbours = []
        for value in (point.coefficients[index] - 0.2, point.coefficients[index] + 0.2):
            coefficients = tuple(value if axis == index else 1.0 for axis in range(3))
            name = registry.compound_name("efficientnetv2-test", *coefficients)
            resolution = scaling_plan.eval_size(recipe, base, name)
            neighbours.append(stats.count_macs(
                efficientnet.build(registry.get(name), num_classes=3), resolution))
        assert all(abs(point.macs - 2 * plan.base_macs) <= abs(macs - 2 * plan.base_macs)
                   for macs in neighbours), (role, point.macs, neighbours)


def test_plan_round_trips_and_refuses_other_settings(plan, recipe, tmp_path):
    assert scaling_plan.Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    workdir = str(tmp_path)
    with tf.io.gfile.GFile(f"{workdir}/plan.json", "w") as stream:
        stream.write(json.dumps(plan.to_dict()))
    assert scaling_plan.load_or_make_plan(recipe, workdir, SETTINGS) == plan
    other = scaling_plan.Settings(**{**SETTINGS.__dict__, "tolerance": 0.2})
    with pytest.raises(ValueError, match="another search's plan .*tolerance: 0.15 there, 0.2"):
        scaling_plan.load_or_make_plan(recipe, workdir, other)
    changed = recipe.copy_and_resolve_references()
    changed.train.batch_size = 4
    with pytest.raises(ValueError, match="config train.batch_size: 8 there, 4 now"):
        scaling_plan.load_or_make_plan(changed, workdir, SETTINGS)


def test_jobs_split_disjointly_into_shards(plan):
    jobs = scaling_search.jobs(plan, "ram://search", (0, 1))
    assert len(jobs) == 2 * len(plan.points)
    assert [job.seed for job in jobs] == [0] * len(plan.points) + [1] * len(plan.points)
    shards = [scaling_search.shard_jobs(jobs, (index, 3)) for index in range(3)]
    directories = [job.workdir for shard in shards for job in shard]
    assert sorted(directories) == sorted(job.workdir for job in jobs)
    assert len(set(directories)) == len(jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert jobs[0].workdir == "ram://search/runs/a1_b1_g1/seed0"
    # A run's shard is its own: shards started with other --seeds still split the runs once.
    seed_one = scaling_search.jobs(plan, "ram://search", (1,))
    for index in range(3):
        assert {job.workdir for job in scaling_search.shard_jobs(seed_one, (index, 3))} == \
            {job.workdir for job in shards[index] if job.seed == 1}


@pytest.mark.slow  # 80 s of searches; the default suite tests the plan and the report
def test_sharded_search_resumes_and_reports(plan, recipe, caplog, tmp_path):
    """Two shards on a workdir that is not the local disk (as gs://), then a rerun that trains
    nothing and writes the whole report."""
    caplog.set_level("INFO", logger="absl")
    workdir = f"ram://{tmp_path.name}/search"
    scaling_plan.load_or_make_plan(recipe, workdir, SETTINGS)  # the plan above, once
    trained = {}
    for shard in ((0, 2), (1, 2)):
        caplog.clear()
        result = scaling_search.search(recipe, workdir, SETTINGS, shard=shard)
        trained[shard] = [record.getMessage() for record in caplog.records
                          if "scale-search: run " in record.getMessage()]
    jobs = scaling_search.jobs(plan, workdir, (0,))
    assert [len(trained[shard]) for shard in ((0, 2), (1, 2))] == [
        len(scaling_search.shard_jobs(jobs, shard)) for shard in ((0, 2), (1, 2))]
    assert all(job.finished for job in jobs)
    assert result.pending == 0 and all(row.top1 for row in result.rows)
    caplog.clear()
    result = scaling_search.search(recipe, workdir, SETTINGS)
    assert not [record for record in caplog.records
                if "scale-search: run " in record.getMessage()]
    assert result.chosen is not None and "candidate" in result.chosen.point.roles
    # A finished run of another recipe (a workdir reused without its plan) is refused.
    changed = recipe.copy_and_resolve_references()
    changed.optimizer.lr_per_256 = 0.25
    job = jobs[0]
    scaling_search.check_finished(job, scaling_search.job_config(recipe, registry.get(
        "efficientnetv2-test"), job, None))
    with pytest.raises(ValueError, match=f"{job.workdir} holds another search's run "
                       r"\(optimizer.lr_per_256: 0.5 there, 0.25 now\)"):
        scaling_search.check_finished(job, scaling_search.job_config(changed, registry.get(
            "efficientnetv2-test"), job, None))

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
    alpha, beta, gamma = result.chosen_coefficients
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


@pytest.mark.slow  # 45 s; the default suite tests the plan and the report
def test_a_diverged_run_is_recorded_and_skipped(plan, recipe, monkeypatch, tmp_path):
    workdir = f"ram://{tmp_path.name}/diverged"
    scaling_plan.load_or_make_plan(recipe, workdir, SETTINGS)
    calls = []

    def diverge(config, job_workdir, strategy=None):
        calls.append(job_workdir)
        raise scaling_search.trainer.TrainingDiverged(f"loss nan at step 3 ({config.model.name})")

    monkeypatch.setattr(scaling_search.trainer, "train_and_evaluate", diverge)
    result = scaling_search.search(recipe, workdir, SETTINGS)
    assert len(calls) == len(plan.points)
    assert [row.failed for row in result.rows] == [[0]] * len(plan.points)
    failed = json.loads(tf.io.gfile.GFile(f"{calls[0]}/failed.json").read())
    assert failed["error"].startswith("loss nan at step 3 (efficientnetv2-test")
    assert result.chosen is None and not tf.io.gfile.exists(f"{workdir}/scaled.py")
    assert "nothing chosen" in tf.io.gfile.GFile(f"{workdir}/report.md").read()
    calls.clear()
    scaling_search.search(recipe, workdir, SETTINGS)  # the rerun skips them
    assert calls == []


@pytest.mark.slow
def test_the_command_line_searches_and_info_reads_scaled_py(tmp_path):
    """`efficientnet-tf scale-search` with the digits recipe (a fraction of an epoch per run,
    the 4 grid points of step 0.3), then `info --config=WORKDIR/scaled.py:3`: the chosen row at
    phi 3."""
    from efficientnet_tf.data import digits

    def command_line(*args):
        return subprocess.run(COMMAND + list(args), cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=900)

    root = str(tmp_path / "digits")
    digits.write_digits(root)
    workdir = str(tmp_path / "search")
    search = command_line("scale-search", f"--config=experiments/scale_digits.py:{root}",
                          f"--workdir={workdir}", "--grid_step=0.3", "--tolerance=0.15",
                          "--search_epochs=0.2", "--seeds=0", "--shard=0/1")
    assert search.returncode == 0, search.stderr[-3000:]
    assert f"files: {workdir}/report.md" in search.stdout
    summary = json.loads(tf.io.gfile.GFile(f"{workdir}/report.json").read())
    assert summary["settings"] == {"base": "efficientnetv2-test", "factor": 2.0,
                                   "grid_step": 0.3, "tolerance": 0.15, "epochs": 0.2}
    with tf.io.gfile.GFile(f"{workdir}/runs/a1_b1_g1/seed0/results.json") as stream:
        assert json.load(stream)["steps"] == 5  # 0.2 epochs of 1,363 images in batches of 64
    phi3 = next(row["name"] for row in summary["phi_rows"] if row["phi"] == 3)
    info = command_line("info", f"--config={workdir}/scaled.py:3")
    assert info.returncode == 0 and info.stderr == "", info.stderr
    assert info.stdout.startswith(f"{phi3}: width "), info.stdout
