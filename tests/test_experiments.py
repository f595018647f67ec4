"""The recipes in experiments/: they load for every variant they name and hold the papers' numbers
(docs/reference.md §5); the runlocal variant of a recipe really trains."""

import importlib.util
import os

import pytest

from efficientnet_tf.specs import registry
from efficientnet_tf.tasks.classification import task as classification
from efficientnet_tf.train import config as config_lib, progressive, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments",
                                                                      f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and "efficientnet-tf train --config=experiments/" in module.__doc__
    return module


def with_data(config):
    with config.unlocked():
        config.data.train_pattern = "gs://bucket/train-*"
        config.data.eval_pattern = "gs://bucket/validation-*"
    return config_lib.validate(config)


def resolved(config):
    """(train crop, area range, resize method, eval crop?, eval crop fraction) of a recipe."""
    crop_name, resize, transform = classification.preprocessing(
        registry.get(config.model.name), config)
    crop = classification.crop_settings(crop_name, config.data.crop_area_min)
    return (crop_name, getattr(crop, "area_range", None), resize, transform.crop,
            round(transform.fraction, 4))


@pytest.mark.parametrize("variant", [f"efficientnet-b{i}" for i in range(8)])
def test_imagenet_v1_recipe_is_tensorflow_tpus(variant):
    config = with_data(load("imagenet_v1").get_config(variant))
    spec = registry.get(variant)
    assert config.model.name == variant and config.augment.kind == "autoaugment"
    assert (config.train.batch_size, config.train.epochs) == (2048, 350)  # main.py defaults
    assert config.optimizer.lr_per_256 * 2048 / 256 == pytest.approx(0.128)
    assert (config.optimizer.decay_rate, config.optimizer.decay_epochs) == (0.97, 2.4)
    assert (config.train.label_smoothing, config.train.weight_decay) == (0.1, 1e-5)
    assert config.train.weight_decay_exclude == "gamma,beta"  # biases decayed, BN not
    assert config.train.ema_decay == 0.9999 and config.optimizer.warmup_epochs == 5
    assert config.model.bn_sync == "v1"
    (stage,) = progressive.stages(spec, config, 1000)
    assert stage.image_size == spec.eval_size
    size = spec.eval_size
    assert resolved(config) == ("v1", (0.08, 1.0), "bicubic", True, round(size / (size + 32), 4))


# automl: B0-B3 take V1's path ('effnetv1_autoaug'), S/M/L/XL the V2 path ('randaug'), which
# evaluates the whole image at their eval sizes (>= 320).
V2_PREPROCESSING = {
    "efficientnetv2-b0": ("autoaugment", ("v1", (0.08, 1.0), "bicubic", True, 0.875)),
    "efficientnetv2-b3": ("autoaugment", ("v1", (0.08, 1.0), "bicubic", True, 0.9036)),
    "efficientnetv2-s": ("randaugment", ("v2", (0.05, 1.0), "bilinear", False, 1.0)),
    "efficientnetv2-l": ("randaugment", ("v2", (0.05, 1.0), "bilinear", False, 1.0)),
}


@pytest.mark.parametrize("variant", registry.names(registry.V2))
def test_imagenet_v2_recipe_is_automls(variant):
    config = with_data(load("imagenet_v2").get_config(variant))
    spec = registry.get(variant)
    assert (config.train.batch_size, config.train.epochs) == (4096, 350)
    assert config.train.weight_decay_exclude == "bias,gamma,beta"
    assert config.model.bn_sync == "v2" and config.progressive.schedule == "official"
    stages = progressive.stages(spec, config, 1000)
    assert len(stages) == 4 and stages[-1].image_size == spec.train_size
    assert stages[0].image_size == int(128 + (spec.train_size - 128) / 4)
    if variant in V2_PREPROCESSING:
        augment, preprocessing = V2_PREPROCESSING[variant]
        assert config.augment.kind == augment and resolved(config) == preprocessing
    paper = with_data(load("imagenet_v2").get_config(f"{variant},paper"))
    assert paper.progressive.schedule == "paper"


