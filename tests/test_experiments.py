"""The recipes in experiments/: they load for every variant they name and hold the papers' numbers
(REFERENCE.md §5); the runlocal variant of a recipe really trains."""

import importlib.util
import os

import pytest

from efficientnet_tf.specs import registry
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


@pytest.mark.parametrize("variant", [f"efficientnet-b{i}" for i in range(8)])
def test_imagenet_v1_recipe(variant):
    config = with_data(load("imagenet_v1").get_config(variant))
    assert config.model.name == variant and config.augment.kind == "autoaugment"
    assert (config.train.batch_size, config.train.epochs) == (4096, 350)
    assert config.optimizer.lr_per_256 * 4096 / 256 == pytest.approx(0.256)
    assert (config.optimizer.decay_rate, config.optimizer.decay_epochs) == (0.97, 2.4)
    assert (config.train.label_smoothing, config.train.weight_decay) == (0.1, 1e-5)
    assert config.train.ema_decay == 0.9999 and config.optimizer.warmup_epochs == 5
    (stage,) = progressive.stages(registry.get(variant), config, 1000)
    assert stage.image_size == registry.get(variant).eval_size


@pytest.mark.parametrize("variant", registry.names(registry.V2))
def test_imagenet_v2_recipe(variant):
    config = with_data(load("imagenet_v2").get_config(variant))
    stages = progressive.stages(registry.get(variant), config, 1000)
    assert len(stages) == 4 and stages[0].image_size == 128
    assert stages[-1].image_size <= registry.get(variant).train_size
    if variant == "efficientnetv2-s":
        assert [s.randaug_magnitude for s in stages][::3] == [5, 15]
        assert config.augment.kind == "randaugment"


def test_imagenet21k_recipe():
    config = with_data(load("imagenet21k_v2").get_config("efficientnetv2-xl"))
    assert config.data.num_classes == 21841 and config.train.epochs == 60
    assert config.optimizer.schedule == "cosine" and config.train.label_smoothing == 0.0


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "oxford_flowers102", "cars196"])
def test_finetune_recipes(dataset):
    config = config_lib.validate(load("finetune").get_config(f"{dataset},efficientnetv2-s"))
    assert (config.train.batch_size, config.train.steps, config.train.weight_decay) == (
        512, 10_000, 0.0)
    assert config.optimizer.lr_per_256 * 512 / 256 == pytest.approx(0.001)
    (stage,) = progressive.stages(registry.get("efficientnetv2-s"), config, 10_000)
    assert stage.image_size == 384 and stage.mixup_alpha == 0.0
    assert stage.randaug_magnitude == pytest.approx(24.0)  # cutout half side 96 = 384 / 4
    with pytest.raises(ValueError, match="unknown fine-tuning dataset 'mnist'"):
        load("finetune").get_config("mnist,efficientnetv2-s")


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
