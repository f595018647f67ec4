"""A run's files written whole or not at all: JSON and text go to a temporary file beside their
path, renamed over it when complete (any TF filesystem path, gs:// included)."""

import json
import uuid

import tensorflow as tf


def write_json(path, payload):
    """`payload` as indented, sorted JSON at `path`, atomically (write_atomically)."""
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_atomically(path, contents):
    """Writes `contents` (text or bytes) to a temporary file beside `path`, then renames it
    over `path`: a reader (or a crash) never sees half a file."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with tf.io.gfile.GFile(temporary, "wb" if isinstance(contents, bytes) else "w") as stream:
        stream.write(contents)
    tf.io.gfile.rename(temporary, path, overwrite=True)
