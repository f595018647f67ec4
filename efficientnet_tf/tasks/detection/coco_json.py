"""Reads and checks a COCO annotation file (instances_*.json) once, in Python.

The format of the COCO dataset (cocodataset.org/#format-data, "Object Detection"): `images`
[{id, file_name, height, width}], `annotations` [{id, image_id, category_id, bbox [x, y, width,
height] in pixels, area, iscrowd}], `categories` [{id, name}]. Classes (CLASS_IDS) are the
categories sorted by id and numbered 0..K-1 ("index": COCO's 80 categories become 80 classes),
or the category id - 1 ("category_id": COCO's ids 1..90 become 90 classes, the 10 unused ids
included as classes named labels.UNUSED.format(id), as google/automl's COCO records and its
checkpoints number them). Read through tf.io.gfile, so the file and images may be on gs://.
"""

import dataclasses
import json
import numbers
from typing import List, Optional, Tuple

import tensorflow as tf
from absl import logging

from efficientnet_tf.data import labels

INVALID_BOXES = ("error", "skip")
PIXEL_TOLERANCE = 1.0  # a box this far outside its image is clipped, not refused
LOGGED = 10  # skipped annotations logged per split
CLASS_IDS = ("index", "category_id")
MAX_CATEGORY_ID = 10_000  # class_ids="category_id" makes a class of every id up to the largest


@dataclasses.dataclass
class ImageEntry:
    """One image of a split with its checked annotations (boxes clipped to the image)."""

    image_id: int
    file_name: str
    path: str
    height: int
    width: int
    bboxes: List[List[float]] = dataclasses.field(default_factory=list)  # [x, y, w, h] pixels
    classes: List[int] = dataclasses.field(default_factory=list)  # 0-based class index
    is_crowd: List[bool] = dataclasses.field(default_factory=list)
    areas: List[float] = dataclasses.field(default_factory=list)
    annotation_ids: List[int] = dataclasses.field(default_factory=list)

    def pixel_boxes(self):
        """[(ymin, xmin, ymax, xmax)] in pixels."""
        return [(y, x, y + h, x + w) for x, y, w, h in self.bboxes]

    def normalised_boxes(self):
        """[(ymin, xmin, ymax, xmax)] divided by the image's height and width."""
        return [(ymin / self.height, xmin / self.width, ymax / self.height, xmax / self.width)
                for ymin, xmin, ymax, xmax in self.pixel_boxes()]


@dataclasses.dataclass
class CocoSplit:
    categories: List[Tuple[int, str]]  # (COCO id, name), sorted by id: class index = position
    images: List[ImageEntry]
    skipped: int  # annotations left out (invalid_boxes="skip")


def read_json(path):
    if not tf.io.gfile.exists(path):
        raise ValueError(f"annotation file {path!r} does not exist")
    with tf.io.gfile.GFile(path) as stream:
        try:
            return json.load(stream)
        except json.JSONDecodeError as error:
            raise ValueError(f"annotation file {path!r} is not valid JSON: {error}") from None


def _categories(path, content):
    categories = sorted((c["id"], str(c.get("name", c["id"])))
                        for c in content.get("categories") or [])
    if not categories:
        raise ValueError(f"{path!r} has no categories; COCO detection files list "
                         "[{'id': ..., 'name': ...}] under 'categories'")
    ids = [category_id for category_id, _ in categories]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path!r} lists a category id twice: {ids}; ids must be unique")
    return categories


def _classes(path, categories, class_ids):
    """([(category id, name)] with class index = position, {listed id: class index})."""
    if class_ids not in CLASS_IDS:
        raise ValueError(f"class_ids is {class_ids!r}; use one of {CLASS_IDS}")
    if class_ids == "index":
        return categories, {category_id: index
                            for index, (category_id, _) in enumerate(categories)}
    ids = [category_id for category_id, _ in categories]
    if not all(isinstance(i, int) and 1 <= i <= MAX_CATEGORY_ID for i in ids):
        raise ValueError(f"{path!r} has category ids {ids}: class_ids='category_id' makes "
                         f"class id - 1 of each, which needs integer ids 1..{MAX_CATEGORY_ID} "
                         "(COCO's are 1..90); number them by position instead "
                         "(data.class_ids=index; the converter's --class_ids=index)")
    names = dict(categories)
    if max(ids) > 2 * len(ids):
        logging.warning("%s: category ids up to %d for %d categories make %d classes, most of "
                        "them unused (class_ids='category_id'; 'index' numbers them 0..%d)",
                        path, max(ids), len(ids), max(ids), len(ids) - 1)
    return ([(i, names.get(i, labels.UNUSED.format(i))) for i in range(1, max(ids) + 1)],
            {category_id: category_id - 1 for category_id in ids})


