"""Writes COCO JSON annotations and their images as sharded detection TFRecords (records.py).

The output is what google/automl efficientdet's create_coco_tfrecord.py makes: records hold
the class index + label_offset, where the class is the COCO category id - 1 (class_ids=
"category_id", the default: COCO's records hold its ids 1..90, as automl's, for data.num_classes
=90, label_offset=1) or the categories' 0-based position in id order ("index": contiguous
1..K, for data.num_classes=K). Images are
stored as their files' bytes; the size comes from the file's header (no decoding), and an image
that cannot be read, is no JPEG/PNG/GIF/BMP, or whose size differs from the annotation file's
is skipped with the reason. A labels.txt with the class names goes beside the shards.
"""

from typing import Callable, Optional

import tensorflow as tf

from efficientnet_tf.data import image_header, labels, tfrecords
from efficientnet_tf.tasks.detection import records
from efficientnet_tf.tasks.detection.sources import CocoJsonSource


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _header_size(data):
    return image_header.is_image(data), image_header.size(data)


def read_image(entry):
    """(encoded bytes, None) of an ImageEntry's file, or (None, why it is skipped)."""
    data, reason = tfrecords.read_file(entry.path)
    if data is None:
        return None, reason
    try:
        is_image, (height, width) = _header_size(tf.constant(data))
    except tf.errors.InvalidArgumentError as error:  # a JPEG whose header is cut or corrupt
        return None, f"unreadable header ({error.message.splitlines()[0]})"
    if not is_image or int(height) <= 0 or int(width) <= 0:
        return None, f"not a {image_header.FORMATS} image with a readable size"
    if (int(height), int(width)) != (entry.height, entry.width):
        return None, (f"the file is {int(width)}x{int(height)} but the annotations say "
                      f"{entry.width}x{entry.height} (width x height)")
    return data, None


def write_split(source, split, output_dir, shards=0, label_offset=1,
                progress: Optional[Callable] = None):
    """Writes a CocoJsonSource's split as `{split}-{i:05d}-of-{n:05d}.tfrecord` in output_dir.

    `shards` 0 means about tfrecords.IMAGES_PER_SHARD images per shard. `progress(total)`
    returns an object with update(n) and close(), e.g. tqdm. Returns a tfrecords.WriteSummary."""
    tf.io.gfile.makedirs(output_dir)

    def read(entry):
        data, reason = read_image(entry)
        if data is None:
            return None, (entry.path, reason)
        return records.example(
            data, entry.height, entry.width, entry.pixel_boxes(), entry.classes,
            source_id=entry.image_id, filename=entry.file_name, class_names=source.class_names,
            is_crowd=entry.is_crowd, areas=entry.areas, label_offset=label_offset), None

    written, skipped, names = tfrecords.write_shards(output_dir, split, source.entries(split),
                                                     read, shards, progress)
    return tfrecords.WriteSummary(written={split: written}, skipped=skipped,
                                  files={split: names})


def coco_json_to_tfrecords(annotations, images, output_dir, split_name, shards=0,
                           label_offset=1, invalid_boxes="error", progress=None,
                           class_ids="category_id"):
    """Reads one COCO annotation file (checked: CocoJsonSource) with its image folder and
    writes it as split `split_name` (see write_split), with labels.txt beside the shards."""
    source = CocoJsonSource({split_name: annotations}, {split_name: images},
                            invalid_boxes=invalid_boxes, class_ids=class_ids)
    tf.io.gfile.makedirs(output_dir)
    labels.write_labels(f"{output_dir}/{labels.LABELS_FILE}", source.class_names)
    return write_split(source, split_name, output_dir, shards, label_offset, progress)
