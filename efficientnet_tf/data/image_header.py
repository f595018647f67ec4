"""What an encoded image is, read from its first bytes in the graph: format and size.

Serving checks a request's bytes before decoding them (serving.checked_decode): a known
format (JPEG, PNG, GIF, BMP) and a size within the pixel cap, read from the header without
decoding the pixels, so a 40-megapixel PNG is refused at the cost of reading 24 bytes.
"""

import tensorflow as tf

from efficientnet_tf.data import MAX_PIXELS  # noqa: F401 (the cap, read here by its users)

FORMATS = "JPEG, PNG, GIF or BMP"


def _formats(data):
    """[(format name, whether `data` starts like it)] for each of FORMATS."""
    return [("JPEG", tf.io.is_jpeg(data)),
            ("PNG", tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG")),
            ("GIF", tf.equal(tf.strings.substr(data, 0, 3), b"GIF")),
            ("BMP", tf.equal(tf.strings.substr(data, 0, 2), b"BM"))]


def is_image(data):
    """Whether `data` (a scalar string tensor) starts like one of FORMATS."""
    return tf.reduce_any(tf.stack([matches for _, matches in _formats(data)]))


def _integer(data, offset, count, little_endian):
    values = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, count), tf.uint8),
                     tf.int64)
    weights = [256 ** i for i in range(count)]
    return tf.reduce_sum(values * tf.constant(weights if little_endian else weights[::-1],
                                              tf.int64))


def size(data):
    """(height, width) int64 from the header, without decoding the pixels ((0, 0) if unknown)."""
    magic = tf.strings.substr(data, 0, 4)
    length = tf.strings.length(data)

    def bmp():
        height = _integer(data, 22, 4, True)  # signed: negative for top-down bitmaps
        height = tf.abs(height - tf.cast(height >= 2 ** 31, tf.int64) * 2 ** 32)
        return tf.stack([height, _integer(data, 18, 4, True)])

    return tf.case([
        (tf.io.is_jpeg(data), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)),
        (tf.logical_and(tf.equal(magic, b"\x89PNG"), length >= 24),
         lambda: tf.stack([_integer(data, 20, 4, False), _integer(data, 16, 4, False)])),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), length >= 10),
         lambda: tf.stack([_integer(data, 8, 2, True), _integer(data, 6, 2, True)])),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 2), b"BM"), length >= 26), bmp),
    ], default=lambda: tf.zeros([2], tf.int64))


def format_name(data):
    """"JPEG", "PNG", "GIF" or "BMP" (a string tensor) from the first bytes, else "image"."""
    return tf.case([(matches, lambda name=name: tf.constant(name))
                    for name, matches in _formats(data)], default=lambda: tf.constant("image"))


def first_bytes(data, count=8):
    """The first `count` bytes as a printable string tensor, for error messages."""
    padded = tf.strings.substr(tf.strings.join([data, b"\0" * count]), 0, count)
    return tf.strings.format("{}", tf.io.decode_raw(padded, tf.uint8), summarize=count)
