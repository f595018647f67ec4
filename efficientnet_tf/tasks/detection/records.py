"""The detection TFRecord format: one tf.train.Example per image, boxes normalised.

The format of google/automl efficientdet's dataset/create_coco_tfrecord.py, which is the
TensorFlow Object Detection API's (object_detection/dataset_tools, read by its
TfExampleDecoder): feature names and types below are those. Boxes are stored as four float
lists (ymin, xmin, ymax, xmax) normalised by the image size; labels are int64, offset by
`label_offset` from our 0-based class index (automl's COCO records hold the COCO category ids
1..90, so a source reading them subtracts 1; our writer stores class index + label_offset).
"""

import tensorflow as tf

from efficientnet_tf.data.tfrecords import image_format

ENCODED = "image/encoded"
FORMAT = "image/format"
SOURCE_ID = "image/source_id"  # the image id as text (COCO: "397133")
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"
YMIN = "image/object/bbox/ymin"
XMIN = "image/object/bbox/xmin"
YMAX = "image/object/bbox/ymax"
XMAX = "image/object/bbox/xmax"
LABEL = "image/object/class/label"
TEXT = "image/object/class/text"
IS_CROWD = "image/object/is_crowd"  # optional when reading (the OD API's VOC records lack it)
AREA = "image/object/area"  # optional: COCO's segment area, which COCO AP's size ranges use

_FEATURES = {
    ENCODED: tf.io.FixedLenFeature([], tf.string),
    FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    YMIN: tf.io.VarLenFeature(tf.float32),
    XMIN: tf.io.VarLenFeature(tf.float32),
    YMAX: tf.io.VarLenFeature(tf.float32),
    XMAX: tf.io.VarLenFeature(tf.float32),
    LABEL: tf.io.VarLenFeature(tf.int64),
    IS_CROWD: tf.io.VarLenFeature(tf.int64),
    AREA: tf.io.VarLenFeature(tf.float32),
}


def _per_object(values, count, dtype):
    """An optional per-object list: its values, or zeros when the record has none."""
    return tf.cond(tf.equal(tf.size(values), 0), lambda: tf.zeros([count], dtype),
                   lambda: tf.cast(values, dtype))


def parse(record):
    """The tensors of one serialized record: {"image" (encoded bytes), "format", "source_id",
    "height", "width" (int64, 0 if absent), "filename", "boxes" float32 [K, 4] normalised
    (ymin, xmin, ymax, xmax), "labels" int64 [K] (as stored: label_offset not subtracted),
    "is_crowd" bool [K], "area" float32 [K] (0 where the record has none)}."""
    features = tf.io.parse_single_example(record, _FEATURES)
    dense = {name: tf.sparse.to_dense(features[name])
             for name in (YMIN, XMIN, YMAX, XMAX, LABEL, IS_CROWD, AREA)}
    labels = dense[LABEL]
    count = tf.size(labels)
    return {"image": features[ENCODED], "format": features[FORMAT],
            "source_id": features[SOURCE_ID], "height": features[HEIGHT],
            "width": features[WIDTH], "filename": features[FILENAME],
            "boxes": tf.reshape(tf.stack([dense[YMIN], dense[XMIN], dense[YMAX], dense[XMAX]],
                                         axis=-1), [-1, 4]),
            "labels": labels,
            "is_crowd": _per_object(dense[IS_CROWD], count, tf.bool),
            "area": _per_object(dense[AREA], count, tf.float32)}


def _bytes(*values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def example(encoded, height, width, boxes, classes, source_id, filename="", class_names=None,
            is_crowd=None, areas=None, label_offset=1):
    """A tf.train.Example of one image: `encoded` bytes of a `height` x `width` image, `boxes`
    [(ymin, xmin, ymax, xmax)] in pixels (stored normalised), `classes` 0-based class indices
    (stored + label_offset), `source_id` the image id (stored as text), `class_names` the
    names of all classes (for image/object/class/text), `is_crowd` and `areas` per box."""
    boxes = [tuple(float(v) for v in box) for box in boxes]
    if len(boxes) != len(classes):
        raise ValueError(f"{filename}: {len(boxes)} boxes but {len(classes)} classes; give one "
                         "class per box")
    feature = {
        ENCODED: _bytes(encoded), FORMAT: _bytes(image_format(encoded)),
        SOURCE_ID: _bytes(str(source_id).encode()), FILENAME: _bytes(filename.encode()),
        HEIGHT: _ints([height]), WIDTH: _ints([width]),
        YMIN: _floats([box[0] / height for box in boxes]),
        XMIN: _floats([box[1] / width for box in boxes]),
        YMAX: _floats([box[2] / height for box in boxes]),
        XMAX: _floats([box[3] / width for box in boxes]),
        LABEL: _ints([index + label_offset for index in classes]),
        IS_CROWD: _ints(is_crowd if is_crowd is not None else [0] * len(boxes)),
    }
    if class_names is not None:
        feature[TEXT] = _bytes(*(class_names[index].encode() for index in classes))
    if areas is not None:
        feature[AREA] = _floats(areas)
    return tf.train.Example(features=tf.train.Features(feature=feature))
