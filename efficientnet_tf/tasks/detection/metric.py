"""COCO box AP of detections with pycocotools' COCOeval (the metric EfficientDet reports).

As google/automl efficientdet's evaluation (coco_metric.py L92-238): COCOeval(iouType="bbox")
over the ground truth, its 12 summary numbers, and AP per class from its precision array. The
ground truth is a COCO-format dict whose category ids are this project's 0-based class indices
(the classes detect() outputs), so detections need no id mapping. Every ground-truth image is
evaluated (an image without detections has its objects missed): give the ground truth of
exactly the images run through the model.
"""

import contextlib
import io

import numpy as np
import tensorflow as tf
from absl import logging
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from efficientnet_tf.tasks.detection import postprocess

# COCOeval.stats, in its order (COCOeval.summarize).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")


def _index(dataset):
    """A pycocotools COCO of a dataset dict, without a file."""
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _ground_truth_dataset(ground_truth):
    for key in ("images", "annotations", "categories"):
        if key not in ground_truth:
            raise ValueError(f"ground truth needs COCO's {key!r} list; it has keys "
                             f"{sorted(ground_truth)}")
    annotations = []
    # COCOeval records a match as the matched annotation's id, with 0 meaning "unmatched"
    # (cocoeval.py evaluateImg), so ids must start at 1: they are renumbered here.
    for number, annotation in enumerate(ground_truth["annotations"], start=1):
        annotation = dict(annotation, id=number)
        annotation.setdefault("iscrowd", 0)
        annotation.setdefault("area", float(annotation["bbox"][2] * annotation["bbox"][3]))
        annotations.append(annotation)
    return {"images": list(ground_truth["images"]), "annotations": annotations,
            "categories": list(ground_truth["categories"])}


class CocoEvaluator:
    """Accumulates detections (postprocess.to_coco rows) and scores them against ground truth.

    ground_truth: COCO-format dict (images with id/height/width; annotations with image_id,
    category_id = 0-based class index, bbox [x, y, width, height], area, iscrowd; categories
    [{id, name}]). class_names: names of the classes by index for the per-class keys
    ("AP/<name>"); by default the categories' names.
    """

    def __init__(self, ground_truth, class_names=None):
        dataset = _ground_truth_dataset(ground_truth)
        with contextlib.redirect_stdout(io.StringIO()):
            self._ground_truth = _index(dataset)
        self._image_ids = set(self._ground_truth.getImgIds())
        self._class_ids = sorted(self._ground_truth.getCatIds())
        # Classes of the model that the ground truth does not list (COCO's 10 unused ids of
        # 90, named or not) are not scored: their detections are dropped, as COCO's own file
        # and evaluation ignore them. A class beyond the model's is an error (below).
        self._unlisted = set(range(len(class_names or ()))) - set(self._class_ids)
        if class_names is not None:
            names = {class_id: class_names[class_id] for class_id in self._class_ids}
        else:
            names = {category["id"]: category.get("name", str(category["id"]))
                     for category in dataset["categories"]}
        self.class_names = names
        self.summary = ""  # COCOeval's printed report of the last finish()
        self.reset()

    def reset(self):
        self._detections = []

    def update(self, detections):
        """Adds float [M, 7] rows (image_id, x, y, width, height, score, class)."""
        detections = np.asarray(detections, np.float64)
        if detections.ndim != 2 or detections.shape[1] != 7:
            raise ValueError(f"detections must be [M, 7] rows (image_id, x, y, width, height, "
                             f"score, class), got shape {detections.shape}")
        unknown_images = sorted(set(detections[:, 0].astype(np.int64)) - self._image_ids)
        if unknown_images:
            raise ValueError(f"detections for image id {unknown_images[0]}, which is not in "
                             f"the ground truth ({len(unknown_images)} unknown image ids)")
        if self._unlisted:
            detections = detections[~np.isin(detections[:, 6].astype(np.int64),
                                             list(self._unlisted))]
        unknown_classes = sorted(set(detections[:, 6].astype(np.int64)) - set(self._class_ids))
        if unknown_classes:
            raise ValueError(f"detections of class {unknown_classes[0]}, which is not a "
                             f"ground-truth category id (0-based class indices expected: "
                             f"{self._class_ids[:5]}...)")
        self._detections.append(detections)

    def _results(self, detections):
        if len(detections):
            return self._ground_truth.loadRes(detections)
        # loadRes cannot take an empty list (it reads the first result), and no detections is
        # a fair outcome (AP 0): an empty result set over the same images.
        return _index({"images": self._ground_truth.dataset["images"], "annotations": [],
                       "categories": self._ground_truth.dataset["categories"]})

    def finish(self, image_ids=None):
        """{"AP", "AP50", ..., "ARl"} (fractions, -1 where COCO leaves one undefined),
        "AP/<class name>" per class, "detections" and "images" counts; over the ground truth's
        images, or only `image_ids` (those that were evaluated) when given."""
        detections = (np.concatenate(self._detections) if self._detections
                      else np.zeros([0, 7], np.float64))
        images = sorted(self._image_ids if image_ids is None else set(image_ids))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            evaluation = COCOeval(self._ground_truth, self._results(detections), "bbox")
            evaluation.params.imgIds = images
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        self.summary = printed.getvalue()
        logging.debug("COCOeval:\n%s", self.summary)
        metrics = {name: float(value) for name, value in zip(STAT_NAMES, evaluation.stats)}
        metrics.update(self._per_class(evaluation))
        metrics["detections"] = len(detections)
        metrics["images"] = len(images)
        return metrics

    def _per_class(self, evaluation):
        """AP of each class: precision [IoU threshold, recall, class, area, max detections]
        at area "all" and the most detections, averaged where defined (> -1), as stats[0]."""
        precision = evaluation.eval["precision"]
        area = evaluation.params.areaRngLbl.index("all")
        per_class = {}
        for column, class_id in enumerate(evaluation.params.catIds):
            values = precision[:, :, column, area, -1]
            values = values[values > -1]
            average = float(np.mean(values)) if values.size else -1.0
            per_class[f"AP/{self.class_names[class_id]}"] = average
        return per_class


