"""Detection input pipelines: boxes jittered and labelled in the graph (EfficientDet §4.1).

Train (google/automl efficientdet dataloader.py's recipe): decode (undecodable files skipped and
counted, as for classification) -> crowd boxes dropped -> random horizontal flip -> scale
jitter: the image resized to fit a square of `scale` x size (scale uniform in [0.1, 2.0]), a
random size x size window of it (padded at the bottom and right where the image is smaller) ->
boxes moved with the pixels, clipped to the image, emptied ones dropped -> at most
max_instances boxes (the rest dropped, counted and logged) -> anchor labels (targets.py) ->
batch. Every shape is static, so the step sees dense targets on TPU.
Eval: decode -> resize to fit size x size (aspect kept), pad bottom/right -> labels (for the
eval loss) -> whole batches, padding marked by image_id -1; `scale` and the original size go
along so detections map back to the original pixels.

Images stay in [0, 255]: the model normalizes (as the classification models). Padding (the
window's outside the image) has the colour the model's input scaling maps to 0, as the official
code, which pads after normalizing, sees it.
Elements of a detection source (sources.py): {"image", "key", "image_id", "boxes" (normalized
ymin, xmin, ymax, xmax), "classes" (0-based), "is_crowd"}.
"""

import dataclasses
import threading
from typing import Optional

import tensorflow as tf
from absl import logging

from efficientnet_tf.data import preprocess, stream
from efficientnet_tf.data.sources import EVAL, TRAIN
from efficientnet_tf.data.stream import AUTOTUNE, decode_skipping_bad
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import targets as targets_lib

PADDING_IMAGE_ID = -1
# What the images are padded with: the colour the model's input scaling maps to 0, as the
# official code pads after normalizing (registry.zero_colour); ImageNet's mean colour for
# the detectors' default scaling.
MEAN_COLOUR = registry.zero_colour(registry.MEAN_STD)


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """How a run's detection examples are made: the run's settings as the task resolved them
    (no defaults of its own: the config has them)."""

    image_size: int
    batch_size: int
    num_classes: int
    anchors: anchors_lib.AnchorSettings
    max_instances: int
    scale_range: tuple
    random_flip: bool
    shuffle_buffer: int
    cache: bool  # the encoded examples kept in memory after the first pass
    max_pixels: int
    deterministic: bool
    pad_colour: tuple  # registry.zero_colour of the model's input scaling
    seed: Optional[int]  # None: drawn
    dtype: tf.DType = tf.float32


class TruncationCounter:
    """Counts the images that had more than max_instances boxes (the rest were dropped) and
    logs the first LOGGED of them by name."""

    LOGGED = 10

    def __init__(self, max_instances):
        self.max_instances = max_instances
        self.images = {}  # key -> boxes dropped
        self._lock = threading.Lock()

    def record(self, key, dropped):
        key = key.numpy().decode("utf-8", "replace")
        with self._lock:
            first = key not in self.images
            self.images[key] = int(dropped)
            count = len(self.images)
        if first and count <= self.LOGGED:
            logging.warning("image %s has %d boxes more than detection.max_instances=%d; they "
                            "were dropped (%d image(s) so far)", key, int(dropped),
                            self.max_instances, count)
        return 0


def flip_boxes(boxes):
    """Normalized boxes of a left-right flipped image."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def pad_to_square(image, size, colour):
    """`image` padded bottom/right to size x size with `colour` (3 values in [0, 255])."""
    colour = tf.constant(colour, image.dtype)
    return tf.image.pad_to_bounding_box(image - colour, 0, 0, size, size) + colour


def _scale_and_crop(image, boxes, size, scale, offset_fraction, pad_colour=MEAN_COLOUR):
    """The image resized to fit a square of scale x size, a size x size window of it at
    `offset_fraction` (2 numbers in [0, 1)) of its free range, padded bottom/right with
    `pad_colour`; boxes (normalized) in the window's pixels, clipped to the image, and which of
    them keep area."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    image_scale = tf.minimum(scale * size / shape[0], scale * size / shape[1])
    scaled = tf.maximum(tf.round(shape * image_scale), 1.0)
    offset = tf.floor(offset_fraction * tf.maximum(scaled - size, 0.0))
    resized = tf.image.resize(image, tf.cast(scaled, tf.int32), method="bilinear")
    offset_int = tf.cast(offset, tf.int32)
    window = resized[offset_int[0]:offset_int[0] + size, offset_int[1]:offset_int[1] + size]
    window = pad_to_square(window, size, pad_colour)
    pixels = boxes * tf.tile(scaled, [2]) - tf.tile(offset, [2])
    limit = tf.minimum(scaled - offset, float(size))  # the image's extent in the window
    pixels = tf.clip_by_value(pixels, 0.0, tf.tile(limit, [2]))
    keep = tf.logical_and(pixels[:, 2] > pixels[:, 0], pixels[:, 3] > pixels[:, 1])
    return window, pixels, keep