def test_imagenet21k_recipe():
    config = with_data(load("imagenet21k_v2").get_config("efficientnetv2-xl"))
    assert config.data.num_classes == 21841 and config.train.epochs == 60
    assert config.optimizer.schedule == "cosine" and config.train.label_smoothing == 0.0


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "oxford_flowers102", "cars196"])
def test_finetune_recipes_are_automls_ft_path(dataset):
    config = config_lib.validate(load("finetune").get_config(f"{dataset},efficientnetv2-s"))
    assert (config.train.batch_size, config.train.steps, config.train.weight_decay) == (
        512, 10_000, 1e-5)
    assert config.optimizer.lr_per_256 * 512 / 256 == pytest.approx(0.001)
    (stage,) = progressive.stages(registry.get("efficientnetv2-s"), config, 10_000)
    assert stage.image_size == 384 and stage.mixup_alpha == 0.0
    assert stage.randaug_magnitude == pytest.approx(24.0)  # cutout half side 96 = 384 // 4
    assert resolved(config) == ("whole", None, "bilinear", False, 1.0)  # no crop, train or eval
    with pytest.raises(ValueError, match="unknown fine-tuning dataset 'mnist'"):
        load("finetune").get_config("mnist,efficientnetv2-s")


def test_experiment_arguments_are_parsed_by_one_helper():
    assert config_lib.parse_argument("efficientnetv2-s,runlocal", ("x",), ("runlocal",)) == (
        ["efficientnetv2-s"], {"runlocal"})
    assert config_lib.parse_argument("", ("cifar10", "efficientnetv2-s")) == (
        ["cifar10", "efficientnetv2-s"], set())
    with pytest.raises(ValueError, match="expected at most 1 value"):
        load("imagenet_v1").get_config("efficientnet-b0,quick")


def test_scripts_set_config_keys_as_typed_values():
    config = config_lib.base_config()
    for assignment in ("train.epochs=20", "optimizer.lr_per_256=0.5", "data.cache=false",
                       "train.seed=None", "data.crop=whole", "train.prepare_next_stage=False"):
        config_lib.override(config, assignment)
    assert (config.train.epochs, config.optimizer.lr_per_256, config.data.cache) == (20, 0.5, False)
    assert config.train.seed is None and config.data.crop == "whole"
    assert config.train.prepare_next_stage is False
    with pytest.raises(ValueError, match="unknown config key 'train.epoch' in 'train.epoch=3'"):
        config_lib.override(config, "train.epoch=3")


@pytest.mark.slow
def test_imagenet_v2_runlocal_trains_on_tfrecords(tmp_path):
    from imagedata import write_folder
    from efficientnet_tf.data import tfrecords

    write_folder(tmp_path / "images", per_class=12)
    tfrecords.folder_to_tfrecords(str(tmp_path / "images"), str(tmp_path / "records"),
                                  eval_percent=25)
    config = load("imagenet_v2").get_config("efficientnetv2-b0,runlocal")
    config.data.train_pattern = str(tmp_path / "records" / "train-*")
    config.data.eval_pattern = str(tmp_path / "records" / "eval-*")
    config.data.num_classes = 3
    config.train.steps = 8
    results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["steps"] == 8 and results["eval_examples"] > 0


@pytest.mark.parametrize("variant", registry.detection_names())
def test_coco_detection_recipe_is_automls(variant):
    """google/automl efficientdet hparams_config.py: SGD momentum 0.9, 0.08 per 64 images, one
    warmup epoch, cosine, weight decay 4e-5, clip 10, EMA 0.9998, focal 0.25/1.5, Huber 0.1 x 50,
    jitter 0.1-2.0, 300 epochs (600 for D7/D7x), batch 128, synchronized BN."""
    config = load("coco_det").get_config(variant)
    assert config.task == "detection" and config.model.name == variant
    assert (config.optimizer.name, config.optimizer.momentum) == ("sgd", 0.9)
    assert config.optimizer.lr_per_256 * 64 / 256 == pytest.approx(0.08)
    assert (config.optimizer.warmup_epochs, config.optimizer.schedule) == (1.0, "cosine")
    assert (config.train.weight_decay, config.train.grad_clip_norm) == (4e-5, 10.0)
    assert config.train.grad_clip_mode == "automl"  # per replica, as automl's TF1 TPU path
    assert (config.data.class_ids, config.data.label_offset, config.data.num_classes) == (
        "category_id", 1, 90)
    assert (config.train.ema_decay, config.train.batch_size) == (0.9998, 128)
    assert config.train.epochs == (600.0 if variant in ("efficientdet-d7", "efficientdet-d7x")
                                   else 300.0)
    detection = config.detection
    assert (detection.focal_alpha, detection.focal_gamma) == (0.25, 1.5)
    assert (detection.huber_delta, detection.box_loss_weight) == (0.1, 50.0)
    assert (detection.scale_min, detection.scale_max, detection.max_instances) == (0.1, 2.0, 100)
    # label smoothing left to the task: none for a detector (automl's focal loss)
    assert config.model.bn_sync == "all" and config.train.label_smoothing is None
    assert "fusion_weights" in config.train.weight_decay_exclude


