"""Where detection images and boxes come from: COCO JSON, detection TFRecords and TFDS.

Follows the inputs of google/automl efficientdet (COCO annotation files, TFRecords in the TF
Object Detection API format: records.py) and TFDS detection datasets (coco/2017, voc/2007).

Every source gives the same elements, one image each, still encoded: {"image": bytes, "key": a
string naming the file (or "tfrecordfile:index"), "image_id": int64, "boxes": float32 [K, 4]
normalised (ymin, xmin, ymax, xmax) in [0, 1], "classes": int64 [K] 0-based class index,
"is_crowd": bool [K]}. Crowd boxes are kept (the training pipeline drops them; COCO AP ignores
detections matched to them). `ground_truth(split)` is the split's COCO-format dict for
pycocotools, with category ids = the 0-based class indices. Paths go through tf.io.gfile.
"""

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import image_header, labels
from efficientnet_tf.tasks.detection import records
from efficientnet_tf.tasks.detection.coco_json import INVALID_BOXES, read_coco_split, read_json
from efficientnet_tf.data.sources import (AUTOTUNE, EVAL, TRAIN, check_split, shard,
                                          import_tfds, record_files, sharded_records)

SOURCES = ("coco_json", "detection_tfrecord", "tfds")
BOX_TOLERANCE = 1e-3  # of the image side: normalised boxes this far outside [0, 1] are clipped
# Image ids from text that is no decimal number (the OD API's VOC records use file names) are
# hashed below 2^53, so that they stay exact as JSON numbers and in pycocotools' float arrays.
HASHED_ID_RANGE = 2 ** 53


def _check_invalid_boxes(invalid_boxes):
    if invalid_boxes not in INVALID_BOXES:
        raise ValueError(f"invalid_boxes is {invalid_boxes!r}; use one of {INVALID_BOXES}")


def _ground_truth(class_names, images):
    """The COCO-format dict of `images`, each {image_id, file_name, height, width, bboxes
    [[x, y, w, h]] in pixels, classes, is_crowd, areas}; annotations numbered 1.. in order.
    Classes named as unused ids (labels.is_unused) are no categories: as against COCO's own
    annotation file, detections of them are not scored."""
    result = {"images": [], "annotations": [],
              "categories": [{"id": index, "name": name} for index, name in enumerate(class_names)
                             if not labels.is_unused(name)]}
    for image in sorted(images, key=lambda image: image["image_id"]):
        result["images"].append({"id": image["image_id"], "height": image["height"],
                                 "width": image["width"], "file_name": image["file_name"]})
        for bbox, index, crowd, area in zip(image["bboxes"], image["classes"],
                                            image["is_crowd"], image["areas"]):
            result["annotations"].append({
                "id": len(result["annotations"]) + 1, "image_id": image["image_id"],
                "category_id": int(index), "bbox": [float(v) for v in bbox],
                "area": float(area), "iscrowd": int(crowd)})
    return result


def _pixel_image(row):
    """A _ground_truth image of a numpy row with normalised boxes and (maybe zero) areas."""
    height, width = int(row["height"]), int(row["width"])
    ymin, xmin, ymax, xmax = np.asarray(row["boxes"], np.float64).reshape(-1, 4).T
    bboxes = np.stack([xmin * width, ymin * height, (xmax - xmin) * width,
                       (ymax - ymin) * height], axis=-1)
    areas = np.where(row["area"] > 0, row["area"], bboxes[:, 2] * bboxes[:, 3])
    return {"image_id": int(row["image_id"]), "file_name": row["file_name"].decode("utf-8"),
            "height": height, "width": width, "bboxes": bboxes.tolist(),
            "classes": row["classes"].tolist(), "is_crowd": row["is_crowd"].tolist(),
            "areas": areas.tolist()}


def _element(row):
    return {name: row[name] for name in ("image", "key", "image_id", "boxes", "classes",
                                         "is_crowd")}


def _read_or_empty(element):
    """The element with its file's bytes as "image": empty bytes when the file cannot be read
    (missing, no permission), which the pipeline then skips as undecodable and counts, so that
    one lost file among 100,000 does not stop a run."""
    read = tf.data.Dataset.from_tensors(element["key"]).map(tf.io.read_file).ignore_errors()
    fallback = tf.data.Dataset.from_tensors(tf.constant(b""))
    return read.concatenate(fallback).take(1).map(lambda data: {**element, "image": data})


