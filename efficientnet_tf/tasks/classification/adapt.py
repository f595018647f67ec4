"""What a classifier's run decides from its data, when its recipe leaves it open (adapt_to_data).

The folder recipe (experiments/folder.py) is for a user's own images: a few hundred to a few
thousand pictures of any size. The numbers that suit ImageNet (224-px crops, batch 4096, a
5-epoch warmup, EMA over 10,000 steps) do not suit them, and the right ones depend on the data.
Each rule below fills a key that the config leaves None and says why; `adapt` returns the
filled config and those reasons, which the start-of-run log prints. A key the user sets is
never changed. Measurements behind the rules: scripts/ablate_small_data.py (README, "Your own
images").
"""

import math

from efficientnet_tf.specs import blocks as blocks_lib
from efficientnet_tf.tasks.base import Decisions

# The sizes a run adapts to are multiples of 16 (the network's stride-32 stages then see whole
# 2 x 2 maps at least), between these bounds.
MIN_IMAGE_SIZE = 32
SIZE_MULTIPLE = 16
# Steps per epoch the batch size aims at, at least: a small folder should still take some
# twenty optimizer steps per pass over it. Not below 16: a batch of 8 trains half as many images
# per second on a CPU, with noisier batch statistics (100 photos, 300 steps: 89% fitted at 16,
# 68% at 8, in the same time).
STEPS_PER_EPOCH = 20
MAX_BATCH, MIN_BATCH = 32, 16
# Random-resized crops (area >= data.crop_area_min, 0.5 in the folder recipe: up to 1.4x zoom)
# from this training size up; smaller images train on the whole picture with flips. Measured
# (scripts/ablate_small_data.py, README "Your own images"; single runs, which move by several
# points): crops of area >= 0.5 gave 71-80% on 96-px photos where whole images gave 64%, and
# lost 3-6 points on 64-px textures (whose scale is the class) and 32-px digits (a few pixels
# per stroke).
MIN_CROP_SIZE = 96


def _round_size(size):
    return blocks_lib.round_to_multiple(size, SIZE_MULTIPLE, MIN_IMAGE_SIZE)


def image_size(spec, profile):
    """The images' own size (median short side, to a multiple of 16), at most the row's train
    size: upscaling small images only costs time; downscaling large ones saves it."""
    return min(_round_size(profile.short_side), spec.train_size)


def batch_size(profile):
    """32, or 16 when 32 would give fewer than STEPS_PER_EPOCH steps per epoch."""
    batch = MAX_BATCH
    while batch > MIN_BATCH and profile.train_images / batch < STEPS_PER_EPOCH:
        batch //= 2
    return batch


def lr_per_256(rate_at_max_batch, batch):
    """optimizer.lr_per_256 that gives `rate_at_max_batch` at a batch of MAX_BATCH and scales
    with the square root of the batch elsewhere: Adam's rule (Malladi et al., "On the SDEs and
    scaling rules for adaptive gradient algorithms", NeurIPS 2022), where the linear rule would
    starve a small folder's batch of 16 with half the rate."""
    rate = rate_at_max_batch * math.sqrt(batch / MAX_BATCH)
    return round(rate * 256.0 / batch, 6)


ADAPTED_KEYS = ("progressive.image_size_max", "progressive.image_size_min", "eval.image_size",
                "train.batch_size", "optimizer.warmup_epochs", "train.ema_decay", "data.crop",
                "optimizer.lr_per_256")


def adapt(config, spec, profile, total_steps):
    """(config with the open keys decided, [Decision]) for `profile` (data.profile);
    `total_steps(config, steps_per_epoch)` is the run's step count (train/config.py)."""
    decisions = Decisions(config)
    config, decide = decisions.config, decisions.decide
    fine_tuning = bool(config.init_from)
    size = image_size(spec, profile)
    size_reason = (f"the images' median short side is {profile.short_side} px"
                   + (f"; {spec.name} trains at most at {spec.train_size}"
                      if size == spec.train_size else ""))
    decide("progressive", "image_size_max", size, size_reason)
    decide("eval", "image_size", config.progressive.image_size_max,
           "evaluate at the final training size")
    if config.progressive.schedule == "none":
        decide("train", "image_size", config.progressive.image_size_max,
               "progressive.schedule=none: one size, the one decided for the images")
    low = _round_size(config.progressive.image_size_max * 2 / 3)
    if fine_tuning or low >= config.progressive.image_size_max or low < 48:
        decide("progressive", "image_size_min", config.progressive.image_size_max,
               "one size: " + ("fine-tuning keeps the size the features were trained at"
                               if fine_tuning else "too small to grow"))
    else:
        decide("progressive", "image_size_min", low,
               "progressive learning from 2/3 of the final size (V2 paper §4): faster early "
               "epochs")
    decide("train", "batch_size", batch_size(profile),
           f"{profile.train_images} training images: at least {STEPS_PER_EPOCH} steps per "
           "epoch")
    steps_per_epoch = profile.train_images / config.train.batch_size
    steps = total_steps(config, steps_per_epoch)
    epochs = steps / steps_per_epoch
    decide("optimizer", "warmup_epochs", round(min(1.0, 0.05 * epochs), 3),
           f"{steps} steps: warm up over min(1 epoch, 5% of the run)")
    window = max(10.0, 0.1 * steps)
    decide("train", "ema_decay", round(1.0 - 1.0 / window, 5),
           f"{steps} steps: average over about the last 10% ({int(window)} steps)")
    if fine_tuning:
        decide("data", "crop", "whole",
               "fine-tuning: the whole image, as the official fine-tuning path")
        decide("optimizer", "lr_per_256", lr_per_256(1e-4, config.train.batch_size),
               "fine-tuning: a tenth of the from-scratch rate, so the loaded features survive")
    else:
        size = config.progressive.image_size_max
        if size >= MIN_CROP_SIZE:
            decide("data", "crop", "v1", f"training from scratch at {size} px: random crops of "
                   f"area >= {config.data.crop_area_min} and flips")
        else:
            decide("data", "crop", "whole", f"training from scratch at {size} px (< "
                   f"{MIN_CROP_SIZE}): whole images and flips; crops would zoom away the few "
                   "pixels the classes differ by")
        decide("optimizer", "lr_per_256", lr_per_256(1e-3, config.train.batch_size),
               f"AdamW at 1e-3 for a batch of {MAX_BATCH}, scaled by the square root of the "
               f"batch ({config.train.batch_size})")
    return config, list(decisions)