@pytest.mark.slow
def test_detect_folder_runlocal_trains_on_coco_json(tmp_path):
    from imagedata import write_coco_boxes

    for split, count in (("train", 12), ("eval", 4)):
        write_coco_boxes(f"{tmp_path}/{split}", count, seed=len(split))
    config = load("detect_folder").get_config("efficientdet-test,runlocal")
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{tmp_path}/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{tmp_path}/{split}/images"
    config.train.steps = 6
    results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["steps"] == 6 and results["eval_examples"] == 4
    assert set(results) >= {"eval_AP", "eval_AP/red", "eval_AP/blue"}


def write_coco_sample(directory, count, seed):
    """`count` 64 x 48 noise pictures with airplanes (COCO id 5) and toothbrushes (90) as solid
    boxes, under COCO's own 80 categories."""
    import numpy as np

    from efficientnet_tf.models.weights import COCO_NAMES
    from imagedata import write_coco_split

    rng = np.random.RandomState(seed)
    pictures = []
    for _ in range(count):
        pixels = rng.randint(0, 120, size=(48, 64, 3)).astype("uint8")
        x, y = rng.randint(0, 40), rng.randint(0, 28)
        category = (5, 90)[rng.randint(2)]
        pixels[y:y + 16, x:x + 20] = (220, 30, 30) if category == 5 else (30, 60, 220)
        pictures.append((pixels, [(y, x, y + 16, x + 20, category)]))
    write_coco_split(directory, pictures, COCO_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["records", "coco_json"])
def test_coco_det_as_the_readme_runs_it_on_a_coco_sample(route, tmp_path):
    """The README's two COCO routes on files in COCO's format (80 categories, ids 1..90): the
    converter's records with only their patterns given, or the JSON files themselves. Both
    train automl's 90 classes (class = category id - 1), the converter's labels.txt has the 90
    names, and the evaluation scores the two categories present by their names (the records'
    against the original annotation file, detection.eval_annotations)."""
    import json
    import subprocess
    import sys

    for split, count in (("train", 64), ("eval", 16)):  # runlocal's example counts
        write_coco_sample(f"{tmp_path}/{split}", count, seed=len(split))
    data = {f"{split}_{kind}": f"{tmp_path}/{split}/{file}" for split in ("train", "eval")
            for kind, file in (("annotations", "annotations.json"), ("images", "images"))}
    if route == "records":
        converted = subprocess.run(
            [sys.executable, "scripts/make_detection_tfrecords.py", "--shards=2",
             f"--output_dir={tmp_path}/records", *(f"--{k}={v}" for k, v in data.items())],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert converted.returncode == 0, converted.stderr[-3000:]
        counts = json.loads(converted.stdout.strip().splitlines()[-1])
        assert (counts["num_classes"], counts["label_offset"]) == (90, 1)
        names = (tmp_path / "records/labels.txt").read_text().splitlines()
        assert len(names) == 90 and (names[0], names[4], names[11], names[89]) == (
            "person", "airplane", "unused-12", "toothbrush")
        flags = [f"--config.data.train_pattern={tmp_path}/records/train-*",
                 f"--config.data.eval_pattern={tmp_path}/records/eval-*",
                 f"--config.detection.eval_annotations={data['eval_annotations']}"]
    else:
        flags = ["--config.data.source=coco_json",
                 *(f"--config.data.{k}={v}" for k, v in data.items())]
    workdir = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "efficientnet_tf.main", "train",
         "--config=experiments/coco_det.py:efficientdet-test,runlocal", f"--workdir={workdir}",
         "--config.train.steps=4", *flags],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["steps"] == 4 and results["eval_examples"] == 16
    assert set(results) >= {"eval_AP/airplane", "eval_AP/toothbrush"}
    assert not any(key.startswith("eval_AP/unused") for key in results)
