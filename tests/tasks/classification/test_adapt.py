"""The folder recipe (experiments/folder.py): what it decides from the data, and that it learns.

The learnability guard trains the recipe, as a user runs it, on 100 real photo patches; a
recipe that cannot fit 100 images is broken (issue: the folder recipe stayed at chance)."""


import pytest
import tensorflow as tf

from efficientnet_tf.data import profile as profile_lib
from efficientnet_tf.data import samples, sources
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks import base
from efficientnet_tf.tasks.classification import adapt
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import trainer

from imagedata import write_folder
from trainutil import recipe



def folder_recipe(arg="efficientnetv2-b0"):
    return recipe("folder", arg)


def a_profile(train_images, short_side, classes=10):
    return profile_lib.DataProfile(train_images=train_images, eval_images=100,
                                   num_classes=classes, smallest_class=train_images // classes,
                                   image_size=(short_side, short_side * 4 // 3), sampled=200)


def test_the_profile_of_a_folder(tmp_path):
    root = write_folder(tmp_path / "images", per_class=8, size=(60, 45))
    (root / "chelsea" / "7.jpg").unlink()
    source = sources.ImageFolderSource(str(root), eval_percent=25)
    found = profile_lib.profile(source)
    assert (found.num_classes, found.image_size, found.short_side) == (3, (45, 60), 45)
    assert found.train_images + found.eval_images == 23
    assert found.smallest_class == min(
        sum(1 for _, label in source.examples("train") if label == k) for k in range(3))


def decided(config, profile, spec="efficientnetv2-b0"):
    config, decisions = adapt.adapt(config, registry.get(spec), profile, config_lib.total_steps)
    return config, {d.key: d.value for d in decisions}


def test_large_photos_get_crops_small_images_the_whole_picture():
    photos, values = decided(folder_recipe(), a_profile(1200, 96))
    assert values["data.crop"] == "v1" and photos.data.crop_area_min == 0.5
    assert (values["progressive.image_size_min"], values["progressive.image_size_max"],
            values["eval.image_size"]) == (64, 96, 96)
    assert values["train.batch_size"] == 32  # 1200 / 32 = 37 steps per epoch
    assert values["optimizer.lr_per_256"] == 0.008  # AdamW at 1e-3 for 32 images
    # 30 epochs x 38 steps = 1125 steps: warm up 1 epoch, average the last ~10%.
    assert values["optimizer.warmup_epochs"] == 1.0 and values["train.ema_decay"] == 0.99111
    digits, values = decided(folder_recipe(), a_profile(480, 32))
    assert values["data.crop"] == "whole" and "48" not in str(values["progressive.image_size_min"])
    assert digits.progressive.image_size_min == digits.progressive.image_size_max == 32
    assert values["train.batch_size"] == 16  # 480 / 32 = 15 steps: halved to 30
    # A large picture is trained at the row's own size at most.
    _, values = decided(folder_recipe(), a_profile(5000, 600))
    assert values["progressive.image_size_max"] == registry.get("efficientnetv2-b0").train_size


def test_fine_tuning_keeps_the_size_and_lowers_the_rate():
    config = folder_recipe()
    config.init_from = "efficientnetv2-b0.h5"
    _, values = decided(config, a_profile(1200, 160))
    assert values["data.crop"] == "whole" and values["optimizer.lr_per_256"] == 0.0008
    assert values["progressive.image_size_min"] == values["progressive.image_size_max"] == 160


def test_what_the_user_sets_is_never_changed():
    config = folder_recipe()
    config.data.crop = "pad"
    config.train.batch_size = 64
    config, values = decided(config, a_profile(1200, 96))
    assert (config.data.crop, config.train.batch_size) == ("pad", 64)
    assert "data.crop" not in values and "train.batch_size" not in values
    assert base.open_keys(config, adapt.ADAPTED_KEYS) == []


@pytest.mark.slow  # about 2 minutes on 2 cores
def test_the_folder_recipe_fits_100_real_photos(tmp_path):
    """10 classes x 10 photo patches of 64 px (scikit-image's and scikit-learn's photos), the
    recipe as a user runs it for 500 steps (80 epochs at the batch of 16 it decides): > 90% top-1
    on those images (EMA weights, inference mode). The old recipe stayed near chance (10%) on
    such data."""
    root = str(tmp_path / "photos")
    samples.write_photos(root, size=64, train_per_class=10, eval_per_class=1)
    config = folder_recipe()
    config.data.root = f"{root}/train"
    config.data.eval_root = f"{root}/train"  # top-1 on the training images themselves
    config.data.deterministic = True
    config.train.steps = 500
    config.train.seed = 0
    config.train.checkpoint_every_steps = 500
    config.train.log_every_steps = 100
    results = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["eval_examples"] == 100
    assert results["eval_top1"] > 0.9, (results["eval_top1"], results["train_top1"])
    assert tf.io.gfile.exists(str(tmp_path / "run" / "config.json"))


def test_a_fixed_size_run_trains_at_the_size_decided_for_the_images():
    """--config.progressive.schedule=none once trained at the row's 192 px on 48-px images."""
    config = folder_recipe()
    config.progressive.schedule = "none"
    config, values = decided(config, a_profile(600, 48))
    assert values["train.image_size"] == config.eval.image_size == 48
    config, values = decided(folder_recipe(), a_profile(600, 48))
    assert "train.image_size" not in values and config.train.image_size is None
