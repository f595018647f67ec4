"""The trainer end to end on data written by the tests (docs/reference.md §5, the loop)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.train import workdir as workdir_lib
from efficientnet_tf import export
from efficientnet_tf import predict
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks.classification import task as classification
from efficientnet_tf.train import optim, report, trainer

from imagedata import write_folder
from trainutil import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def task_of(variant):
    """A classification task of `variant` without data: what fine-tuning needs of it."""
    return classification.ClassificationTask(types.SimpleNamespace(spec=registry.get(variant)),
                                             None)


def test_a_run_writes_config_checkpoints_summaries_results_and_plot(photo_folder, tmp_path,
                                                                      caplog):
    workdir = str(tmp_path / "run")
    caplog.set_level("INFO", logger="absl")  # other tests may have quieted absl
    results = trainer.train_and_evaluate(tiny_config(photo_folder), workdir)
    assert results["steps"] == 12 and results["eval_examples"] > 0
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["model"]["name"] == "efficientnetv2-test"
    assert saved["resolved"]["model"]["num_classes"] == 3 and saved["resolved"]["total_steps"] == 12
    assert saved["resolved"]["class_names"] == ["astronaut", "chelsea", "coffee"]
    assert tf.train.latest_checkpoint(workdir).endswith("ckpt-12")
    scalars = report.read_scalars(os.path.join(workdir, "train"))
    assert [step for step, _ in scalars["loss"]] == [3, 6, 9, 12]
    assert {"top1", "learning_rate", "image_size", "dropout_rate"} <= set(scalars)
    assert report.read_scalars(os.path.join(workdir, "eval"))["top1"][-1][0] == 12
    assert json.load(open(os.path.join(workdir, "results.json")))["steps"] == 12
    assert open(os.path.join(workdir, "training.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    (timing,) = results["stage_timings"]  # one stage: its first loop (3 steps) traced the step
    assert (timing["stage"], timing["image_size"], timing["steps"]) == (1, 32, 12)
    assert 0 < timing["switch_s"] < timing["seconds"] and timing["step_ms"] > 0
    assert results["eval_seconds"] > 0
    counts = json.load(open(os.path.join(workdir, "classes.json")))
    assert sum(counts["train"].values()) == saved["resolved"]["train_examples"]
    assert list(counts["eval"]) == saved["resolved"]["class_names"]
    assert "classes (train/eval images): astronaut %d/%d" % (
        counts["train"]["astronaut"], counts["eval"]["astronaut"]) in caplog.text


def test_bad_files_are_listed_once_in_the_run_directory(photo_folder, tmp_path, caplog):
    """Four epochs over a folder with two bad files: two lines in skipped_files.txt and the
    end-of-run line points at it."""
    root = tmp_path / "images"
    shutil.copytree(photo_folder, root)
    (root / "coffee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"?" * 64)
    (root / "chelsea" / "blank.png").write_bytes(b"")
    config = tiny_config(str(root), **{"train.steps": 18})
    workdir = str(tmp_path / "run")
    caplog.set_level("INFO", logger="absl")  # other tests may have quieted absl
    results = trainer.train_and_evaluate(config, workdir)
    lines = open(os.path.join(workdir, "skipped_files.txt")).read().splitlines()
    assert [os.path.basename(line.split("\t")[0]) for line in lines] == ["blank.png",
                                                                          "broken.jpg"]
    assert lines[0].endswith("\tempty file") and results["skipped_images"] == 2
    assert f"skipped files 2 (list: {workdir}/skipped_files.txt)" in caplog.text


def _losses(workdir):
    return [value for _, value in report.read_scalars(os.path.join(workdir, "train"))["loss"]]


def test_mirrored_over_two_devices_matches_one_device(photo_folder, tmp_path):
    # Same global batch of the same examples; BN statistics synchronised across the replicas and
    # no dropout / stochastic depth, so both runs compute the same function.
    settings = {"model.bn_sync": "all", "model.survival_prob": 1.0,
                "model.dropout_rate": 0.0, "train.steps": 6, "train.log_every_steps": 1,
                "train.ema_decay": 0.5, "optimizer.lr_per_256": 0.05}
    losses, evaluations = [], []
    for name, strategy in (("one", tf.distribute.get_strategy()), ("two", mirrored())):
        keras.utils.set_random_seed(0)
        config = tiny_config(photo_folder, **settings)
        results = trainer.train_and_evaluate(config, str(tmp_path / name), strategy)
        losses.append(_losses(str(tmp_path / name)))
        evaluations.append(results["eval_loss"])  # with the EMA weights
    assert len(losses[0]) == 6
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
    # The EMA weights of both runs: float sums in another order move them by ~0.1%.
    assert evaluations[1] == pytest.approx(evaluations[0], rel=5e-3)
    assert losses[0][0] != losses[0][-1]  # the weights really moved


def test_loss_falls_on_a_learnable_dataset(photo_folder, tmp_path):
    config = tiny_config(photo_folder, **{"train.steps": 80, "train.log_every_steps": 10,
                                          "train.checkpoint_every_steps": 80})
    config.optimizer.name = "sgd"
    config.optimizer.lr_per_256 = 1.6  # 0.05 at batch 8
    config.data.crop = "v1"
    results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    losses = _losses(str(tmp_path / "run"))
    top1 = [v for _, v in report.read_scalars(str(tmp_path / "run" / "train"))["top1"]]
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    assert np.mean(top1[-3:]) > 0.6 > top1[0], top1  # 3 classes: chance is 1/3
    assert results["eval_top1"] > 0.5


def test_resume_after_sigkill_continues_at_the_saved_step(photo_folder, tmp_path):
    workdir = str(tmp_path / "run")
    config_file = tmp_path / "tiny.py"
    config_file.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom trainutil import tiny_config\n"
        "def get_config():\n    return tiny_config(%r)\n" % (os.path.join(ROOT, "tests"),
                                                             photo_folder))
    command = [sys.executable, "-m", "efficientnet_tf.main", "train", f"--config={config_file}",
               f"--workdir={workdir}", "--config.train.steps=200",
               "--config.train.checkpoint_every_steps=5", "--config.train.log_every_steps=5"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.time() + 240
    while time.time() < deadline and not tf.io.gfile.glob(os.path.join(workdir, "ckpt-15.*")):
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # possibly in the middle of writing ckpt-15
    process.wait()
    latest = tf.train.latest_checkpoint(workdir)
    saved_step = int(latest.rsplit("-", 1)[1])
    assert saved_step >= 10
    resumed = subprocess.run(command[:-3] + ["--config.train.steps=%d" % (saved_step + 5),
                                             "--config.train.checkpoint_every_steps=5",
                                             "--config.train.log_every_steps=5"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming at step {saved_step} of {saved_step + 5}" in resumed.stderr
    assert f"step {saved_step + 5}/{saved_step + 5}" in resumed.stderr
    assert json.load(open(os.path.join(workdir, "results.json")))["steps"] == saved_step + 5


def test_a_restart_after_the_end_cleans_up_and_keeps_the_train_figures(photo_folder, tmp_path):
    """A kill mid-save leaves ckpt-N_temp/ and checkpoint.tmp*; the next start removes them.
    A run restarted after its last step trains nothing, and keeps the train figures."""
    workdir = str(tmp_path / "run")
    config = tiny_config(photo_folder)
    first = trainer.train_and_evaluate(config, workdir)
    os.makedirs(os.path.join(workdir, "ckpt-18_temp"))
    open(os.path.join(workdir, "ckpt-18_temp", "part-00000-of-00001.data-00000-of-00001"),
         "wb").write(b"half")
    open(os.path.join(workdir, "checkpoint.tmp5f3a"), "w").write("model_checkpoint_path: \"ck")
    again = trainer.train_and_evaluate(config, workdir)
    assert again["steps_this_run"] == 0 and again["steps"] == 12
    assert sorted(name for name in os.listdir(workdir) if "temp" in name or "tmp" in name) == []
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["train_loss"] == first["train_loss"] is not None
    assert saved["train_top1"] == first["train_top1"] is not None
    # Another dataset or model in the same workdir is refused, before anything is written.
    recorded = open(os.path.join(workdir, "config.json")).read()
    other = str(write_folder(tmp_path / "other", per_class=4, classes=("astronaut", "coffee")))
    with pytest.raises(ValueError, match=r"holds checkpoints of another run \(classes 3 there, "
                                         r"2 here\): .* another --workdir"):
        trainer.train_and_evaluate(tiny_config(other), workdir)
    with pytest.raises(ValueError, match="model efficientnetv2-test there, efficientnetv2-b0 "
                                         "here"):
        trainer.train_and_evaluate(tiny_config(photo_folder, **{
            "model.name": "efficientnetv2-b0"}), workdir)
    assert open(os.path.join(workdir, "config.json")).read() == recorded


def test_resume_restores_optimizer_ema_and_schedule_state(photo_folder, tmp_path):
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(tiny_config(photo_folder, **{"train.steps": 6}), workdir)
    config = tiny_config(photo_folder, **{"train.steps": 9})
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    state = trainer.build_state(run, tf.distribute.get_strategy(), workdir)
    assert state.checkpoints.restore_latest().endswith("ckpt-6")
    assert state.step == 6
    reader = tf.train.load_checkpoint(workdir)
    saved = {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(workdir)}
    ema_keys = sorted(k for k in saved if k.startswith("ema/averages/0/"))
    np.testing.assert_array_equal(state.ema.averages[0].numpy(), saved[ema_keys[0]])
    slots = {int(k.split("/")[2]): v for k, v in saved.items()
             if k.startswith("optimizer/_variables/")}
    # Every RMSProp slot (mean square and momentum per weight; slot 0 is the step counter).
    assert sorted(slots) == list(range(1, len(state.optimizer.variables)))
    assert len(slots) == 2 * len(state.model.trainable_weights)
    for index, value in slots.items():
        np.testing.assert_array_equal(state.optimizer.variables[index].numpy(), value)
    assert float(state.optimizer.iterations) == 6
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 9 and results["steps_this_run"] == 3


@pytest.mark.parametrize("damage", ["truncate", "zero", "delete", "truncate index"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(photo_folder, tmp_path, damage,
                                                                  caplog):
    """train resumes from, and eval and export read, the newest checkpoint that reads back."""
    workdir = str(tmp_path / "run")
    config = tiny_config(photo_folder)  # checkpoints at steps 6 and 12
    trainer.train_and_evaluate(config, workdir)
    (data,) = tf.io.gfile.glob(os.path.join(workdir, "ckpt-12.data-*"))
    index = os.path.join(workdir, "ckpt-12.index")
    if damage == "truncate":  # a partial upload
        content = open(data, "rb").read()
        open(data, "wb").write(content[: len(content) // 2])
    elif damage == "zero":  # a disk error
        open(data, "wb").write(bytes(os.path.getsize(data)))
    elif damage == "delete":  # a lost file
        os.remove(data)
    else:
        content = open(index, "rb").read()
        open(index, "wb").write(content[: len(content) // 3])
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    state = trainer.build_state(run, tf.distribute.get_strategy(), workdir)
    assert state.checkpoints.restore_latest().endswith("ckpt-6")
    assert state.step == 6
    caplog.set_level("WARNING", logger="absl")
    assert trainer.evaluate_workdir(workdir)["checkpoint"].endswith("ckpt-6")
    assert "ckpt-12 cannot be restored" in caplog.text
    if damage == "truncate":
        export_dir = export.export_workdir(workdir, str(tmp_path / "export"))
        assert tf.saved_model.contains_saved_model(export_dir)


def test_a_storage_outage_while_restoring_stops_the_run(photo_folder, tmp_path, monkeypatch):
    """Not mistaken for a damaged checkpoint: falling back would resume from an older state."""
    workdir = str(tmp_path / "run")
    config = tiny_config(photo_folder)
    trainer.train_and_evaluate(config, workdir)
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    state = trainer.build_state(run, tf.distribute.get_strategy(), workdir)

    def outage(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "storage backend unavailable")

    monkeypatch.setattr(state.checkpoints.checkpoint, "restore", outage)
    with pytest.raises(tf.errors.UnavailableError):
        state.checkpoints.restore_latest()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(photo_folder, tmp_path,
                                                                   monkeypatch):
    calls = tf.Variable(0)
    original = classification.cross_entropy

    def poisoned(labels, logits, label_smoothing=0.0):
        calls.assign_add(1)
        poison = tf.cond(calls > 8, lambda: tf.constant(np.nan), lambda: tf.constant(0.0))
        return original(labels, logits, label_smoothing) + poison

    monkeypatch.setattr(classification, "cross_entropy", poisoned)
    workdir = str(tmp_path / "run")
    with pytest.raises(trainer.TrainingDiverged, match=r"loss is nan at step 9 .*ckpt-6 stays "
                                                       r"the latest good state"):
        trainer.train_and_evaluate(tiny_config(photo_folder), workdir)
    assert tf.train.latest_checkpoint(workdir).endswith("ckpt-6")


def test_a_ram_workdir_trains_evaluates_and_exports_to_ram(photo_folder):
    """ram:// is a TensorFlow filesystem that open() and os.path cannot see: gs:// stands in."""
    workdir = "ram://runs/tiny"
    results = trainer.train_and_evaluate(tiny_config(photo_folder), workdir)
    assert results["checkpoint"] == "ram://runs/tiny/ckpt-12"
    for name in ("config.json", "results.json", "training.png", "checkpoint"):
        assert tf.io.gfile.exists(f"{workdir}/{name}"), name
    assert not os.path.exists(os.path.join("runs", "tiny"))  # nothing went to the local disk
    evaluated = trainer.evaluate_workdir(workdir)
    assert evaluated["step"] == 12
    assert evaluated["top1"] == pytest.approx(results["eval_top1"])
    # ... and export from the ram:// workdir to a ram:// export dir, then serve from there.
    export.export_workdir(workdir, "ram://exports/from_ram")
    image = sorted(tf.io.gfile.glob(f"{photo_folder}/*/*.jpg"))[0]
    with tf.io.gfile.GFile(image, "rb") as stream:
        data = stream.read()
    served = tf.saved_model.load("ram://exports/from_ram").signatures["serving_default"]
    assert served(image_bytes=tf.constant([data]))["classes"].shape == (1, 3)
    tf.io.gfile.makedirs("ram://photos")
    tf.io.gfile.copy(image, "ram://photos/one.jpg", overwrite=True)
    _, (prediction,) = predict.predict_files("ram://exports/from_ram", ["ram://photos/one.jpg"])
    assert prediction.error is None and len(prediction.result["top"]) == 3


