"""What a detector's run decides from its boxes, when its recipe leaves it open (adapt_to_data).

The detect_folder recipe (experiments/detect_folder.py) is for a user's own boxes: tens to a few
thousand images, objects of a few to a few hundred pixels. automl's COCO settings do not suit
them: 512-px inputs for 128-px pictures, anchors whose smallest side (4 x 8 = 32 px on level 3)
is larger than most small objects (few anchors reach IoU 0.5, and matching relies on forced
matches), a 0.1-2.0 scale jitter that shrinks a 20-px object to 2 px, SGD at an ImageNet-scale
rate for a few hundred steps, batch-norm and EMA averages longer than the run. Each rule below
fills a key the config leaves None from the training annotations (BoxProfile) and says why; a
key the user sets is never changed. Measurements behind the rules:
scripts/ablate_small_detection.py (README, "Detect on your own boxes").
"""

import dataclasses
import math
import statistics

from efficientnet_tf.data.sources import TRAIN
from efficientnet_tf.specs import blocks as blocks_lib
from efficientnet_tf.tasks.base import Decisions

# Input sizes are multiples of 32 between these bounds (the row's own size is the upper one).
SIZE_MULTIPLE, MIN_IMAGE_SIZE = 32, 64
# The smallest anchor (anchor_scale x the stride of the first level) aims at the 10th percentile
# of the objects' sides at the input size, within these bounds of anchor_scale (automl: 4).
MIN_ANCHOR_SCALE, MAX_ANCHOR_SCALE = 1.0, 4.0
# Images whose 10th-percentile object is smaller than the smallest anchor can have (1 x 8 px
# on level 3) are upscaled until it is that large, at most this much: smaller objects reach
# IoU 0.5 with no anchor and are matched only by force, and a 4-px object covers half a
# level-3 cell. On the sky set (4 / 6.5 / 16 px objects in 128-px pictures) D0 scored AP 0.2
# (AP50 1.3) at 128 px and 11.7 (37.1) at 256 (scripts/ablate_small_detection.py, size_256).
MAX_UPSCALE = 4.0
# Scale jitter: small objects (median side < SMALL_OBJECT px at the input size) are shrunk at
# most to 3/4 (automl's 0.1 makes a 20-px object 2 px), larger ones to a half, and zoomed as far
# in. It helps on held-out pictures (coins set, AP 6.0 without, 12.4 with) but a rescaled image
# is smoothed (zoomed in) or aliased (zoomed out) by the resampling, which an evaluation image at
# its own size is not: on 20 pictures of the coins set at 128 px, 200 steps of jitter 0.75-1.33,
# the inference-mode loss of the pictures was 148 against 1.09 in training mode (AP50 1.6%), as
# batch norm's moving statistics were gathered on rescaled images. Hence batch norm recomputed
# at the end on up to RECALIBRATION training images as evaluation sees them
# (trainer.recalibrate_batch_norm; loss 1.06, AP50 12% on that run), and the last
# FINAL_UNJITTERED of the steps without jitter: with jitter to the end the 20 pictures reached
# AP50 46% after 400 steps (68% after 800); with the last 25% unjittered 88%, with 40% 93.8%.
SMALL_OBJECT = 32
# Batch: 16, or 8 when 16 gives fewer than this many steps per epoch.
STEPS_PER_EPOCH = 10
MAX_BATCH, MIN_BATCH = 16, 8
# AdamW's rate for a batch of MAX_BATCH (from scratch; fine-tuning takes a tenth). 50 epochs of
# D0 from scratch on 72 pictures (seed 0, AP): at 1e-3 sky 10.5, coins 12.4, digits 0.5; at 3e-3
# 28.9, 21.3, 4.8; at 1e-2 coins 14.6, digits 6.2 (scripts/ablate_small_detection.py).
RATE, FINE_TUNING_RATE = 3e-3, 3e-4
# Batch-norm momentum: the moving statistics forget their start within the first 1/20 of the
# run (momentum^(steps/20) = e^-1), within automl's 0.99 and the demo's 0.9.
MIN_BN_MOMENTUM, MAX_BN_MOMENTUM = 0.9, 0.99
RECALIBRATION = 512  # images whose batch statistics replace the moving ones (a few batches)
FINAL_UNJITTERED = 0.4  # the share of the steps trained at the end without scale jitter

ADAPTED_KEYS = ("train.image_size", "detection.anchor_scale", "detection.scale_min",
                "detection.scale_max", "train.batch_size", "optimizer.lr_per_256",
                "optimizer.warmup_epochs", "train.ema_decay", "model.bn_momentum",
                "detection.bn_recalibration_images", "detection.final_unjittered_share")


@dataclasses.dataclass(frozen=True)
class BoxProfile:
    """The training annotations at a glance."""

    train_images: int
    boxes: int
    long_side: int  # median of the images' longer sides, px
    object_sides: tuple  # (10th percentile, median, 90th percentile) of sqrt(w x h), px

    def describe(self):
        low, median, high = self.object_sides
        return (f"{self.train_images} training images of median long side {self.long_side} "
                f"px with {self.boxes} boxes, object sides {low:g} / {median:g} / {high:g} px "
                "(10th percentile / median / 90th)")


def _percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def profile(source):
    """The BoxProfile of a detection source's training split (its ground truth)."""
    truth = source.ground_truth(TRAIN)
    if not truth["images"]:
        raise ValueError("the training split has no images to adapt the recipe to")
    sides = [math.sqrt(max(a["bbox"][2], 0.0) * max(a["bbox"][3], 0.0))
             for a in truth["annotations"] if not a["iscrowd"]]
    sides = [side for side in sides if side > 0]
    if not sides:
        raise ValueError("the training split has no boxes to adapt the recipe to")
    long_side = statistics.median(max(i["height"], i["width"]) for i in truth["images"])
    return BoxProfile(train_images=len(truth["images"]), boxes=len(sides),
                      long_side=int(long_side),
                      object_sides=tuple(round(_percentile(sides, share), 1)
                                         for share in (0.1, 0.5, 0.9)))


