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
import re
import secrets
import threading
from typing import Optional, Union

import tensorflow as tf
from absl import logging

from efficientnet_tf.data import augment as augment_lib
from efficientnet_tf.data import mixing as mixing_lib
from efficientnet_tf.data import image_header, preprocess
from efficientnet_tf.data.sources import EVAL, TRAIN

AUTOTUNE = tf.data.AUTOTUNE
PADDING_LABEL = -1


class DecodeCounter:
    """Counts the images the pipeline decoded and those it skipped because they were bad, and
    names the bad files.

    `decoded` and `failed` count each pass over an image when it leaves decode_skipping_bad,
    so read mid-run they are those of the images processed so far (tf.data prefetches ahead of
    the consumer) and never negative; once a split is through, they are its totals. A bad file
    is skipped on every pass (every epoch, unless its decoded images are cached): `files` holds
    each once, {key: reason}, and `skipped` is their number. The first LOGGED are logged with
    their reason as they are found.
    """

    LOGGED = 10

    def __init__(self):
        with tf.init_scope(), tf.device("CPU:0"):
            self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False, name="decoded")
            self.failed = tf.Variable(0, dtype=tf.int64, trainable=False, name="failed")
        self.files = {}
        self._lock = threading.Lock()

    @property
    def skipped(self):
        """Bad files skipped so far, each counted once."""
        return len(self.files)

    @property
    def tried(self):
        return int(self.decoded.numpy()) + int(self.failed.numpy())

    def record(self, key, data, max_pixels):
        """Notes a bad file (called in the pipeline through tf.py_function)."""
        key = key.numpy().decode("utf-8", "replace")
        with self._lock:
            if key in self.files:
                return 0
            self.files[key] = None
            first = len(self.files) <= self.LOGGED
        # The reason is found again outside the pipeline, which only knows that decoding failed.
        data = data.numpy()
        reason = why_undecodable(data, int(max_pixels)) if data else why_empty(key)
        self.files[key] = reason
        if first:
            logging.warning("skipped image %s: %s", key, reason)
        return 0


def _readable(message):
    """The gist of an op's error message: no function-node prefix or op suffix, an Assert's
    text only."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message.strip().splitlines()[0])
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message)
    if "Summarized data: " in message:
        message = message.split("Summarized data: ", 1)[1]
        message = re.sub(r"^b?['\"](.*)['\"]$", r"\1", message.strip())
    return message


def why_empty(key):
    """Why a source gave no bytes for `key`: sources that read files (a COCO JSON's image
    folder) give empty bytes for a file they cannot read, to skip it rather than stop."""
    try:
        exists = tf.io.gfile.exists(key)
    except tf.errors.OpError:
        exists = False
    return "empty file" if exists else "no such file, or it cannot be read"


def why_undecodable(data, max_pixels=image_header.MAX_PIXELS):
    """Why the encoded image `data` (bytes) does not decode: the first line of the decoder's
    error, or a note on what it is."""
    if not data:
        return "empty file"
    try:
        image = preprocess.decode(preprocess.within_pixel_cap(tf.constant(data), max_pixels))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        return _readable(error.message)
    if 0 in image.shape:
        return "the image has no pixels"
    return "it decodes here, but failed in the pipeline's crop or resize"


def _placeholder(spec):
    shape = [0 if dim is None else dim for dim in spec.shape]  # e.g. a decoded image's H, W
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.zeros(shape, spec.dtype)


def _identity(element):
    """(key, encoded bytes) of a source element ({"image", "label", "key"}, alone or first in
    a tuple), for naming a bad file; empty strings for elements of another shape."""
    for part in (element if isinstance(element, tuple) else (element,)):
        if isinstance(part, dict) and "key" in part and "image" in part:
            image = part["image"]
            return part["key"], (image if image.dtype == tf.string else tf.constant(""))
    return tf.constant(""), tf.constant("")


def decode_skipping_bad(dataset, decode_fn, counter, deterministic,
                        max_pixels=image_header.MAX_PIXELS):
    """dataset.map(decode_fn), where an element whose decoding fails is dropped and counted
    (in `counter`, a DecodeCounter, which names the file; None: dropped uncounted, and the
    function captures no variable -- what a TPU pod's other hosts need, whose pipelines cannot
    reach host 0's). `max_pixels` only goes into the reason given for a file.

    Each element becomes a one-element dataset: (decoded, True) if decode_fn succeeds (else
    ignore_errors drops it and a placeholder (marker, False) comes first, with the element's
    key and bytes). Downstream, each element is counted as decoded or failed, the failed ones
    are named and filtered out. The inner datasets run in parallel through interleave.
    """
    def attempt(*element):
        key, data = _identity(element if len(element) > 1 else element[0])
        decoded = tf.data.Dataset.from_tensors(element).map(decode_fn).ignore_errors()
        marker = tf.nest.map_structure(_placeholder, decoded.element_spec)
        return decoded.map(lambda *item: (item if len(item) > 1 else item[0], True, "", "")
                           ).concatenate(tf.data.Dataset.from_tensors(
                               (marker, False, key, data))).take(1)

    def count(item, is_image, key, data):
        def failed():
            with tf.control_dependencies([counter.failed.assign_add(1)]):
                return tf.py_function(counter.record, [key, data, max_pixels], tf.int64)
        done = tf.cond(is_image, lambda: counter.decoded.assign_add(1) * 0, failed)
        with tf.control_dependencies([done]):
            return item, tf.identity(is_image)

    dataset = dataset.interleave(attempt, cycle_length=AUTOTUNE, block_length=1,
                                 num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if counter is not None:
        dataset = dataset.map(count)
    else:
        dataset = dataset.map(lambda item, is_image, key, data: (item, is_image))
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
    max_pixels: int = image_header.MAX_PIXELS  # larger images are skipped before decoding
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
    seed = settings.seed if settings.seed is not None else secrets.randbits(31)
    from_pixels = settings.cache is True  # the decoded-image cache
    if from_pixels:
        dataset = decoded if decoded is not None else decoded_images(
            source, input_context, counter, settings.deterministic, settings.max_pixels)
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
        batch_seeds = tf.data.Dataset.counter().map(
            lambda index: tf.stack([tf.cast(seed, tf.int64) + 7 + pipeline_id * 1_000_003, index]))

        def mix(batch, batch_seed):
            images, labels = mixing(*batch, batch_seed)
            return tf.cast(images, settings.dtype), labels

        dataset = tf.data.Dataset.zip((dataset, batch_seeds)).map(mix, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE).with_options(_options(settings.deterministic))


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
    dataset = _cache(source.dataset(split, input_context=input_context), cache)

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
    dataset = whole_batches(dataset, padding, batch_size, input_context)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))


def whole_batches(dataset, padding, batch_size, input_context=None):
    """`dataset` in static-shape batches covering every element once, padded with `padding`
    (a one-element dataset) to a whole number of batches for EACH replica the pipeline feeds: a
    distributed dataset drops a last round of batches that would leave a replica without
    one, and with it real examples."""
    replicas = 1
    if input_context is not None:
        replicas = max(1, input_context.num_replicas_in_sync // input_context.num_input_pipelines)
    group = batch_size * replicas
    dataset = dataset.concatenate(padding.repeat(group - 1))
    if replicas > 1:
        dataset = dataset.batch(group, drop_remainder=True).unbatch()
    return dataset.batch(batch_size, drop_remainder=True)
