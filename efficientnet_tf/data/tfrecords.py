"""Writes an image folder as sharded ImageNet-format TFRecords (tensorflow/tpu imagenet_to_gcs).

Features per record: image/encoded (the file's bytes, unchanged), image/format, image/filename,
image/height, image/width, image/class/label (label + offset, 1-based by default as ImageNet),
image/class/text. Images that TensorFlow cannot decode are skipped and reported. A labels.txt
with one class name per line goes beside the shards. All writes go through tf.io.gfile.
"""

import collections
import dataclasses
from typing import Dict, List, Tuple

import tensorflow as tf

from efficientnet_tf.data import labels
from efficientnet_tf.data.sources import EVAL, TRAIN, ImageFolderSource

IMAGES_PER_SHARD = 1000  # the default shard count aims at about this many images per shard


@dataclasses.dataclass
class WriteSummary:
    """What a conversion wrote and what it skipped (path, reason)."""

    written: Dict[str, int]
    skipped: List[Tuple[str, str]]
    files: Dict[str, List[str]]

    def __str__(self):
        lines = [f"{split}: {count} images in {len(self.files[split])} shards"
                 for split, count in self.written.items()]
        reasons = collections.Counter(reason for _, reason in self.skipped)
        lines.append(f"skipped {len(self.skipped)} images" + (
            ": " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
            if self.skipped else ""))
        lines.extend(f"  skipped {path}: {reason}" for path, reason in self.skipped[:20])
        return "\n".join(lines)


def _feature(value):
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def image_format(data):
    """The record's image/format value of encoded bytes (JPEG, PNG, GIF, BMP or UNKNOWN)."""
    if data[:3] == b"\xff\xd8\xff":
        return b"JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"PNG"
    if data[:4] in (b"GIF8",):
        return b"GIF"
    if data[:2] == b"BM":
        return b"BMP"
    return b"UNKNOWN"


def _example(data, height, width, label, class_name, file_name):
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _feature(data), "image/format": _feature(image_format(data)),
        "image/filename": _feature(file_name.encode("utf-8")),
        "image/height": _feature(height), "image/width": _feature(width),
        "image/class/label": _feature(label), "image/class/text": _feature(class_name.encode())}))


def read_file(path):
    """(the file's bytes, None), or (None, why it is skipped: unreadable or empty)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as stream:
            data = stream.read()
    except tf.errors.OpError as error:
        return None, f"unreadable ({error.message.splitlines()[0]})"
    if not data:
        return None, "empty file"
    return data, None


def _checked_image(path):
    """(bytes, height, width) of a decodable image, or a reason why it is skipped."""
    data, reason = read_file(path)
    if data is None:
        return None, reason
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except tf.errors.InvalidArgumentError:
        return None, "not a decodable image"
    return (data, int(shape[0]), int(shape[1])), None


def write_image_folder(source, output_dir, shards=None, label_offset=1, progress=None):
    """Writes `source` (an ImageFolderSource) as `{split}-{i:05d}-of-{n:05d}.tfrecord` files.

    `shards` maps split -> number of shards (default: about 1,000 images per shard).
    `progress(total)` returns an object with update(n) and close(), e.g. tqdm.
    """
    tf.io.gfile.makedirs(output_dir)
    labels.write_labels(f"{output_dir}/{labels.LABELS_FILE}", source.class_names)
    prefix = len(source.root.rstrip("/")) + 1

    def read(item):
        path, label = item
        checked, reason = _checked_image(path)
        if checked is None:
            return None, (path, reason)
        data, height, width = checked
        return _example(data, height, width, label + label_offset, source.class_names[label],
                        path[prefix:]), None

    written, skipped, files = {}, [], {}
    for split in (TRAIN, EVAL):
        written[split], skipped_here, files[split] = write_shards(
            output_dir, split, source.examples(split), read, (shards or {}).get(split),
            progress)
        skipped.extend(skipped_here)
    return WriteSummary(written=written, skipped=skipped, files=files)


def write_shards(output_dir, split, items, read, shards=None, progress=None):
    """Writes `read(item)` of each item into `{split}-{i:05d}-of-{n:05d}.tfrecord` files of
    output_dir, round robin. `read` returns (tf.train.Example, None) or (None, (path, reason))
    for an item that is skipped. `shards`: None or 0 means about IMAGES_PER_SHARD items per
    shard. `progress(total)` returns an object with update(n) and close(), e.g. tqdm.
    Returns (examples written, [(path, reason) skipped], [file names])."""
    count = shards or max(1, -(-len(items) // IMAGES_PER_SHARD))
    names = [f"{output_dir}/{split}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
    writers = [tf.io.TFRecordWriter(name) for name in names]
    bar = progress(len(items)) if progress else None
    written, skipped = 0, []
    for item in items:
        example, why = read(item)
        if example is None:
            skipped.append(why)
        else:
            writers[written % count].write(example.SerializeToString())
            written += 1
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    for writer in writers:
        writer.close()
    return written, skipped, names


def folder_to_tfrecords(root, output_dir, eval_percent=10, shards=None, label_offset=1,
                        progress=None):
    """Lists `root` as an ImageFolderSource and writes it (see write_image_folder)."""
    source = ImageFolderSource(root, eval_percent=eval_percent)
    return write_image_folder(source, output_dir, shards, label_offset, progress)
