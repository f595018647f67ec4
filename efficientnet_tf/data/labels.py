"""Class names as a labels.txt file: one name per line, line i for label i.

The one reader and writer of the format, for the TFRecord shards (labels.txt beside them), a
run's data (config data.labels_file) and an export (assets/labels.txt). Paths go through
tf.io.gfile, so gs:// works.
"""

import re

import tensorflow as tf

LABELS_FILE = "labels.txt"
# The name of a class that numbers an id no category has (COCO's ids 1..90 hold 80 categories;
# automl's records and checkpoints keep 90 classes): never scored, never a ground-truth class.
UNUSED = "unused-{}"


def is_unused(name):
    return re.fullmatch(UNUSED.format(r"\d+"), name) is not None


def write_labels(path, class_names):
    with tf.io.gfile.GFile(path, "w") as stream:
        stream.write("".join(f"{name}\n" for name in class_names))


def read_labels(path):
    """The class names of a labels file; a directory means its labels.txt. None if absent."""
    if tf.io.gfile.isdir(path):
        path = f"{path.rstrip('/')}/{LABELS_FILE}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as stream:
        return [line.rstrip("\n") for line in stream if line.strip()]
