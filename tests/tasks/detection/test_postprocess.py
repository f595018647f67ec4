"""Detection post-processing: output flattening, candidates, per-class NMS, box mapping."""

import math

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import postprocess

SETTINGS = anchors_lib.AnchorSettings(min_level=3, max_level=4)
IMAGE = (32, 32)  # level 3: 4 x 4 cells, level 4: 2 x 2; 9 anchors per cell
NUM_CLASSES = 2


def logit(probability):
    return math.log(probability / (1 - probability))


def tiny_outputs(batch=2, background=-20.0):
    outputs = {}
    for level, (height, width, per_location) in anchors_lib.level_shapes(IMAGE,
                                                                         SETTINGS).items():
        outputs[f"classes_{level}"] = np.full([batch, height, width, per_location * NUM_CLASSES],
                                              background, np.float32)
        outputs[f"boxes_{level}"] = np.zeros([batch, height, width, per_location * 4],
                                             np.float32)
    return outputs


def test_flatten_follows_anchor_order():
    outputs = tiny_outputs()
    # Level 4, row 1, column 0, anchor 5, class 1 -> channel 5 * 2 + 1; its anchor comes after
    # the 4 x 4 x 9 of level 3 and (1 * 2 + 0) cells of level 4: index 144 + 18 + 5 = 167.
    outputs["classes_4"][0, 1, 0, 11] = 3.0
    outputs["boxes_4"][0, 1, 0, 20:24] = [1, 2, 3, 4]
    outputs["classes_3"][1, 0, 1, 0] = 5.0  # image 1: level 3, cell (0, 1), anchor 0, class 0
    class_logits, box_codes = postprocess.flatten(outputs, NUM_CLASSES)
    assert class_logits.shape == (2, 180, 2) and box_codes.shape == (2, 180, 4)
    assert np.argmax(class_logits[0].numpy().ravel()) == 167 * 2 + 1
    np.testing.assert_array_equal(box_codes[0, 167], [1, 2, 3, 4])
    assert np.argmax(class_logits[1].numpy().ravel()) == 9 * 2 + 0
    anchor = anchors_lib.generate(IMAGE, SETTINGS)[167]
    # The level 4 cell (1, 0) is centred on (24, 8) (stride 16).
    np.testing.assert_allclose([(anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2],
                               [24, 8])
    with pytest.raises(ValueError, match="3 classes"):
        postprocess.flatten(outputs, 3)


def test_zero_codes_decode_to_the_anchor():
    outputs = tiny_outputs(batch=1)
    outputs["classes_4"][0, 1, 0, 11] = 3.0
    anchors = anchors_lib.generate(IMAGE, SETTINGS)
    detections = postprocess.detect(*postprocess.flatten(outputs, NUM_CLASSES), anchors,
                                    postprocess.EVAL_NMS)
    assert detections["num_detections"].numpy().tolist() == [1]
    np.testing.assert_allclose(detections["boxes"][0, 0], anchors[167], rtol=1e-6)
    assert detections["classes"][0, 0] == 1
    np.testing.assert_allclose(detections["scores"][0, 0], 1 / (1 + math.exp(-3)), rtol=1e-6)


# Three anchors, zero codes: A and B of class 0 overlap by IoU 2/3 (intersection 80, union
# 120); C, of class 1, overlaps A by 9/11.
HAND_ANCHORS = np.array([[0, 0, 10, 10], [0, 2, 10, 12], [0, 1, 10, 11]], np.float32)


def hand_detect(settings):
    class_logits = np.full([1, 3, 2], -20.0, np.float32)
    class_logits[0, 0, 0], class_logits[0, 1, 0], class_logits[0, 2, 1] = (
        logit(0.9), logit(0.8), logit(0.7))
    detections = postprocess.detect(class_logits, np.zeros([1, 3, 4], np.float32),
                                    HAND_ANCHORS, settings)
    return {key: value.numpy()[0] for key, value in detections.items()}


def test_hard_nms_suppresses_overlap_within_a_class_only():
    detections = hand_detect(postprocess.NmsSettings(method="hard", max_detections=4))
    assert detections["num_detections"] == 2
    np.testing.assert_allclose(detections["scores"], [0.9, 0.7, 0, 0], rtol=1e-6)
    assert detections["classes"].tolist() == [0, 1, -1, -1]
    np.testing.assert_allclose(detections["boxes"][:2], HAND_ANCHORS[[0, 2]], atol=1e-5)
    np.testing.assert_array_equal(detections["boxes"][2:], 0)


def test_gaussian_soft_nms_decays_overlap_by_the_papers_sigma():
    detections = hand_detect(postprocess.NmsSettings(max_detections=4))
    # Paper sigma 0.5: B's score 0.8 * exp(-(2/3)^2 / 0.5) = 0.8 * exp(-8/9) = 0.8 * 0.411112
    # = 0.328890 (TF's soft_nms_sigma 0.25 weighs by exp(-iou^2 / (2 * 0.25))). C, another
    # class, keeps 0.7.
    assert detections["num_detections"] == 3
    np.testing.assert_allclose(detections["scores"], [0.9, 0.7, 0.328890, 0], atol=1e-5)
    assert detections["classes"].tolist() == [0, 1, 0, -1]
    assert postprocess.EVAL_NMS.soft_nms_sigma == 0.25


def test_score_threshold_and_max_detections():
    # The threshold applies after decay: B (0.329) falls below 0.5, C (0.7) stays.
    detections = hand_detect(postprocess.NmsSettings(score_threshold=0.5, max_detections=4))
    assert detections["num_detections"] == 2
    assert detections["classes"].tolist() == [0, 1, -1, -1]
    detections = hand_detect(postprocess.NmsSettings(method="hard", score_threshold=0.75,
                                                     max_detections=3))
    assert detections["num_detections"] == 1
    np.testing.assert_allclose(detections["scores"], [0.9, 0, 0], rtol=1e-6)
    detections = hand_detect(postprocess.NmsSettings(max_detections=1))
    assert detections["num_detections"] == 1 and detections["classes"].tolist() == [0]


def per_class_reference(boxes, scores, classes, settings, num_classes):
    """NMS class by class (TF's op, one class at a time), then the best max_detections."""
    kept = []
    for image in range(len(boxes)):
        rows = []
        for class_id in range(num_classes):
            members = np.flatnonzero(classes[image] == class_id)
            index, new_scores = tf.image.non_max_suppression_with_scores(
                boxes[image, members], scores[image, members], settings.max_detections,
                iou_threshold=settings.iou_threshold, score_threshold=settings.score_threshold,
                soft_nms_sigma=settings.soft_nms_sigma)
            rows += [(score, class_id, members[i]) for i, score in zip(index.numpy(),
                                                                        new_scores.numpy())]
        kept.append(sorted(rows, reverse=True)[:settings.max_detections])
    return kept


@pytest.mark.parametrize("method", ["gaussian", "hard"])
def test_one_offset_call_equals_nms_class_by_class(method):
    settings = postprocess.NmsSettings(method=method, score_threshold=0.05, max_detections=12)
    for seed in range(4):
        rng = np.random.RandomState(seed)
        corner = rng.uniform(0, 60, [2, 80, 2])
        boxes = np.concatenate([corner, corner + rng.uniform(5, 40, [2, 80, 2])],
                               axis=-1).astype(np.float32)
        scores = rng.uniform(0, 1, [2, 80]).astype(np.float32)
        classes = rng.randint(0, 4, [2, 80]).astype(np.int32)
        detections = postprocess.nms(boxes, scores, classes, settings)
        for image, expected in enumerate(per_class_reference(boxes, scores, classes, settings,
                                                             4)):
            count = len(expected)
            assert detections["num_detections"][image] == count
            np.testing.assert_allclose(detections["scores"][image, :count],
                                       [row[0] for row in expected], atol=1e-5)
            assert detections["classes"][image, :count].numpy().tolist() == [
                row[1] for row in expected]
            np.testing.assert_allclose(detections["boxes"][image, :count],
                                       boxes[image, [row[2] for row in expected]])
            assert np.all(detections["classes"][image, count:] == -1)


@pytest.mark.parametrize("settings", [postprocess.EVAL_NMS, postprocess.SERVING_NMS])
def test_detect_in_tf_function_has_static_shapes(settings):
    anchors = anchors_lib.generate(IMAGE, SETTINGS)
    rng = np.random.RandomState(0)
    class_logits = rng.normal(-2, 2, [3, 180, NUM_CLASSES]).astype(np.float32)
    box_codes = rng.normal(0, 0.2, [3, 180, 4]).astype(np.float32)
    run = tf.function(lambda logits, codes: postprocess.detect(logits, codes, anchors, settings),
                      input_signature=[tf.TensorSpec([None, 180, NUM_CLASSES]),
                                       tf.TensorSpec([None, 180, 4])])
    shapes = {key: value.shape.as_list()
              for key, value in run.get_concrete_function().structured_outputs.items()}
    assert shapes == {"boxes": [None, 100, 4], "scores": [None, 100], "classes": [None, 100],
                      "num_detections": [None]}
    graph, eager = run(class_logits, box_codes), postprocess.detect(class_logits, box_codes,
                                                                    anchors, settings)
    for key in eager:
        np.testing.assert_allclose(graph[key], eager[key], rtol=1e-6)
    assert graph["num_detections"].numpy().min() > 0
    assert graph["classes"].dtype == tf.int32 and graph["num_detections"].dtype == tf.int32


def test_hard_nms_compiles_with_xla():
    anchors = anchors_lib.generate(IMAGE, SETTINGS)
    class_logits = np.random.RandomState(1).normal(-2, 2, [2, 180, NUM_CLASSES])
    codes = np.zeros([2, 180, 4], np.float32)
    run = tf.function(lambda logits: postprocess.detect(logits, codes, anchors,
                                                        postprocess.SERVING_NMS),
                      jit_compile=True)
    compiled = run(tf.constant(class_logits, tf.float32))
    eager = postprocess.detect(class_logits, codes, anchors, postprocess.SERVING_NMS)
    np.testing.assert_allclose(compiled["scores"], eager["scores"], rtol=1e-6)


def test_to_original_and_to_coco():
    # A 200 x 100 (height x width) image fitted into 64: scale min(64 / 200, 64 / 100) = 0.32.
    boxes = np.array([[[16, 8, 32, 40], [0, 0, 0, 0]],
                      [[10, 10, 20, 20], [0, 0, 0, 0]]], np.float32)
    original = postprocess.to_original(boxes, [0.32, 0.5], [[200, 100], [40, 300]]).numpy()
    # Image 0: [16, 8, 32, 40] / 0.32 = [50, 25, 100, 125], xmax clipped to the width 100.
    # Image 1: / 0.5 = [20, 20, 40, 40], ymax clipped to the height 40.
    np.testing.assert_allclose(original[:, 0], [[50, 25, 100, 100], [20, 20, 40, 40]],
                               rtol=1e-6)
    np.testing.assert_array_equal(original[:, 1], 0)
    np.testing.assert_allclose(postprocess.to_original(boxes[0], 0.32, [200, 100])[0],
                               [50, 25, 100, 100], rtol=1e-6)
    rows = postprocess.to_coco([7, 9], original, [[0.9, 0.0], [0.4, 0.0]], [[3, -1], [1, -1]],
                               [1, 1])
    assert rows.dtype == np.float64
    np.testing.assert_allclose(rows, [[7, 25, 50, 75, 50, 0.9, 3], [9, 20, 20, 20, 20, 0.4, 1]],
                               rtol=1e-6)
    assert postprocess.to_coco([7], original[:1], [[0, 0]], [[-1, -1]], [0]).shape == (0, 7)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown NMS method 'soft'"):
        postprocess.NmsSettings(method="soft")
    with pytest.raises(ValueError, match="sigma 0"):
        postprocess.NmsSettings(sigma=0)
    with pytest.raises(ValueError, match="max_detections must be a positive integer"):
        postprocess.NmsSettings(max_detections=0)
    with pytest.raises(ValueError, match="iou_threshold 1.5"):
        postprocess.NmsSettings(iou_threshold=1.5)
    assert postprocess.SERVING_NMS.soft_nms_sigma == 0.0