def test_continuous_eval_visits_every_checkpoint(photo_folder, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config(photo_folder)
    trainer.train_and_evaluate(config, workdir)
    results = trainer.evaluate_workdir(workdir, continuous=True, timeout=1)
    assert results["step"] == 12
    steps = [step for step, _ in report.read_scalars(os.path.join(workdir, "eval"))["top1"]]
    assert 12 in steps


def test_fine_tuning_from_our_run_reinitialises_a_different_classifier(photo_folder, tmp_path):
    first = str(tmp_path / "first")
    trainer.train_and_evaluate(tiny_config(photo_folder), first)
    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=2)
    classifier_before = model.get_layer("predictions").get_weights()[0].copy()
    skipped = workdir_lib.initialize(task_of("efficientnetv2-test"), model, first)
    assert skipped == ["predictions (other shapes: re-initialised)"]
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[0],
                                  classifier_before)
    reader = tf.train.load_checkpoint(first)
    stem_ema = [name for name, shape in tf.train.list_variables(first)
                if name.startswith("ema/averages/") and shape == [3, 3, 3, 8]]
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(),
                                  reader.get_tensor(stem_ema[0]))  # the EMA weights


def test_fine_tuning_from_keras_applications_weights(tmp_path):
    theirs = keras.applications.EfficientNetV2B0(weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "efficientnetv2-b0.weights.h5")
    theirs.save_weights(path)
    ours = efficientnet_tf.create_model("efficientnetv2-b0", num_classes=5)
    skipped = workdir_lib.initialize(task_of("efficientnetv2-b0"), ours, path)
    assert len(skipped) == 1 and skipped[0].startswith("predictions")
    np.testing.assert_array_equal(ours.get_layer("block6h").project_conv.kernel.numpy(),
                                  theirs.get_layer("block6h_project_conv").kernel.numpy())