def upscale(spec, box_profile):
    """How much to enlarge the images so that their 10th-percentile object is as large as the
    smallest anchor (1 to MAX_UPSCALE)."""
    smallest_anchor = MIN_ANCHOR_SCALE * 2 ** spec.min_level
    return min(MAX_UPSCALE, max(1.0, smallest_anchor / max(box_profile.object_sides[0], 1e-3)))


def image_size(spec, box_profile):
    """The images' median long side (to the nearest multiple of 32), upscaled for objects
    smaller than the smallest anchor (upscale), at most the row's size: a detector fits the
    whole picture, and upscaling it costs time."""
    size = blocks_lib.round_to_multiple(box_profile.long_side * upscale(spec, box_profile),
                                        SIZE_MULTIPLE, MIN_IMAGE_SIZE)
    return min(size, spec.image_size)


def anchor_scale(spec, box_profile, size):
    """anchor_scale whose smallest anchors (level min_level) are the 10th-percentile object."""
    smallest = box_profile.object_sides[0] * size / box_profile.long_side
    scale = smallest / 2 ** spec.min_level
    return min(MAX_ANCHOR_SCALE, max(MIN_ANCHOR_SCALE, round(scale * 2) / 2))


def batch_size(box_profile):
    batch = MAX_BATCH
    while batch > MIN_BATCH and box_profile.train_images / batch < STEPS_PER_EPOCH:
        batch //= 2
    return batch


def adapt(config, spec, box_profile, total_steps):
    """(config with the open keys decided, [Decision]) for `box_profile` (profile());
    `total_steps(config, steps_per_epoch)` is the run's step count (train/config.py)."""
    decisions = Decisions(config)
    config, decide = decisions.config, decisions.decide
    fine_tuning = bool(config.init_from)
    factor = upscale(spec, box_profile)
    decide("train", "image_size", image_size(spec, box_profile),
           f"the images' median long side is {box_profile.long_side} px"
           + (f", enlarged {factor:.2g}x so that the 10th-percentile object "
              f"({box_profile.object_sides[0]:g} px) is as large as the smallest anchor "
              f"({MIN_ANCHOR_SCALE * 2 ** spec.min_level:g} px)" if factor > 1 else "")
           + (f"; {spec.name} is made for {spec.image_size}"
              if spec.image_size < box_profile.long_side * factor else ""))
    size = config.train.image_size
    low, median, _ = (side * size / box_profile.long_side for side in box_profile.object_sides)
    scale = anchor_scale(spec, box_profile, size)
    decide("detection", "anchor_scale", scale,
           f"at {size} px the objects' 10th-percentile side is {low:.0f} px: the smallest "
           f"anchors {scale * 2 ** spec.min_level:g} px ({spec.name}'s {spec.anchor_scale:g} "
           f"would make them {spec.anchor_scale * 2 ** spec.min_level:g})")
    shrink = 0.75 if median < SMALL_OBJECT else 0.5
    decide("detection", "scale_min", shrink,
           f"the median object is {median:.0f} px at {size} px: shrink images at most to "
           f"{shrink:g} (automl's 0.1 would make it {0.1 * median:.0f} px)")
    decide("detection", "scale_max", round(1 / config.detection.scale_min, 2),
           "zoom in as far as the shrink goes out")
    decide("train", "batch_size", batch_size(box_profile),
           f"{box_profile.train_images} training images: at least {STEPS_PER_EPOCH} steps per "
           "epoch")
    batch = config.train.batch_size
    rate = FINE_TUNING_RATE if fine_tuning else RATE
    decide("optimizer", "lr_per_256", round(rate * math.sqrt(batch / MAX_BATCH) * 256 / batch, 6),
           ("fine-tuning: a tenth of the from-scratch rate, so the loaded features survive; "
            if fine_tuning else "")
           + f"{config.optimizer.name} at {rate:g} for a batch of {MAX_BATCH}, scaled by the "
           f"square root of the batch ({batch})")
    steps_per_epoch = box_profile.train_images / batch
    steps = total_steps(config, steps_per_epoch)
    decide("optimizer", "warmup_epochs", round(min(1.0, 0.05 * steps / steps_per_epoch), 3),
           f"{steps} steps: warm up over min(1 epoch, 5% of the run)")
    window = max(10.0, 0.1 * steps)
    decide("train", "ema_decay", round(1.0 - 1.0 / window, 5),
           f"{steps} steps: average the weights over about the last 10% ({int(window)} steps)")
    momentum = min(MAX_BN_MOMENTUM, max(MIN_BN_MOMENTUM, round(1.0 - 20.0 / steps, 3)))
    decide("model", "bn_momentum", momentum,
           f"{steps} steps: batch-norm statistics that forget their start within the first "
           "5% of the run")
    jitter = (config.detection.scale_min, config.detection.scale_max) != (1.0, 1.0)
    decide("detection", "final_unjittered_share", FINAL_UNJITTERED if jitter else 0.0,
           (f"the last {FINAL_UNJITTERED:.0%} of the steps on the images as evaluation sees "
            "them (flips only), after training on rescaled ones" if jitter
            else "no scale jitter to end"))
    decide("detection", "bn_recalibration_images",
           min(RECALIBRATION, box_profile.train_images),
           "batch-norm statistics recomputed at the end on training images as evaluation sees "
           "them (those gathered while training follow changing weights and jittered images)")
    return config, list(decisions)
