"""Fine-tuning from official weights (--config.init_from): the run takes the checkpoint's input
scaling, its model starts from the checkpoint's values (the class predictor fresh for the
run's classes), and what the run records, checkpoints and exports keeps them."""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from imagedata import write_coco_boxes, write_folder

import officialdata as od
from efficientnet_tf.train import workdir as workdir_lib
from efficientnet_tf import export
from efficientnet_tf import pretrained, tasks
from efficientnet_tf.train import run as run_lib
from efficientnet_tf.models import efficientnet
from efficientnet_tf.train import config as config_lib, trainer

TOLERANCE = 1e-4


def reference(reference_id):
    return od.reference_arrays(reference_id)


def relative(ours, theirs):
    return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


def features(model, images):
    head = keras.Model(model.input, model.get_layer("top_activation").output)
    return head(images, training=False).numpy()


def classification_config(root, init_from, **overrides):
    config = config_lib.base_config()
    config.model.name = "efficientnetv2-b0"
    config.data.source = "folder"
    config.data.root = str(root)
    config.data.eval_percent = 25
    config.data.deterministic = True
    config.augment.kind = "none"
    config.train.batch_size = 2
    config.train.steps = 1
    config.train.seed = 0
    config.train.image_size = 64
    config.progressive.schedule = "none"
    config.eval.batch_size = 2
    config.eval.image_size = 128
    config.init_from = init_from
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def lookalike_archive(tmp_path, variant="efficientnetv2-b0", layout="ema"):
    folder = tmp_path / "official" / variant
    od.write_checkpoint(od.checkpoint_values(od.names(variant), layout, ("RMSProp",)),
                        str(folder / "model"))
    return od.pack(str(folder), str(tmp_path / f"{variant}.tgz"))


def test_init_from_an_official_checkpoint_gives_the_run_its_values_and_scaling(tmp_path):
    root = write_folder(tmp_path / "photos", per_class=4)
    archive = lookalike_archive(tmp_path)
    config = classification_config(root, archive, **{"model.input_scaling": "sym128"})
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    assert run.model.input_scaling == "sym128" and run.num_classes == 3
    task = tasks.create(run)
    model = task.build_model()
    skipped = workdir_lib.initialize(task, model, run.init_from)
    assert skipped == ["predictions (efficientnetv2-b0/head/dense/kernel is (1280, 1000) in the "
                       "file, (1280, 3) here: another number of classes; left freshly "
                       "initialised)"]
    expected = reference("efficientnetv2-b0.128x128.sym128")["features"]
    assert relative(features(model, od.image(128, 128)), expected) <= TOLERANCE

    # A name sets the scaling (no download to plan); a contradiction is an error.
    tagged = classification_config(root, "efficientnetv2-b0/imagenet21k-ft1k")
    assert trainer.resolve_run(tagged, tf.distribute.get_strategy()).model.input_scaling == "sym255"
    advprop = classification_config(root, "efficientnet-b0/advprop",
                                    **{"model.name": "efficientnet-b0"})
    strategy = tf.distribute.get_strategy()
    assert trainer.resolve_run(advprop, strategy).model.input_scaling == "sym255"
    wrong = classification_config(root, "efficientnetv2-b0/imagenet21k-ft1k",
                                  **{"model.input_scaling": "mean_std"})
    with pytest.raises(ValueError, match="input_scaling 'mean_std' contradicts init_from "
                       "'efficientnetv2-b0/imagenet21k-ft1k', which expect 'sym255'"):
        trainer.resolve_run(wrong, tf.distribute.get_strategy())
    # Without a choice the run takes the row's (V2-B0: ImageNet mean/std, as keras.applications).
    plain = classification_config(root, "")
    assert trainer.resolve_run(plain, strategy).model.input_scaling == "mean_std"


@pytest.mark.slow
def test_a_fine_tuning_run_keeps_the_official_values_through_checkpoint_and_export(tmp_path):
    """One step at learning rate 0 with frozen BN statistics: the run's checkpoint, the run that
    starts from it, and its SavedModel all still hold the official values."""
    root = write_folder(tmp_path / "photos", per_class=4)
    archive = lookalike_archive(tmp_path)
    config = classification_config(root, archive, **{
        "model.input_scaling": "sym128", "model.bn_momentum": 1.0, "optimizer.lr_per_256": 0.0,
        "optimizer.warmup_epochs": 0.0, "optimizer.schedule": "constant",
        "train.weight_decay": 0.0})
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    recorded = json.loads(tf.io.gfile.GFile(f"{workdir}/config.json").read())
    assert recorded["resolved"]["model"]["input_scaling"] == "sym128"
    model, _, _ = workdir_lib.restore_model(workdir)
    expected = reference("efficientnetv2-b0.128x128.sym128")["features"]
    assert relative(features(model, od.image(128, 128)), expected) <= TOLERANCE
    assert efficientnet.input_scaling_of(model) == "sym128"
    # A second run fine-tunes from this one: the recorded scaling comes along.
    again = classification_config(root, workdir)
    assert trainer.resolve_run(again, tf.distribute.get_strategy()).model.input_scaling == "sym128"
    # Resumed with the checkpoint it started from gone, the run keeps its recorded scaling.
    gone = classification_config(root, str(tmp_path / "deleted.tgz"))
    assert trainer.resolve_run(gone, tf.distribute.get_strategy(), workdir).model.input_scaling == (
        "sym128")
    # A weights file kept in a workdir is a file, not the run.
    kept = f"{workdir}/converted.weights.h5"
    pretrained.convert(archive, kept, "efficientnetv2-b0", "sym128")
    assert not workdir_lib.is_run(kept) and workdir_lib.is_run(workdir)
    assert workdir_lib.init_input_scaling(kept, "efficientnetv2-b0") == "sym128"
    export_dir = export.export_workdir(workdir, str(tmp_path / "export"))
    served = tf.saved_model.load(export_dir).signatures["predict_images"]
    logits = served(images=tf.constant(od.image(128, 128)))["logits"].numpy()
    assert relative(logits, model(od.image(128, 128), training=False).numpy()) <= TOLERANCE