def test_train_with_init_from_starts_from_the_other_run(photo_folder, tmp_path):
    first = str(tmp_path / "first")
    trainer.train_and_evaluate(tiny_config(photo_folder), first)
    config = tiny_config(photo_folder, **{"train.steps": 1, "optimizer.lr_per_256": 1e-9})
    config.init_from = first
    config.model.dropout_rate = 0.0
    second = str(tmp_path / "second")
    trainer.train_and_evaluate(config, second)
    restored = []
    for workdir in (first, second):
        model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=3)
        ema = optim.ExponentialMovingAverage(model)
        tf.train.Checkpoint(model=model, ema=ema).restore(
            tf.train.latest_checkpoint(workdir)).expect_partial()
        restored.append((model, ema))
    # The second run's weights start at the first run's EMA weights (one tiny step later).
    np.testing.assert_allclose(restored[1][0].get_layer("stem_conv").kernel.numpy(),
                               restored[0][1].averages[0].numpy(), atol=1e-5)


def test_an_empty_held_out_split_is_an_error_before_training(tmp_path):
    """18 images, 10% held out by a hash of the path: none is; said when the run is planned."""
    root = write_folder(tmp_path / "few", per_class=6)
    config = tiny_config(str(root), **{"data.eval_percent": 10})
    with pytest.raises(ValueError, match=r"the eval split of the data is empty \(a hash of each "
                                         r"path holds out data.eval_percent=10% of the 18 images"):
        trainer.resolve_run(config, tf.distribute.get_strategy())
    assert not os.path.exists(tmp_path / "run")