def resize_to_fit(image, size, pad_colour=MEAN_COLOUR):
    """(the image resized to fit size x size with its aspect kept, padded bottom/right with
    `pad_colour`; the scale applied): the eval and serving transform, after which detections
    map back to the original pixels by dividing by the scale."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(size / shape[0], size / shape[1])
    scaled = tf.clip_by_value(tf.round(shape * scale), 1.0, float(size))
    resized = tf.image.resize(image, tf.cast(scaled, tf.int32), method="bilinear")
    return tf.clip_by_value(pad_to_square(resized, size, pad_colour), 0.0, 255.0), scale


def _targets(settings, anchors, boxes, classes):
    """The anchor targets (targets.py) as a flat dict (classes_L, boxes_L, num_positives)."""
    size = (settings.image_size, settings.image_size)
    targets = targets_lib.label(anchors, boxes, classes, size, settings.anchors)
    return {**{f"classes_{level}": value for level, value in targets.classes.items()},
            **{f"boxes_{level}": value for level, value in targets.boxes.items()},
            "num_positives": targets.num_positives}


def _padded(settings, boxes, classes, key, truncations):
    boxes, classes, dropped = targets_lib.pad_instances(boxes, classes, settings.max_instances)
    if truncations is not None:
        noted = tf.cond(dropped > 0, lambda: tf.py_function(
            truncations.record, [key, dropped], tf.int64), lambda: tf.constant(0, tf.int64))
        with tf.control_dependencies([noted]):
            boxes = tf.identity(boxes)
    return boxes, classes


def train_dataset(source, settings, input_context=None, counter=None, truncations=None):
    """Batches of (images [B, S, S, 3] in settings.dtype, targets {classes_L [B, H, W, A] int32,
    boxes_L [B, H, W, A * 4] float32, num_positives [B]}) for one replica."""
    size = settings.image_size
    seed = stream.pipeline_seed(settings.seed)
    anchors = anchors_lib.generate((size, size), settings.anchors)
    dataset = source.dataset(TRAIN, input_context=input_context, shuffle_files=True, seed=seed,
                             deterministic=settings.deterministic)
    dataset = stream.cache(dataset, settings.cache)
    dataset = dataset.shuffle(settings.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
    per_example_seeds = stream.example_seeds(seed, input_context)
    low, high = settings.scale_range

    def decode(example, example_seed):
        flip_seed, scale_seed, offset_seed = tf.unstack(
            tf.random.experimental.stateless_split(example_seed, 3))
        image = preprocess.decode(preprocess.within_pixel_cap(example["image"],
                                                              settings.max_pixels))
        real = tf.logical_not(example["is_crowd"])  # automl: crowds are not trained on
        boxes = tf.boolean_mask(tf.cast(example["boxes"], tf.float32), real)
        classes = tf.boolean_mask(tf.cast(example["classes"], tf.int32), real)
        if settings.random_flip:
            flip = tf.random.stateless_uniform([], flip_seed) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
        scale = tf.random.stateless_uniform([], scale_seed, low, high)
        offset = tf.random.stateless_uniform([2], offset_seed)
        image, boxes, keep = _scale_and_crop(image, boxes, size, scale, offset,
                                             settings.pad_colour)
        return image, tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep), example["key"]

    def finish(image, boxes, classes, key):
        boxes, classes = _padded(settings, boxes, classes, key, truncations)
        image = tf.cast(tf.clip_by_value(image, 0.0, 255.0), settings.dtype)
        image.set_shape([size, size, 3])
        return image, _targets(settings, anchors, boxes, classes)

    dataset = tf.data.Dataset.zip((dataset, per_example_seeds))
    dataset = decode_skipping_bad(dataset, decode, counter, settings.deterministic,
                                  settings.max_pixels)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE,
                          deterministic=settings.deterministic)
    dataset = dataset.batch(settings.batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE).with_options(stream.options(settings.deterministic))


def eval_dataset(source, settings, batch_size, input_context=None, counter=None, split=EVAL):
    """Batches of (images [B, S, S, 3], targets: the train targets plus image_id [B] int64
    (PADDING_IMAGE_ID in the last batch's padding), scale [B] and original_size [B, 2]): every
    image of the split (of this host's shard) once."""
    size = settings.image_size
    anchors = anchors_lib.generate((size, size), settings.anchors)
    dataset = source.dataset(split, input_context=input_context)

    def decode(example):
        image = preprocess.decode(preprocess.within_pixel_cap(example["image"],
                                                              settings.max_pixels))
        original_size = tf.shape(image)[:2]
        image, scale = resize_to_fit(image, size, settings.pad_colour)
        real = tf.logical_not(example["is_crowd"])  # the eval loss as the train loss
        boxes = tf.boolean_mask(tf.cast(example["boxes"], tf.float32), real) * tf.tile(
            tf.cast(original_size, tf.float32) * scale, [2])
        classes = tf.boolean_mask(tf.cast(example["classes"], tf.int32), real)
        return image, boxes, classes, example["key"], {
            "image_id": tf.cast(example["image_id"], tf.int64), "scale": scale,
            "original_size": original_size}

    def finish(image, boxes, classes, key, extra):
        boxes, classes = _padded(settings, boxes, classes, key, None)
        image = tf.cast(image, settings.dtype)
        image.set_shape([size, size, 3])
        return image, {**_targets(settings, anchors, boxes, classes), **extra}

    dataset = decode_skipping_bad(dataset, decode, counter, True, settings.max_pixels)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    image_spec, target_spec = dataset.element_spec  # static shapes: zeros of each
    zeros = {key: tf.zeros(spec.shape, spec.dtype) for key, spec in target_spec.items()}
    padding = tf.data.Dataset.from_tensors((
        tf.zeros(image_spec.shape, image_spec.dtype),
        {**zeros, "image_id": tf.constant(PADDING_IMAGE_ID, tf.int64), "scale": 1.0}))
    dataset = stream.whole_batches(dataset, padding, batch_size, input_context)
    return dataset.prefetch(AUTOTUNE).with_options(stream.options(True))