def _images(path, content, images_dir):
    """{image id: ImageEntry} of the file's images, in file order."""
    entries = {}
    for image in content.get("images") or []:
        name = image.get("file_name")
        if image.get("id") in entries:
            raise ValueError(f"{path!r}: image id {image.get('id')} is listed twice (the second "
                             f"time for {name!r}); ids must be unique")
        size = image.get("height"), image.get("width")
        if not all(isinstance(v, numbers.Integral) and v > 0 for v in size):
            raise ValueError(f"{path!r}: image {name!r} (id {image.get('id')}) has height, "
                             f"width {size}; both must be positive integers (pixels)")
        entries[image["id"]] = ImageEntry(image_id=image["id"], file_name=name,
                                          path=f"{images_dir}/{name}", height=size[0],
                                          width=size[1])
    return entries


def check_box(bbox, width, height):
    """(what is wrong with a COCO bbox [x, y, w, h] in a width x height image, or None;
    the box clipped to the image)."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, numbers.Real) for v in bbox)):
        return f"bbox {bbox!r} is not four numbers [x, y, width, height]", None
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return (f"bbox {list(bbox)} has width {w} and height {h}; both must be > 0 "
                "(bbox is [x, y, width, height])"), None
    tolerance = PIXEL_TOLERANCE
    if x < -tolerance or y < -tolerance or x + w > width + tolerance \
            or y + h > height + tolerance:
        return (f"bbox {list(bbox)} spans x {x}..{x + w}, y {y}..{y + h}, outside the "
                f"{width}x{height} image; a box must lie within x 0..{width}, y 0..{height} "
                f"(up to {tolerance:g} pixel outside is clipped)"), None
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, width), min(y + h, height)
    if (left, top, right, bottom) == (x, y, x + w, y + h):
        return None, list(bbox)  # the file's own numbers, unrounded
    if right <= left or bottom <= top:
        return f"bbox {list(bbox)} is empty once clipped to the {width}x{height} image", None
    return None, [left, top, right - left, bottom - top]


def _problem(annotation, image, class_of):
    """(what is wrong with the annotation, or None; its clipped bbox)."""
    category = annotation.get("category_id")
    if category not in class_of:
        return (f"category_id {category!r} is not in the file's categories (ids "
                f"{sorted(class_of)})"), None
    return check_box(annotation.get("bbox"), image.width, image.height)


def read_coco_split(path, images_dir, invalid_boxes="error", class_ids="index"):
    """The checked CocoSplit of annotation file `path` with images in `images_dir`, classes
    numbered as `class_ids` says (CLASS_IDS).

    A category not in `categories`, an empty box or one outside its image is an error naming
    the image and annotation (invalid_boxes="error"), or is left out, counted and the first
    LOGGED logged ("skip"). An annotation of an image the file does not list, or a missing
    images_dir, is always an error. Image files themselves are not opened here."""
    if invalid_boxes not in INVALID_BOXES:
        raise ValueError(f"invalid_boxes is {invalid_boxes!r}; use one of {INVALID_BOXES}")
    images_dir = images_dir.rstrip("/")
    if not tf.io.gfile.isdir(images_dir):
        raise ValueError(f"image folder {images_dir!r} (for {path!r}) does not exist or is not "
                         "a directory")
    content = read_json(path)
    categories, class_of = _classes(path, _categories(path, content), class_ids)
    images = _images(path, content, images_dir)
    skipped = 0
    for annotation in content.get("annotations") or []:
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise ValueError(f"{path!r}: annotation {annotation.get('id')} refers to image_id "
                             f"{annotation.get('image_id')!r}, which 'images' does not list; "
                             "every annotation needs an image entry")
        problem, bbox = _problem(annotation, image, class_of)
        if problem is not None:
            message = (f"{path!r}: image {image.file_name!r} (id {image.image_id}), annotation "
                       f"{annotation.get('id')}: {problem}")
            if invalid_boxes == "error":
                raise ValueError(f"{message} (data.invalid_boxes=skip leaves such annotations "
                                 "out)")
            skipped += 1
            if skipped <= LOGGED:
                logging.warning("skipped annotation: %s", message)
            continue
        _add(image, annotation, bbox, class_of[annotation["category_id"]])
    if skipped:
        logging.warning("%s: skipped %d invalid annotations", path, skipped)
    return CocoSplit(categories=categories, images=list(images.values()), skipped=skipped)


def _add(image, annotation, bbox, class_index):
    image.bboxes.append(bbox)
    image.classes.append(class_index)
    image.is_crowd.append(bool(annotation.get("iscrowd", 0)))
    area: Optional[float] = annotation.get("area")
    image.areas.append(float(area) if area is not None else float(bbox[2] * bbox[3]))
    image.annotation_ids.append(annotation.get("id"))