@pytest.mark.slow
def test_a_detector_fine_tuned_from_coco_keeps_its_box_net(tmp_path):
    """init_from an official COCO detector into a 2-class run: the box net and everything but
    the class predictor come from the checkpoint, through a real run."""
    write_coco_boxes(f"{tmp_path}/data/train", 4, seed=0)
    write_coco_boxes(f"{tmp_path}/data/eval", 2, seed=1)
    folder = tmp_path / "official" / "efficientdet-d0"
    od.write_checkpoint(od.checkpoint_values(od.names("efficientdet-d0"), "ema", ("Momentum",)),
                        str(folder / "model"))
    config = config_lib.base_config()
    config.task = "detection"
    config.model.name = "efficientdet-d0"
    config.model.bn_momentum = 1.0
    config.data.source = "coco_json"
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{tmp_path}/data/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{tmp_path}/data/{split}/images"
    config.data.deterministic = True
    config.train.image_size = 128
    config.train.batch_size = 2
    config.train.steps = 1
    config.train.seed = 0
    config.train.weight_decay = 0.0
    config.train.ema_decay = 0.0
    config.optimizer.name = "sgd"
    config.optimizer.lr_per_256 = 0.0
    config.optimizer.warmup_epochs = 0.0
    config.eval.batch_size = 2
    config.init_from = str(folder)
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 1
    model, run, _ = workdir_lib.restore_model(workdir)
    assert run.model.input_scaling == "mean_std" and run.num_classes == 2
    found = model(od.image(128, 128), training=False)
    expected = reference("efficientdet-d0.128x128.meanstd")
    for level in range(3, 8):
        assert relative(found[f"boxes_{level}"], expected[f"box_{level}"]) <= TOLERANCE
    assert found["classes_3"].shape == (1, 16, 16, 18)


def load_experiment(name):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipes_for_your_own_data_start_from_official_names(tmp_path):
    """experiments/folder.py and detect_folder.py with init_from an official name: planned
    with the checkpoint's scaling and the fine-tuning path (nothing downloaded to plan)."""
    folder, detect_folder = (load_experiment(name) for name in ("folder", "detect_folder"))
    root = write_folder(tmp_path / "photos", per_class=4)
    config = folder.get_config("efficientnetv2-b0")
    config.data.root = str(root)
    config.data.eval_percent = 25
    config.init_from = "efficientnetv2-b0/imagenet21k-ft1k"
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    assert run.model.input_scaling == "sym255"
    decided = {decision.key: decision.value for decision in run.decisions}
    assert decided["data.crop"] == "whole"  # the fine-tuning path
    assert decided["progressive.image_size_min"] == decided["progressive.image_size_max"]

    write_coco_boxes(f"{tmp_path}/boxes/train", 2, seed=0)
    write_coco_boxes(f"{tmp_path}/boxes/eval", 2, seed=1)
    config = detect_folder.get_config("efficientdet-d0,runlocal")
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{tmp_path}/boxes/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{tmp_path}/boxes/{split}/images"
    config.init_from = "efficientdet-d0/coco"
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    assert run.model.input_scaling == "mean_std" and run.class_names == ("red", "blue")
    config.init_from = "efficientdet-d0/det-advprop"
    assert trainer.resolve_run(config, tf.distribute.get_strategy()).model.input_scaling == "sym255"


def test_runs_recorded_before_input_scaling_keep_what_they_were_trained_with(tmp_path):
    """A config.json of an earlier version: the row's normalization under its old name, no
    input_scaling: the Run loads, the model keeps the row's scaling, and a detector keeps the
    black padding it was trained with."""
    write_coco_boxes(f"{tmp_path}/data/train", 2, seed=0)
    write_coco_boxes(f"{tmp_path}/data/eval", 2, seed=1)
    config = config_lib.base_config()
    config.task = "detection"
    config.model.name = "efficientdet-test"
    config.data.source = "coco_json"
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{tmp_path}/data/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{tmp_path}/data/{split}/images"
    config.train.batch_size = config.eval.batch_size = 2
    config.train.steps = 1
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    assert tasks.create(run).pad_colour == pytest.approx((123.675, 116.28, 103.53))
    recorded = run.to_dict()
    del recorded["model"]["input_scaling"]
    legacy = run_lib.Run.from_dict(json.loads(json.dumps(recorded)), source=run.source,
                                   config=config)
    task = tasks.create(legacy)
    assert legacy.model.input_scaling is None and task.pad_colour == (0.0, 0.0, 0.0)
    assert efficientnet.input_scaling_of(task.build_model()) == "mean_std"

    root = write_folder(tmp_path / "photos", per_class=4)
    run = trainer.resolve_run(classification_config(root, ""), tf.distribute.get_strategy())
    recorded = json.loads(json.dumps(run.to_dict()))
    assert recorded["spec"]["normalization"] == "mean_std"
    recorded["spec"]["normalization"] = "imagenet"  # what earlier versions wrote
    del recorded["model"]["input_scaling"]
    legacy = run_lib.Run.from_dict(recorded, source=run.source, config=run.config)
    assert legacy.spec == run.spec
    assert efficientnet.input_scaling_of(tasks.create(legacy).build_model()) == "mean_std"
