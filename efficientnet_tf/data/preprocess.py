"""Decoding, inception-style random crop, eval center crop and resize (docs/reference.md §5, §7).

As the official code: train images are a random crop of random area and aspect ratio
(sample_distorted_bounding_box) resized to the stage's size and flipped, or (fine-tuning) the
whole image resized; eval images are the center crop of size/(size+32) of the short side,
resized, or the whole image resized (eval_transform decides which, once per run). JPEGs are
decoded only inside the crop window. Images stay in [0, 255]: normalization is part of the model.
Every function that takes an image takes its encoded bytes (a string tensor) or its decoded
uint8 pixels [H, W, 3] (the pipeline's in-memory cache of decoded images): the same windows
and pixels, up to a few levels where a JPEG decoded inside a window rounds differently.
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from efficientnet_tf.data import image_header

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


@dataclasses.dataclass(frozen=True)
class PadCrop:
    """The whole image resized, padded by `fraction` of its side on each edge (reflecting its
    border), and a random square of the original size taken from it: translations of up to
    `fraction`, with every pixel of the picture kept (the classic small-image crop of CIFAR
    training, 4 px of 32)."""

    fraction: float = 0.125


# The train transforms by name (config data.crop); "whole": no crop, the whole image resized
# (automl's fine-tuning path, preprocess_for_finetune); "pad": PadCrop.
TRAIN_CROPS = {"v1": V1_CROP, "v2": V2_CROP, "whole": None, "pad": PadCrop()}
# automl preprocessing.py preprocess_for_eval: V2 center-crops only below 320 px.
V2_WHOLE_IMAGE_FROM = 320


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """How an eval (and serving) image becomes image_size x image_size: a centered square of
    `crop_fraction` of the short side (the official center crop; None: image_size /
    (image_size + 32)), or with `crop` False the whole image, its aspect not kept."""

    image_size: int
    crop: bool = True
    crop_fraction: Optional[float] = None
    resize_method: str = "bilinear"

    @property
    def fraction(self):
        """The share of the short side kept (1.0 without a crop)."""
        if not self.crop:
            return 1.0
        return crop_fraction(self.image_size, self.crop_fraction)

    def describe(self):
        if not self.crop:
            return f"whole image resized to {self.image_size} px ({self.resize_method})"
        return (f"center crop of {self.fraction:.3f} of the short side, resized to "
                f"{self.image_size} px ({self.resize_method})")


def eval_transform(train_crop, image_size, resize_method, crop_fraction=None):
    """The eval transform of a run, from its train transform (data.crop resolved to v1, v2 or
    whole) and size, as the official codes decide it (docs/fidelity.md):

      v1     center crop of size / (size + 32) at every size (tensorflow/tpu; automl's legacy
             path for V2-B0..B3);
      v2     that crop below 320 px, the whole image from 320 px on (automl preprocessing.py);
      whole  the whole image (automl's fine-tuning path); pad the same.
    An explicit `crop_fraction` (config eval.crop_fraction) keeps that share of the short side.
    """
    if train_crop not in TRAIN_CROPS:
        raise ValueError(f"unknown train crop {train_crop!r}; use one of {sorted(TRAIN_CROPS)}")
    if crop_fraction is not None:
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"eval.crop_fraction must be in (0, 1], got {crop_fraction!r}")
        return EvalTransform(image_size, True, float(crop_fraction), resize_method)
    crop = train_crop == "v1" or (train_crop == "v2" and image_size < V2_WHOLE_IMAGE_FROM)
    # "whole" and "pad" train on the whole picture: evaluate on it too.
    fraction = image_size / (image_size + CROP_PADDING) if crop else None
    return EvalTransform(image_size, crop, fraction, resize_method)


def is_decoded(image):
    """Whether `image` holds pixels already (uint8 [H, W, 3]) rather than encoded bytes."""
    return image.dtype != tf.string


def decode(image_bytes):
    """Any of JPEG, PNG, GIF (first frame), BMP as uint8 RGB; grayscale and CMYK become RGB.
    Decoded pixels pass through."""
    if is_decoded(image_bytes):
        return image_bytes
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def within_pixel_cap(image_bytes, max_pixels):
    """`image_bytes` after a check that its header's size is at most `max_pixels` (an
    InvalidArgument naming the size when not; decoded pixels and unknown sizes pass)."""
    if is_decoded(image_bytes) or not max_pixels:
        return image_bytes
    size = image_header.size(image_bytes)
    check = tf.debugging.Assert(size[0] * size[1] <= max_pixels, [tf.strings.format(
        "the image is {} x {} pixels, above the cap of {} (data.max_pixels)",
        (size[1], size[0], max_pixels))])
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes)


def image_shape(image_bytes):
    """(height, width) of an image; JPEG headers are read without decoding."""
    if is_decoded(image_bytes):
        return tf.shape(image_bytes)[:2]
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.io.extract_jpeg_shape(image_bytes)[:2],
                   lambda: tf.shape(decode(image_bytes))[:2])


def _decode_window(image_bytes, offset_y, offset_x, height, width):
    """Decodes only the window of a JPEG; other formats are decoded whole, then cropped."""
    if is_decoded(image_bytes):
        return tf.image.crop_to_bounding_box(image_bytes, offset_y, offset_x, height, width)

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
    """Random crop (or, with `crop` None, the whole image), resize and flip: a uint8
    image_size x image_size x 3 image.

    `seed` (shape [2]) makes every random choice: the same seed gives the same image.
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if crop is None:
        image = resize(decode(image_bytes), image_size, method)
    elif isinstance(crop, PadCrop):
        pad = int(round(image_size * crop.fraction))
        image = tf.pad(resize(decode(image_bytes), image_size, method),
                       [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], crop_seed)
    else:
        image = resize(decode_and_random_crop(image_bytes, image_size, crop_seed, crop),
                       image_size, method)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return to_uint8(image)


def preprocess_eval(image_bytes, transform):
    """The run's EvalTransform: a float32 image_size x image_size x 3 image in [0, 255]."""
    if transform.crop:
        image = decode_and_center_crop(image_bytes, transform.image_size, transform.crop_fraction)
    else:
        image = decode(image_bytes)
    return resize(image, transform.image_size, transform.resize_method)