class Evaluator:
    """One pass of eval-step outputs -> COCO metrics (after NMS, here on the host) and the
    eval loss (normalized by the positives of the whole split + 1).

    Boxes are clipped to the `input_size` square the image was fitted into, mapped back to the
    image's pixels (so a box may reach into the padding below or right of a non-square image),
    as google/automl scores them (tf2/postprocess.py: clip_boxes to image_size before the
    image scale); serving clips to the image itself."""

    def __init__(self, ground_truth, class_names, nms_settings, input_size):
        self.coco = CocoEvaluator(ground_truth, class_names)
        self.nms_settings = nms_settings
        self.input_size = input_size
        self.totals = {"loss_sum": 0.0, "positives": 0.0}
        self.image_ids = set()
        self.expected = len(ground_truth["images"])

    def update(self, results):
        real = results["image_id"] >= 0
        self.totals["loss_sum"] += float(results["loss_sum"])
        self.totals["positives"] += float(results["positives"])
        self.image_ids.update(int(i) for i in results["image_id"][real])
        if not real.any():
            return
        with tf.device("CPU:0"):
            found = postprocess.nms(results["boxes"][real], results["scores"][real],
                                    results["classes"][real], self.nms_settings)
            scale = results["scale"][real]
            square = np.stack([self.input_size / scale] * 2, axis=-1)
            boxes = postprocess.to_original(found["boxes"], scale, square)
        self.coco.update(postprocess.to_coco(
            results["image_id"][real], boxes.numpy(), found["scores"].numpy(),
            found["classes"].numpy(), found["num_detections"].numpy()))

    def finish(self):
        """COCO metrics over the images that were evaluated: an image the pipeline skipped
        (undecodable, above max_pixels; named in the log) is left out, as classification
        leaves it out of top-1, and the difference is logged here."""
        if len(self.image_ids) != self.expected:
            logging.warning("COCO AP over %d of the %d ground-truth images: the others were "
                            "skipped (see the skipped files)", len(self.image_ids),
                            self.expected)
        metrics = self.coco.finish(self.image_ids)
        metrics["loss"] = self.totals["loss_sum"] / (self.totals["positives"] + 1.0)
        metrics["examples"] = len(self.image_ids)
        return metrics