class CocoJsonSource:
    """COCO annotation files (instances_*.json) and their image folders, one per split.

    Classes are the file's `categories` sorted by id, numbered 0..K-1, so sparse COCO ids
    (1..90 with gaps) map to 80 contiguous classes (class_ids="index"), or class = category
    id - 1 (class_ids="category_id": COCO's 90, as automl's records and checkpoints);
    `category_ids[index]` is the original id.
    Images without annotations are kept (negatives). The annotations are checked once, here
    (coco_json.read_coco_split); with invalid_boxes="skip" the bad ones are left out and
    counted in `skipped_annotations` {split: count}.
    """

    def __init__(self, annotations: Dict[str, str], images: Dict[str, str],
                 invalid_boxes: str = "error", class_ids: str = "index"):
        _check_invalid_boxes(invalid_boxes)
        if set(annotations) != set(images):
            raise ValueError(f"annotations are given for splits {sorted(annotations)} but "
                             f"images for {sorted(images)}; give both for each split")
        if not annotations:
            raise ValueError("CocoJsonSource needs the annotations and images of a split")
        self.annotations, self.images, self.invalid_boxes = annotations, images, invalid_boxes
        self._splits, self.skipped_annotations, categories = {}, {}, None
        for split in sorted(annotations):
            read = read_coco_split(annotations[split], images[split], invalid_boxes,
                                   class_ids)
            if categories is not None and read.categories != categories:
                raise ValueError(
                    f"the categories of {annotations[split]!r} ({read.categories}) differ from "
                    f"those of the other split ({categories}); both splits need the same list")
            categories = read.categories
            self._splits[split] = read.images
            self.skipped_annotations[split] = read.skipped
        self.category_ids = tuple(category_id for category_id, _ in categories)
        self.class_names = tuple(name for _, name in categories)
        self.num_classes = len(categories)

    def entries(self, split):
        """The split's images (coco_json.ImageEntry), checked and mapped to class indices."""
        check_split(split, self._splits)
        return list(self._splits[split])

    def num_examples(self, split):
        return len(self.entries(split))

    def files(self, split):
        return None

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        entries = self.entries(split)
        if not entries:
            raise ValueError(f"{self.annotations[split]!r} lists no images ({split} split)")

        def ragged(values, dtype, shape):
            flat = np.asarray([v for entry in entries for v in values(entry)], dtype)
            return tf.RaggedTensor.from_row_lengths(
                flat.reshape(shape), [len(entry.classes) for entry in entries])

        dataset = tf.data.Dataset.from_tensor_slices({
            "key": [entry.path for entry in entries],
            "image_id": np.asarray([entry.image_id for entry in entries], np.int64),
            "boxes": ragged(lambda entry: entry.normalised_boxes(), np.float32, [-1, 4]),
            "classes": ragged(lambda entry: entry.classes, np.int64, [-1]),
            "is_crowd": ragged(lambda entry: entry.is_crowd, bool, [-1])})
        dataset = shard(dataset, input_context)
        if shuffle_files:
            dataset = dataset.shuffle(len(entries), seed=seed, reshuffle_each_iteration=True)
        return dataset.interleave(_read_or_empty, cycle_length=AUTOTUNE, block_length=1,
                                  num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    def ground_truth(self, split):
        """The split's boxes and areas as in the file (boxes within the tolerance clipped)."""
        return _ground_truth(self.class_names, [
            {"image_id": entry.image_id, "file_name": entry.file_name, "height": entry.height,
             "width": entry.width, "bboxes": entry.bboxes, "classes": entry.classes,
             "is_crowd": entry.is_crowd, "areas": entry.areas} for entry in self.entries(split)])


def file_ground_truth(path, category_ids, class_names):
    """The COCO-format ground truth of an original annotation file, scored as it is (boxes not
    clipped, as automl scores against instances_val2017.json): its categories mapped to our
    class indices by the source's `category_ids` (class index -> the category id it learns)."""
    content = read_json(path)
    index_of = {category_id: index for index, category_id in enumerate(category_ids)}
    listed = {category["id"] for category in content.get("categories") or []}
    used = {annotation["category_id"] for annotation in content.get("annotations") or []}
    unknown = sorted((listed | used) - set(index_of))
    if unknown:
        raise ValueError(
            f"{path!r} has category ids {unknown[:10]} that the model's classes do not learn "
            f"(the source's ids: {list(category_ids)[:10]}...): give the annotation file of the "
            "data the model was trained on, with a source whose classes are its category ids "
            "(COCO JSON, or records written with the converter's default --class_ids="
            "category_id; TFDS and --class_ids=index number classes by position)")
    truth = {"images": [{key: image[key] for key in ("id", "height", "width", "file_name")}
                        for image in content.get("images") or []],
             "annotations": [], "categories": [
                 {"id": index_of[category_id], "name": class_names[index_of[category_id]]}
                 for category_id in sorted(listed)]}
    for number, annotation in enumerate(content.get("annotations") or [], 1):
        x, y, width, height = (float(v) for v in annotation["bbox"])
        truth["annotations"].append({
            "id": number, "image_id": annotation["image_id"],
            "category_id": index_of[annotation["category_id"]], "bbox": [x, y, width, height],
            "area": float(annotation.get("area") or width * height),
            "iscrowd": int(annotation.get("iscrowd", 0))})
    return truth


def _image_id(source_id, key):
    """int64 image id of a record: its source_id when that is a decimal number (automl's COCO
    records), else a hash of the source_id (or of the key, when there is none)."""
    numeric = tf.strings.regex_full_match(source_id, "[0-9]{1,18}")
    text = tf.where(tf.equal(source_id, ""), key, source_id)
    return tf.cond(numeric, lambda: tf.strings.to_number(source_id, tf.int64),
                   lambda: tf.strings.to_hash_bucket_fast(text, HASHED_ID_RANGE))


@dataclasses.dataclass
class TFRecordSource:
    """Detection TFRecords (records.py), one glob per split.

    Record labels are `label_offset`-based (automl's COCO records: COCO ids 1..90, so
    num_classes=90, label_offset=1). Each element is checked in the graph: a label outside
    [0, num_classes) after the offset, or a box that is empty or outside [0, 1] (beyond
    BOX_TOLERANCE), is an error naming the record (invalid_boxes="error"), or is dropped and
    counted in `skipped_annotations[split]` (a tf.Variable, counted on every pass).
    """

    file_patterns: Dict[str, str]
    num_classes: int
    label_offset: int = 1
    class_names: Optional[Sequence[str]] = None
    examples: Optional[Dict[str, int]] = None  # records per split; counted once where not given
    invalid_boxes: str = "error"
    cycle_length: int = 16

    def __post_init__(self):
        _check_invalid_boxes(self.invalid_boxes)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes="
                             f"{self.num_classes}; give one name per class")
        self.category_ids = tuple(index + self.label_offset for index in range(self.num_classes))
        self.class_names = tuple(self.class_names if self.class_names is not None
                                 else (str(category) for category in self.category_ids))
        self.examples = dict(self.examples or {})
        with tf.init_scope(), tf.device("CPU:0"):
            self.skipped_annotations = {
                split: tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name=f"skipped_annotations_{split}")
                for split in self.file_patterns}

    def files(self, split):
        check_split(split, self.file_patterns)
        return record_files(self.file_patterns[split], split)

    def num_examples(self, split):
        if not self.examples.get(split):
            records_in = tf.data.TFRecordDataset(self.files(split)).reduce(
                tf.constant(0, tf.int64), lambda count, _: count + 1)
            self.examples[split] = int(records_in)
        return self.examples[split]

    def _checked(self, split, file_name, index, record):
        """The parsed record with 0-based classes and its invalid objects refused or dropped."""
        parsed = records.parse(record)
        key = tf.strings.join([file_name, tf.strings.as_string(index)], separator=":")
        classes = parsed["labels"] - self.label_offset
        boxes = parsed["boxes"]
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
        good_label = tf.logical_and(classes >= 0, classes < self.num_classes)
        good_box = ((ymax > ymin) & (xmax > xmin) & (tf.reduce_min(boxes, -1) >= -BOX_TOLERANCE)
                    & (tf.reduce_max(boxes, -1) <= 1 + BOX_TOLERANCE))
        if self.invalid_boxes == "error":
            low, high = self.label_offset, self.label_offset + self.num_classes - 1
            checks = [
                tf.debugging.Assert(tf.reduce_all(good_label), [
                    f"record label(s) outside {low}..{high} (num_classes={self.num_classes}, "
                    f"label_offset={self.label_offset}) in", key, "labels:",
                    tf.boolean_mask(parsed["labels"], ~good_label)], summarize=20),
                tf.debugging.Assert(tf.reduce_all(good_box), [
                    "box(es) empty or outside [0, 1] (need ymin < ymax, xmin < xmax, "
                    "normalised) in", key, "boxes (ymin, xmin, ymax, xmax):",
                    tf.boolean_mask(boxes, ~good_box)], summarize=20)]
        else:
            bad = tf.reduce_sum(tf.cast(~(good_label & good_box), tf.int64))
            checks = [self.skipped_annotations[split].assign_add(bad)]
        keep = good_label & good_box
        with tf.control_dependencies(checks):
            return {**parsed, "key": key, "image_id": _image_id(parsed["source_id"], key),
                    "boxes": tf.clip_by_value(tf.boolean_mask(boxes, keep), 0.0, 1.0),
                    "classes": tf.boolean_mask(classes, keep),
                    "is_crowd": tf.boolean_mask(parsed["is_crowd"], keep),
                    "area": tf.boolean_mask(parsed["area"], keep)}

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        dataset = sharded_records(self.files(split), input_context, shuffle_files, seed,
                                  deterministic, self.cycle_length)
        return dataset.map(lambda *record: _element(self._checked(split, *record)),
                           num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    def ground_truth(self, split):
        """Rebuilt from one read of the split: boxes x image size (image/height, width, or the
        encoded image's header where the record lacks them), image/object/area where present."""
        def row(*record):
            checked = self._checked(split, *record)
            size = image_header.size(checked["image"])
            known = tf.logical_and(checked["height"] > 0, checked["width"] > 0)
            return {**{name: checked[name] for name in (
                        "image_id", "boxes", "classes", "is_crowd", "area")},
                    "height": tf.where(known, checked["height"], size[0]),
                    "width": tf.where(known, checked["width"], size[1]),
                    "file_name": tf.where(tf.equal(checked["filename"], ""), checked["key"],
                                          checked["filename"])}

        dataset = sharded_records(self.files(split), cycle_length=self.cycle_length).map(row)
        return _ground_truth(self.class_names,
                             [_pixel_image(item) for item in dataset.as_numpy_iterator()])


class TFDSSource:
    """A TFDS detection dataset already prepared in `data_dir` (coco/2017, voc/2007; nothing is
    downloaded). TFDS boxes are normalised (ymin, xmin, ymax, xmax) and labels 0-based already;
    `category_ids` are the class indices (TFDS keeps no original ids). Image ids: `image/id`
    where the dataset has it, else a hash of the record's tfds_id (stable across reads and
    shards, which an index within a host's shard would not be)."""

    def __init__(self, name: str, data_dir: Optional[str] = None,
                 splits: Optional[Dict[str, str]] = None):
        self.name, self.data_dir = name, data_dir
        self.splits = dict(splits or {TRAIN: "train", EVAL: "validation"})
        self._builder = import_tfds().builder(name, data_dir=data_dir)
        features = self._builder.info.features
        if "objects" not in features or "bbox" not in features["objects"].feature:
            raise ValueError(f"TFDS dataset {name!r} has no objects/bbox feature; a detection "
                             "dataset (coco/2017, voc/2007) is needed")
        objects = features["objects"].feature
        self._has_id = "image/id" in features
        self._has_crowd = "is_crowd" in objects
        self._has_area = "area" in objects
        self._has_filename = "image/filename" in features
        self.num_classes = objects["label"].num_classes
        self.class_names = tuple(objects["label"].names)
        self.category_ids = tuple(range(self.num_classes))

    def files(self, split):
        return None

    def num_examples(self, split):
        check_split(split, self.splits)
        return self._builder.info.splits[self.splits[split]].num_examples

    def _rows(self, split, input_context, shuffle_files, seed, deterministic):
        tfds = import_tfds()
        check_split(split, self.splits)
        read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed,
                                      add_tfds_id=True)
        read_config.options.deterministic = deterministic
        dataset = self._builder.as_dataset(
            split=self.splits[split], shuffle_files=shuffle_files, read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()})
        return dataset.map(self._row, num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    def _row(self, example):
        objects, key = example["objects"], example["tfds_id"]
        count = tf.shape(objects["label"])[0]
        image_id = (tf.cast(example["image/id"], tf.int64) if self._has_id
                    else tf.strings.to_hash_bucket_fast(key, HASHED_ID_RANGE))
        return {"image": example["image"], "key": key, "image_id": image_id,
                "boxes": tf.reshape(tf.cast(objects["bbox"], tf.float32), [-1, 4]),
                "classes": tf.cast(objects["label"], tf.int64),
                "is_crowd": (tf.cast(objects["is_crowd"], tf.bool) if self._has_crowd
                             else tf.zeros([count], tf.bool)),
                "area": (tf.cast(objects["area"], tf.float32) if self._has_area
                         else tf.zeros([count], tf.float32)),
                "file_name": example["image/filename"] if self._has_filename else key}

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        return self._rows(split, input_context, shuffle_files, seed, deterministic).map(
            _element, num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    def ground_truth(self, split):
        """Rebuilt from one read of the split: boxes x the size in each image's header."""
        def row(item):
            size = image_header.size(item["image"])
            return {**{name: item[name] for name in ("image_id", "boxes", "classes", "is_crowd",
                                                      "area", "file_name")},
                    "height": size[0], "width": size[1]}

        dataset = self._rows(split, None, False, None, True).map(row)
        return _ground_truth(self.class_names,
                             [_pixel_image(item) for item in dataset.as_numpy_iterator()])


def _needs(data, keys):
    missing = [f"data.{key}" for key in keys if not data.get(key)]
    if missing:
        raise ValueError(f"data.source={data.source!r} needs {', '.join(missing)}")


def from_config(data):
    """The detection source a `data` config section describes (data.source: one of SOURCES)."""
    if data.source not in SOURCES:
        raise ValueError(f"unknown detection data source {data.source!r}; use one of "
                         f"{', '.join(SOURCES)}")
    invalid_boxes = data.get("invalid_boxes") or "error"
    if data.source == "coco_json":
        _needs(data, ["eval_annotations", "eval_images"])
        splits = [split for split in (TRAIN, EVAL) if data.get(f"{split}_annotations")]
        for split in splits:
            _needs(data, [f"{split}_images"])
        return CocoJsonSource({split: data[f"{split}_annotations"] for split in splits},
                              {split: data[f"{split}_images"] for split in splits},
                              invalid_boxes=invalid_boxes,
                              class_ids=data.get("class_ids") or "index")
    if data.source == "detection_tfrecord":
        _needs(data, ["train_pattern", "eval_pattern", "num_classes"])
        class_names = labels.read_labels(
            data.get("labels_file") or data.train_pattern.rsplit("/", 1)[0])
        return TFRecordSource({TRAIN: data.train_pattern, EVAL: data.eval_pattern},
                              num_classes=data.num_classes, label_offset=data.label_offset,
                              class_names=class_names, invalid_boxes=invalid_boxes,
                              examples={TRAIN: data.get("num_train_examples") or 0,
                                        EVAL: data.get("num_eval_examples") or 0})
    _needs(data, ["tfds_name"])
    if data.get("class_ids") == "category_id":
        raise ValueError(
            "data.class_ids=category_id (coco_det's: automl's 90 COCO classes) needs the COCO "
            "JSON files (data.source=coco_json) or records (scripts/make_detection_tfrecords.py): "
            "TFDS numbers coco/2017's 80 classes 0..79 and keeps no category ids; set "
            "data.class_ids=index for TFDS's 80")
    return TFDSSource(data.tfds_name, data_dir=data.get("tfds_data_dir") or None,
                      splits={TRAIN: data.get("tfds_train_split") or "train",
                              EVAL: data.get("tfds_eval_split") or "validation"})
