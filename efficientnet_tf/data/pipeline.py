"""The train and eval input pipelines: one per split and image size, shardable per host.

Recipe numbers: docs/reference.md §5.

Train: files (shuffled, interleaved) -> [cache] -> shuffle -> repeat -> per-example seed ->
decode + random crop + resize + flip (parallel) -> skip undecodable images -> label check,
RandAugment / AutoAugment, cast -> batch (static shape) -> [mixup / cutmix] -> prefetch.
With cache=True the files are decoded once, before any crop, and the decoded images are kept in
memory (`decoded_images`) for every epoch and every stage of the run: the same images come out,
without decoding them again (small data, where decoding costs as much as the model's step).
Eval: files -> [cache] -> decode + center crop + resize -> skip undecodable -> label check ->
pad to whole batches (label -1 marks padding) -> batch -> prefetch.

Randomness comes from stateless ops fed one seed per example, so `seed` makes a pipeline
reproducible (with `deterministic=True`); without a seed each run draws its own.
"""

import dataclasses
import secrets
from typing import Optional, Union

import tensorflow as tf

from efficientnet_tf.data import augment as augment_lib
from efficientnet_tf.data import mixing as mixing_lib
from efficientnet_tf.data import preprocess
from efficientnet_tf.data.sources import EVAL, TRAIN

AUTOTUNE = tf.data.AUTOTUNE
PADDING_LABEL = -1


class DecodeCounter:
    """Counts the images the pipeline decoded and those it skipped because they were bad.

    Each image is counted once, as decoded or as skipped, when it leaves decode_skipping_bad,
    so read mid-run the counts are those of the images processed so far (tf.data prefetches
    ahead of the consumer) and never negative; once a split is through, they are its totals.
    """

    def __init__(self):
        with tf.init_scope(), tf.device("CPU:0"):
            self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False, name="decoded")
            self.failed = tf.Variable(0, dtype=tf.int64, trainable=False, name="failed")

    @property
    def skipped(self):
        return int(self.failed.numpy())

    @property
    def tried(self):
        return int(self.decoded.numpy()) + self.skipped


def _placeholder(spec):
    shape = [0 if dim is None else dim for dim in spec.shape]  # e.g. a decoded image's H, W
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.zeros(shape, spec.dtype)


