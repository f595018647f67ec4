"""COCO box AP through pycocotools, on hand-made ground truth with known answers."""

import numpy as np
import pytest

from efficientnet_tf.tasks.detection import metric as metric_lib, postprocess

CATEGORIES = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]


def annotation(image_id, class_id, bbox):
    return {"image_id": image_id, "category_id": class_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0}


def ground_truth(annotations, image_ids=(1, 2)):
    return {"images": [{"id": i, "height": 200, "width": 300} for i in image_ids],
            "annotations": annotations, "categories": CATEGORIES}


def row(image_id, bbox, score, class_id):
    return [image_id, *bbox, score, class_id]


def test_ground_truth_as_detections_scores_one():
    truth = [annotation(1, 0, [10, 20, 50, 40]), annotation(1, 1, [100, 50, 80, 120]),
             annotation(2, 0, [0, 0, 300, 200]), annotation(2, 1, [30, 30, 20, 25])]
    evaluator = metric_lib.CocoEvaluator(ground_truth(truth))
    # Through to_coco: detect()'s layout (ymin, xmin, ymax, xmax), two images, one padded row.
    boxes = np.zeros([2, 3, 4])
    for image, (first, second) in enumerate([truth[:2], truth[2:]]):
        for slot, item in enumerate([first, second]):
            x, y, width, height = item["bbox"]
            boxes[image, slot] = [y, x, y + height, x + width]
    evaluator.update(postprocess.to_coco([1, 2], boxes, np.ones([2, 3]),
                                         [[0, 1, -1], [0, 1, -1]], [2, 2]))
    metrics = evaluator.finish()
    for name in ("AP", "AP50", "AP75", "ARmax100", "AP/cat", "AP/dog"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["detections"] == 4 and metrics["images"] == 2
    assert "Average Precision" in evaluator.summary


def test_hand_computed_average_precision():
    # One image, two cats. By score: 0.9 matches the first (TP), 0.8 overlaps nothing (FP),
    # 0.7 matches the second (TP), at every IoU threshold (exact boxes or no overlap):
    #   recall    = 1/2, 1/2, 2/2;  precision = 1/1, 1/2, 2/3
    #   interpolated precision (the best at this recall or beyond): 1, 2/3, 2/3.
    # COCO samples it at recall 0, 0.01, ..., 1 (101 points), each taking the first point of
    # recall >= r: r in [0, 0.5] (51 points) -> 1; r in (0.5, 1] (50 points) -> 2/3.
    #   AP = (51 * 1 + 50 * 2/3) / 101 = 84.333 / 101 = 0.83498
    truth = [annotation(1, 0, [10, 10, 40, 40]), annotation(1, 0, [100, 100, 60, 50])]
    evaluator = metric_lib.CocoEvaluator(ground_truth(truth, image_ids=(1,)))
    evaluator.update(np.array([row(1, [10, 10, 40, 40], 0.9, 0),
                               row(1, [200, 150, 30, 30], 0.8, 0),
                               row(1, [100, 100, 60, 50], 0.7, 0)]))
    metrics = evaluator.finish()
    expected = (51 + 50 * 2 / 3) / 101
    for name in ("AP", "AP50", "AP75", "AP/cat"):
        assert metrics[name] == pytest.approx(expected, abs=1e-9), name
    assert metrics["ARmax100"] == pytest.approx(1.0)
    assert metrics["ARmax1"] == pytest.approx(0.5)  # the best detection finds one of two
    assert metrics["AP/dog"] == -1.0  # no dogs anywhere: undefined, as COCO's -1


def test_detections_of_classes_the_ground_truth_does_not_list_are_not_scored():
    """Class 1 of the model is no ground-truth category (a COCO id no category has): its
    detections are dropped, not an error or a false positive; a class beyond the model's
    classes stays an error."""
    truth = [annotation(1, 0, [10, 10, 40, 40])]
    evaluator = metric_lib.CocoEvaluator(
        {**ground_truth(truth, image_ids=(1,)), "categories": CATEGORIES[:1]},
        class_names=["cat", "2"])
    evaluator.update(np.array([row(1, [10, 10, 40, 40], 0.9, 0),
                               row(1, [200, 150, 30, 30], 0.95, 1)]))
    metrics = evaluator.finish()
    assert metrics["AP"] == pytest.approx(1.0) and metrics["detections"] == 1
    assert [key for key in metrics if key.startswith("AP/")] == ["AP/cat"]
    with pytest.raises(ValueError, match="detections of class 5, which is not a ground-truth"):
        metric_lib.CocoEvaluator(ground_truth(truth, image_ids=(1,))).update(
            np.array([row(1, [10, 10, 40, 40], 0.9, 5)]))


def test_per_class_ap_with_a_missed_class():
    truth = [annotation(1, 0, [10, 10, 40, 40]), annotation(2, 1, [50, 60, 70, 80])]
    evaluator = metric_lib.CocoEvaluator(ground_truth(truth), class_names=["kitten", "puppy"])
    evaluator.update(np.array([row(1, [10, 10, 40, 40], 0.95, 0)]))
    metrics = evaluator.finish()
    assert metrics["AP/kitten"] == pytest.approx(1.0)
    assert metrics["AP/puppy"] == 0.0
    assert metrics["AP"] == pytest.approx(0.5)


def test_no_detections_score_zero():
    evaluator = metric_lib.CocoEvaluator(ground_truth([annotation(1, 0, [10, 10, 40, 40])]))
    evaluator.update(np.zeros([0, 7]))
    metrics = evaluator.finish()
    assert metrics["AP"] == 0.0 and metrics["AP/cat"] == 0.0 and metrics["detections"] == 0
    evaluator.reset()
    assert evaluator.finish()["AP"] == 0.0


def test_unknown_images_and_classes_are_errors():
    evaluator = metric_lib.CocoEvaluator(ground_truth([annotation(1, 0, [10, 10, 40, 40])]))
    with pytest.raises(ValueError, match="image id 42"):
        evaluator.update(np.array([row(42, [0, 0, 5, 5], 0.5, 0)]))
    with pytest.raises(ValueError, match="class 2"):
        evaluator.update(np.array([row(1, [0, 0, 5, 5], 0.5, 2)]))
    with pytest.raises(ValueError, match=r"\[M, 7\]"):
        evaluator.update(np.zeros([3, 6]))
    with pytest.raises(ValueError, match="'categories'"):
        metric_lib.CocoEvaluator({"images": [], "annotations": []})


def test_evaluation_clips_boxes_to_the_input_square_as_automl():
    """A 100 x 200 (h x w) image fitted into 64 px (scale 0.32; the square is 200 x 200 of its
    pixels). The detection reaches 25 px below the image, into the padding: automl clips it to
    the square, not the image, so its IoU with the object at the image's bottom is 2/3 (matched
    at IoU 0.5-0.65: AP 4/10), where clipping to the image would make it exact (AP 1)."""
    truth = {"images": [{"id": 1, "height": 100, "width": 200}],
             "annotations": [annotation(1, 0, [10, 50, 100, 50])], "categories": CATEGORIES}
    evaluator = metric_lib.Evaluator(truth, ["cat", "dog"], postprocess.EVAL_NMS, input_size=64)
    scale = 0.32
    box = np.array([50, 10, 125, 110]) * scale  # (ymin, xmin, ymax, xmax) in input pixels
    evaluator.update({"loss_sum": 0.0, "positives": 1.0, "image_id": np.array([1]),
                      "scale": np.array([scale], np.float32),
                      "boxes": np.array([[box]], np.float32),
                      "scores": np.array([[0.9]], np.float32), "classes": np.array([[0]])})
    metrics = evaluator.finish()
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP"] == pytest.approx(0.4)
