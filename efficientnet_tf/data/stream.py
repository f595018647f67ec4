"""The input skeleton every task's pipeline is built on: decoding that skips and counts bad
images, per-example seeds, caching, whole batches for every replica, the pipeline's options.

Randomness comes from stateless ops fed one seed per example (example_seeds), so a seed makes a
pipeline reproducible (with `deterministic=True`); without a seed each run draws its own.
"""

import re
import secrets
import threading

import tensorflow as tf
from absl import logging

from efficientnet_tf.data import image_header, preprocess

AUTOTUNE = tf.data.AUTOTUNE
# Seeds of two hosts' pipelines are this far apart, so no two hosts draw the same crops.
HOST_SEED_STRIDE = 1_000_003


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


def pipeline_seed(seed):
    """A pipeline's seed: `seed`, or one drawn now when it is None (each run its own)."""
    return secrets.randbits(31) if seed is None else seed


def example_seeds(seed, input_context=None, offset=0):
    """An endless dataset of per-example seeds [2] int64 for stateless random ops: (the
    pipeline's `seed` + `offset`, shifted per host pipeline; the example's index)."""
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    base = tf.constant(seed + offset + pipeline_id * HOST_SEED_STRIDE, tf.int64)
    return tf.data.Dataset.counter().map(lambda index: tf.stack([base, index]))


def cache(dataset, cache):
    """`dataset` cached: True in memory, a path in files there, False not at all."""
    if cache is True:
        return dataset.cache()
    if cache:
        return dataset.cache(cache)
    return dataset



def options(deterministic):
    """The options every input pipeline runs with."""
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


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
