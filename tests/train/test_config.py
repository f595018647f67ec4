"""train/config.py: a key the chosen task or schedule does not read is a one-line error naming
it; every recipe sets only keys its run reads; older records' keys are read where they moved."""

import glob
import os

import pytest
import tensorflow as tf

from efficientnet_tf import demo, tasks
from efficientnet_tf.specs import registry
from efficientnet_tf.train import config as config_lib, trainer
from trainutil import recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(os.path.basename(path)[:-3]
                 for path in glob.glob(os.path.join(ROOT, "experiments", "*.py")))


def classification_config(**settings):
    config = config_lib.base_config()
    config.data.source = "folder"
    config.data.root = "/nonexistent"  # the check comes before the data is read
    for key, value in settings.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def detection_config(**settings):
    config = classification_config(**settings)
    config.task = "detection"
    config.model.name = "efficientdet-test"
    return config


def unread_error(config):
    with pytest.raises(ValueError) as error:
        trainer.resolve_run(config, tf.distribute.get_strategy())
    return str(error.value)


def test_a_key_the_task_does_not_read_is_named_with_the_reason():
    message = unread_error(detection_config(**{"augment.kind": "autoaugment"}))
    assert message.startswith("config.augment.kind='autoaugment' is not read by a detection "
                              "run: a detector's training augmentation is flips and scale jitter")
    assert "\n" not in message
    message = unread_error(classification_config(**{"detection.focal_alpha": 0.5}))
    assert message.startswith("config.detection.focal_alpha=0.5 is not read by a "
                              "classification run")
    # Several: the first named, the others listed.
    message = unread_error(detection_config(**{"eval.crop_fraction": 1.0,
                                               "model.dropout_rate": 0.3}))
    assert "config.eval.crop_fraction=1.0" in message and "(nor are model.dropout_rate)" in message


def test_train_image_size_under_a_progressive_schedule_is_an_error():
    config = classification_config(**{"train.image_size": 64, "progressive.schedule": "official"})
    assert "progressive.schedule='official' sets each stage's size" in unread_error(config)
    # Without a schedule it is the run's size: read, no error from the check.
    fixed = classification_config(**{"train.image_size": 64})
    assert config_lib.unread_settings(fixed, tasks.get("classification").UNREAD_KEYS) == []


def test_a_detector_refuses_a_file_cache():
    config = detection_config()
    with config.ignore_type():  # a path where the schema holds a bool, as a recipe can set
        config.data.cache = "/tmp/cache"
    with pytest.raises(ValueError, match="a detector caches its examples in memory"):
        tasks.get("detection").resolve(config, registry.get("efficientdet-test"), None, None)


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize("argument", ["", "runlocal"])
def test_every_recipe_sets_only_keys_its_run_reads(name, argument):
    try:
        config = recipe(name, argument)
    except ValueError:  # a recipe without a runlocal form
        pytest.skip(f"{name} takes no {argument!r}")
    assert config_lib.unread_settings(config, tasks.get(config.task).UNREAD_KEYS) == []


def test_the_demos_set_only_keys_their_runs_read(tmp_path):
    for config in (demo.digits_config(str(tmp_path)), demo.detection_config(str(tmp_path)),
                   demo.scaling_config(str(tmp_path))):
        assert config_lib.unread_settings(config, tasks.get(config.task).UNREAD_KEYS) == []


def test_older_records_label_smoothing_is_read_where_it_moved():
    detector = config_lib.from_dict({"task": "detection",
                                     "detection": {"label_smoothing": 0.1}})
    assert detector.train.label_smoothing == 0.1
    classifier = config_lib.from_dict({"task": "classification",
                                       "train": {"label_smoothing": 0.2},
                                       "detection": {"label_smoothing": 0.0}})
    assert classifier.train.label_smoothing == 0.2


def test_none_is_decide_later_and_auto_says_the_same():
    config = classification_config(**{"train.precision": "auto", "data.crop": "AUTO",
                                      "train.jit_compile": "true"})
    plain = config_lib.with_auto_as_none(config)
    assert (plain.train.precision, plain.data.crop, plain.data.resize_method) == (None,) * 3
    assert plain.train.jit_compile == "true"  # a word that is not "auto" stays
    assert config.train.precision == "auto"  # the config given is not changed
    base = config_lib.base_config()
    assert all(base[key.split(".")[0]][key.split(".")[1]] is None for key in config_lib.AUTO_KEYS)
    with pytest.raises(ValueError, match="config.train.precision is 'fp16'; use one of "
                       "'float32', 'mixed_bfloat16', 'mixed_float16' or None"):
        config_lib.validate(classification_config(**{"train.precision": "fp16"}))
