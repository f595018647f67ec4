"""Decoding, inception-style random crop, eval center crop and resize (REFERENCE.md §5).

As the official code: train images are a random crop of random area and aspect ratio
(sample_distorted_bounding_box) resized to the stage's size and flipped; eval images are the center
crop of size/(size+32) of the short side, resized. JPEGs are decoded only inside the crop window.
Images stay in [0, 255]: normalization is part of the model.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

CROP_PADDING = 32


@dataclasses.dataclass(frozen=True)
class CropSettings:
    """Arguments of sample_distorted_bounding_box for the train crop, and what to do when it
    finds no window (the sampler then returns the whole image): the eval center crop
    (`center_fallback`, V1) or the whole image (V2)."""

    area_range: Tuple[float, float] = (0.08, 1.0)
    aspect_ratio_range: Tuple[float, float] = (3 / 4, 4 / 3)
    min_object_covered: float = 0.1
    max_attempts: int = 10
    center_fallback: bool = True


V1_CROP = CropSettings()  # tensorflow/tpu efficientnet preprocessing.py
# google/automl efficientnetv2 preprocessing.py: TF's defaults apart from the area range.
V2_CROP = CropSettings(area_range=(0.05, 1.0), aspect_ratio_range=(0.75, 1.33),
                       min_object_covered=0.0, max_attempts=100, center_fallback=False)


def decode(image_bytes):
    """Any of JPEG, PNG, GIF (first frame), BMP as uint8 RGB; grayscale and CMYK become RGB."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def image_shape(image_bytes):
    """(height, width) of an encoded image; JPEG headers are read without decoding."""
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.io.extract_jpeg_shape(image_bytes)[:2],
                   lambda: tf.shape(decode(image_bytes))[:2])


def _decode_window(image_bytes, offset_y, offset_x, height, width):
    """Decodes only the window of a JPEG; other formats are decoded whole, then cropped."""
    def jpeg():
        window = tf.stack([offset_y, offset_x, height, width])
        return tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def other():
        return tf.image.crop_to_bounding_box(decode(image_bytes), offset_y, offset_x, height, width)

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def crop_fraction(image_size, fraction=None):
    """Share of the short side the eval crop keeps: image_size/(image_size+32) (0.875 at 224) as
    the official code, or a fixed `fraction` (small images, where 32 pixels are a lot)."""
    return fraction if fraction is not None else image_size / (image_size + CROP_PADDING)


def center_crop_window(shape, image_size, fraction=None):
    """(offset_y, offset_x, side, side): the center square of crop_fraction() of the short side."""
    height, width = shape[0], shape[1]
    side = tf.cast(crop_fraction(image_size, fraction)
                   * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def decode_and_center_crop(image_bytes, image_size, fraction=None):
    """The eval crop, decoded (uint8, not yet resized)."""
    return _decode_window(image_bytes, *center_crop_window(image_shape(image_bytes), image_size,
                                                           fraction))


def decode_and_random_crop(image_bytes, image_size, seed, crop=V1_CROP, fraction=None):
    """The train crop, decoded (uint8, not yet resized). `seed` is a stateless seed (shape [2]).

    When no window satisfies the constraints in `max_attempts`, the sampler returns the whole
    image and, as the official code, we take the eval center crop instead.
    """
    shape = image_shape(image_bytes)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape, [3]], 0), bounding_boxes=whole_image, seed=seed,
        min_object_covered=crop.min_object_covered, aspect_ratio_range=crop.aspect_ratio_range,
        area_range=crop.area_range, max_attempts=crop.max_attempts,
        use_image_if_no_bounding_boxes=True)
    offset_y, offset_x, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(size)
    failed = tf.logical_and(tf.equal(height, shape[0]), tf.equal(width, shape[1]))
    failed = tf.logical_and(failed, crop.center_fallback)
    window = tf.cond(failed, lambda: tf.stack(center_crop_window(shape, image_size, fraction)),
                     lambda: tf.stack([offset_y, offset_x, height, width]))
    return _decode_window(image_bytes, window[0], window[1], window[2], window[3])


def resize(image, image_size, method="bilinear"):
    """Resizes to image_size x image_size; returns float32 in [0, 255] with a static shape."""
    resized = tf.image.resize(image, [image_size, image_size], method=method)
    resized = tf.clip_by_value(resized, 0.0, 255.0)  # bicubic overshoots
    resized.set_shape([image_size, image_size, 3])
    return resized


def to_uint8(image):
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def preprocess_train(image_bytes, image_size, seed, crop=V1_CROP, method="bilinear", flip=True):
    """Random crop, resize and flip: a uint8 image_size x image_size x 3 image.

    `seed` (shape [2]) makes every random choice: the same seed gives the same image.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = resize(decode_and_random_crop(image_bytes, image_size, crop_seed, crop), image_size,
                   method)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return to_uint8(image)


def preprocess_eval(image_bytes, image_size, method="bilinear", fraction=None):
    """Center crop and resize: a float32 image_size x image_size x 3 image in [0, 255]."""
    return resize(decode_and_center_crop(image_bytes, image_size, fraction), image_size, method)