def decode_skipping_bad(dataset, decode_fn, counter, deterministic):
    """dataset.map(decode_fn), where an element whose decoding fails is dropped and counted
    (in `counter`, a DecodeCounter; None: dropped uncounted, and the function captures no
    variable -- what a TPU pod's other hosts need, whose pipelines cannot reach host 0's).

    Each element becomes a one-element dataset: (decoded, True) if decode_fn succeeds (else
    ignore_errors drops it and a placeholder (marker, False) comes first). Downstream, each
    element is counted as decoded or failed and the failed ones are filtered out. The inner
    datasets run in parallel through interleave.
    """
    def attempt(*element):
        decoded = tf.data.Dataset.from_tensors(element).map(decode_fn).ignore_errors()
        marker = tf.nest.map_structure(_placeholder, decoded.element_spec)
        return decoded.map(lambda *item: (item if len(item) > 1 else item[0], True)).concatenate(
            tf.data.Dataset.from_tensors((marker, False))).take(1)

    def count(item, is_image):
        with tf.control_dependencies([tf.cond(is_image, lambda: counter.decoded.assign_add(1),
                                               lambda: counter.failed.assign_add(1))]):
            return item, tf.identity(is_image)

    dataset = dataset.interleave(attempt, cycle_length=AUTOTUNE, block_length=1,
                                 num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if counter is not None:
        dataset = dataset.map(count)
    dataset = dataset.filter(lambda item, is_image: is_image)
    return dataset.map(lambda item, is_image: item)


@dataclasses.dataclass
class TrainSettings:
    """How a stage's training images are made (its size, augmenter and mixing are constants)."""

    image_size: int
    batch_size: int
    num_classes: int
    crop: preprocess.CropSettings = preprocess.V1_CROP
    resize_method: str = "bilinear"
    random_flip: bool = True
    augmenter: Optional[Union[augment_lib.RandAugment, augment_lib.AutoAugment]] = None
    mixing: Optional[mixing_lib.Mixing] = None
    dtype: tf.DType = tf.float32
    shuffle_buffer: int = 10_000
    cache: Union[bool, str] = False  # True: decoded images in memory; a path: file bytes there
    seed: Optional[int] = None
    deterministic: bool = False


def _check_label(label, key, num_classes):
    in_range = tf.logical_and(label >= 0, label < num_classes)
    check = tf.debugging.Assert(in_range, [
        f"label outside [0, {num_classes}) in", key, "label:", label], summarize=1)
    with tf.control_dependencies([check]):
        return tf.cast(tf.identity(label), tf.int32)


def _cache(dataset, cache):
    if cache is True:
        return dataset.cache()
    if cache:
        return dataset.cache(cache)
    return dataset


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def decoded_images(source, input_context=None, counter=None, deterministic=False):
    """The training split (this host's shard) as decoded uint8 images, cached in memory on the
    first pass: the start of train_dataset's pipeline for cache=True. Build it once per run and
    pass it to every stage's train_dataset: the cache lives in this dataset, so the stages share
    it. Undecodable images are skipped and counted once, on the first pass."""
    dataset = source.dataset(TRAIN, input_context=input_context, deterministic=deterministic)

    def decode(example):
        return {**example, "image": preprocess.decode(example["image"])}

    return decode_skipping_bad(dataset, decode, counter, deterministic).cache()


def train_dataset(source, settings, input_context=None, counter=None, decoded=None):
    """Batches of (images [B, S, S, 3] in `settings.dtype`, one-hot labels [B, classes] float32).

    Undecodable images are skipped, and counted in `counter` (a DecodeCounter) when given.
    With cache=True the pipeline starts from `decoded` (decoded_images of the same source and
    input context, shared by the run's stages; built here when not given)."""
    mixing = settings.mixing if settings.mixing is not None and settings.mixing.active else None
    if mixing is not None and settings.dtype == tf.uint8:
        raise ValueError("mixup/cutmix blend images: use a float dtype, not uint8")
    seed = settings.seed if settings.seed is not None else secrets.randbits(31)
    from_pixels = settings.cache is True  # the decoded-image cache
    if from_pixels:
        dataset = decoded if decoded is not None else decoded_images(
            source, input_context, counter, settings.deterministic)
    else:
        dataset = source.dataset(TRAIN, input_context=input_context, shuffle_files=True,
                                 seed=seed, deterministic=settings.deterministic)
        dataset = _cache(dataset, settings.cache)
    dataset = dataset.shuffle(settings.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    per_example_seeds = tf.data.Dataset.counter().map(
        lambda index: tf.stack([tf.cast(seed, tf.int64) + pipeline_id * 1_000_003, index]))

    def decode(example, example_seed):
        crop_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(example_seed, 2))
        image = preprocess.preprocess_train(
            example["image"], settings.image_size, crop_seed, settings.crop,
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
        dataset = decode_skipping_bad(dataset, decode, counter, settings.deterministic)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE, deterministic=settings.deterministic)
    dataset = dataset.batch(settings.batch_size, drop_remainder=True)
    if mixing is not None:
        batch_seeds = tf.data.Dataset.counter().map(
            lambda index: tf.stack([tf.cast(seed, tf.int64) + 7 + pipeline_id * 1_000_003, index]))

        def mix(batch, batch_seed):
            images, labels = mixing(*batch, batch_seed)
            return tf.cast(images, settings.dtype), labels

        dataset = tf.data.Dataset.zip((dataset, batch_seeds)).map(mix, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE).with_options(_options(settings.deterministic))


def eval_dataset(source, transform, batch_size, num_classes, input_context=None,
                 dtype=tf.float32, cache=False, counter=None, split=EVAL):
    """Batches of (images [B, S, S, 3], labels [B] int32); label -1 marks padding in the last one.

    `transform` is the run's preprocess.EvalTransform (or an image size: the official center
    crop, bilinear). Every example of the split (of this host's shard) is seen once, in whole
    static-shape batches.
    """
    if isinstance(transform, int):
        transform = preprocess.EvalTransform(transform)
    image_size = transform.image_size
    dataset = _cache(source.dataset(split, input_context=input_context), cache)

    def decode(example):
        image = preprocess.preprocess_eval(example["image"], transform)
        return image, example["label"], example["key"]

    def finish(image, label, key):
        image = tf.cast(image, dtype)
        image.set_shape([image_size, image_size, 3])
        return image, _check_label(label, key, num_classes)

    dataset = decode_skipping_bad(dataset, decode, counter, deterministic=True)
    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3], dtype), tf.constant(PADDING_LABEL, tf.int32)))
    dataset = dataset.concatenate(padding.repeat(batch_size - 1))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))
