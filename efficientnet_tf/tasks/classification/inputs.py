"""A classifier's train and eval input pipelines: one per split and image size, shardable per
host, built on data/stream.py.

Recipe numbers: docs/reference.md §5.

Train: files (shuffled, interleaved) -> [cache] -> shuffle -> repeat -> per-example seed ->
decode + random crop + resize + flip (parallel) -> skip undecodable images -> label check,
RandAugment / AutoAugment, cast -> batch (static shape) -> [mixup / cutmix] -> prefetch.
With cache=True the files are decoded once, before any crop, and the decoded images are kept in
memory (`decoded_images`) for every epoch and every stage of the run: the same images come out,
without decoding them again (small data, where decoding costs as much as the model's step).
Eval: files -> [cache] -> decode + center crop + resize -> skip undecodable -> label check ->
pad to whole batches (label -1 marks padding) -> batch -> prefetch.
"""

import dataclasses
from typing import Optional, Union

import tensorflow as tf

from efficientnet_tf.data import augment as augment_lib
from efficientnet_tf.data import mixing as mixing_lib
from efficientnet_tf.data import image_header, preprocess, stream
from efficientnet_tf.data.sources import EVAL, TRAIN
from efficientnet_tf.data.stream import AUTOTUNE, decode_skipping_bad

PADDING_LABEL = -1


@dataclasses.dataclass
class TrainSettings:
    """How a stage's training images are made (its size, augmenter and mixing are constants):
    the run's settings as the task resolved them (no defaults of its own: the config has them)."""

    image_size: int
    batch_size: int
    num_classes: int
    crop: preprocess.CropSettings
    resize_method: str
    random_flip: bool
    shuffle_buffer: int
    cache: Union[bool, str]  # True: decoded images in memory; a path: file bytes there
    max_pixels: int  # larger images are skipped before decoding
    deterministic: bool
    seed: Optional[int]  # None: drawn
    augmenter: Optional[Union[augment_lib.RandAugment, augment_lib.AutoAugment]] = None
    mixing: Optional[mixing_lib.Mixing] = None
    dtype: tf.DType = tf.float32


def _check_label(label, key, num_classes):
    in_range = tf.logical_and(label >= 0, label < num_classes)
    check = tf.debugging.Assert(in_range, [
        f"label outside [0, {num_classes}) in", key, "label:", label], summarize=1)
    with tf.control_dependencies([check]):
        return tf.cast(tf.identity(label), tf.int32)


def decoded_images(source, input_context=None, counter=None, deterministic=False,
                   max_pixels=image_header.MAX_PIXELS):
    """The training split (this host's shard) as decoded uint8 images, cached in memory on the
    first pass: the start of train_dataset's pipeline for cache=True. Build it once per run and
    pass it to every stage's train_dataset: the cache lives in this dataset, so the stages share
    it. Undecodable images are skipped and counted once, on the first pass."""
    dataset = source.dataset(TRAIN, input_context=input_context, deterministic=deterministic)

    def decode(example):
        image = preprocess.within_pixel_cap(example["image"], max_pixels)
        return {**example, "image": preprocess.decode(image)}

    return decode_skipping_bad(dataset, decode, counter, deterministic, max_pixels).cache()


def train_dataset(source, settings, input_context=None, counter=None, decoded=None):
    """Batches of (images [B, S, S, 3] in `settings.dtype`, one-hot labels [B, classes] float32).

    Undecodable images are skipped, and counted in `counter` (a DecodeCounter) when given.
    With cache=True the pipeline starts from `decoded` (decoded_images of the same source and
    input context, shared by the run's stages; built here when not given)."""
    mixing = settings.mixing if settings.mixing is not None and settings.mixing.active else None
    if mixing is not None and settings.dtype == tf.uint8:
        raise ValueError("mixup/cutmix blend images: use a float dtype, not uint8")
    seed = stream.pipeline_seed(settings.seed)
    from_pixels = settings.cache is True  # the decoded-image cache
    if from_pixels:
        dataset = decoded if decoded is not None else decoded_images(
            source, input_context, counter, settings.deterministic, settings.max_pixels)
    else:
        dataset = source.dataset(TRAIN, input_context=input_context, shuffle_files=True,
                                 seed=seed, deterministic=settings.deterministic)
        dataset = stream.cache(dataset, settings.cache)
    dataset = dataset.shuffle(settings.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
    per_example_seeds = stream.example_seeds(seed, input_context)

    def decode(example, example_seed):
        crop_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(example_seed, 2))
        image = preprocess.preprocess_train(
            preprocess.within_pixel_cap(example["image"], settings.max_pixels),
            settings.image_size, crop_seed, settings.crop,
            settings.resize_method, settings.random_flip)
        return image, example["label"], example["key"], augment_seed

    def finish(image, label, key, augment_seed):
        label = _check_label(label, key, settings.num_classes)
        if settings.augmenter is not None:
            image = settings.augmenter(image, augment_seed)
        image = tf.cast(image, settings.dtype)
        image.set_shape([settings.image_size, settings.image_size, 3])
        return image, tf.one_hot(label, settings.num_classes, dtype=tf.float32)

    dataset = tf.data.Dataset.zip((dataset, per_example_seeds))
    if from_pixels:  # decoded already: the crop of a decoded image cannot fail
        dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE,
                              deterministic=settings.deterministic)
    else:
        dataset = decode_skipping_bad(dataset, decode, counter, settings.deterministic,
                                      settings.max_pixels)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE, deterministic=settings.deterministic)
    dataset = dataset.batch(settings.batch_size, drop_remainder=True)
    if mixing is not None:
        batch_seeds = stream.example_seeds(seed, input_context, offset=7)

        def mix(batch, batch_seed):
            images, labels = mixing(*batch, batch_seed)
            return tf.cast(images, settings.dtype), labels

        dataset = tf.data.Dataset.zip((dataset, batch_seeds)).map(mix, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE).with_options(stream.options(settings.deterministic))


def eval_dataset(source, transform, batch_size, num_classes, input_context=None,
                 dtype=tf.float32, cache=False, counter=None, split=EVAL,
                 max_pixels=image_header.MAX_PIXELS):
    """Batches of (images [B, S, S, 3], labels [B] int32); label -1 marks padding in the last one.

    `transform` is the run's preprocess.EvalTransform (or an image size: the official center
    crop, bilinear). Every example of the split (of this host's shard) is seen once, in whole
    static-shape batches.
    """
    if isinstance(transform, int):
        transform = preprocess.EvalTransform(transform)
    image_size = transform.image_size
    dataset = stream.cache(source.dataset(split, input_context=input_context), cache)

    def decode(example):
        image = preprocess.preprocess_eval(
            preprocess.within_pixel_cap(example["image"], max_pixels), transform)
        return image, example["label"], example["key"]

    def finish(image, label, key):
        image = tf.cast(image, dtype)
        image.set_shape([image_size, image_size, 3])
        return image, _check_label(label, key, num_classes)

    dataset = decode_skipping_bad(dataset, decode, counter, True, max_pixels)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3], dtype), tf.constant(PADDING_LABEL, tf.int32)))
    dataset = stream.whole_batches(dataset, padding, batch_size, input_context)
    return dataset.prefetch(AUTOTUNE).with_options(stream.options(True))