def test_batch_that_does_not_divide_is_a_clear_error(photo_folder, tmp_path):
    with pytest.raises(ValueError, match="global batch 7 does not divide by the 2 replicas"):
        trainer.train_and_evaluate(tiny_config(photo_folder, **{"train.batch_size": 7}),
                                   str(tmp_path / "run"), mirrored())


def test_config_errors_from_the_command_line(photo_folder, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    base = [sys.executable, "-m", "efficientnet_tf.main", "train",
            "--config=experiments/folder.py:efficientnetv2-test", f"--workdir={tmp_path}/run"]
    mistyped = subprocess.run(base + ["--config.train.batchsize=4"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert mistyped.returncode != 0 and "batchsize" in mistyped.stderr
    missing = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0
    assert "data.source='folder' needs data.root" in missing.stderr.strip().splitlines()[-1]


def test_no_tpu_is_a_one_line_error(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "efficientnet_tf.main", "train", "--tpu=no-such-tpu",
         "--config=experiments/folder.py:efficientnetv2-test", f"--workdir={tmp_path}/run",
         f"--config.data.root={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180)
    assert result.returncode == 1  # the machine has no TPU: a runtime failure
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("efficientnet-tf train: error: no TPU found for --tpu='no-such-tpu' "
                           "(tried TPUClusterResolver"), result.stderr[-1500:]


@pytest.mark.slow  # 40 s; the default suite builds scaled rows
def test_a_scaled_row_trains_by_name_and_is_rebuilt_from_the_record(photo_folder, tmp_path):
    name = "efficientnetv2-test:w=1.5,d=2,r=32"
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(
        tiny_config(photo_folder, **{"model.name": name, "train.steps": 2}), workdir)
    assert results["model"] == name
    run = workdir_lib.load_run(workdir)
    assert run.spec == registry.get(name) and run.spec.width == 1.5
    model, _, _ = workdir_lib.restore_model(workdir)
    plain = efficientnet_tf.create_model("efficientnetv2-test", num_classes=run.num_classes)
    assert model.count_params() > plain.count_params()  # wider and deeper than its base
    assert model.count_params() == efficientnet_tf.create_model(
        name, num_classes=run.num_classes).count_params()
