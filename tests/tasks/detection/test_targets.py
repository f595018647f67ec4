"""Anchors, box coding and anchor labeling for EfficientDet (google/automl's conventions)."""

import math

import numpy as np
import tensorflow as tf

from efficientnet_tf.tasks.detection import anchors, boxes
from efficientnet_tf.tasks.detection import targets as targets_lib

D0 = anchors.AnchorSettings()


def test_anchor_counts_and_level_shapes():
    assert anchors.count((512, 512), D0) == 49_104  # (64^2 + 32^2 + 16^2 + 8^2 + 4^2) x 9
    assert anchors.generate((512, 512), D0).shape == (49_104, 4)
    d7x = anchors.AnchorSettings(max_level=8)
    assert anchors.count((1536, 1536), d7x) == 9 * sum((1536 // 2 ** level) ** 2
                                                       for level in range(3, 9))
    # Odd and non-square inputs: each level halves the one before, rounding up.
    shapes = anchors.level_shapes((500, 300), D0)
    assert shapes[3] == (63, 38, 9) and shapes[7] == (4, 3, 9)


def test_anchor_geometry():
    first = anchors.generate((512, 512), D0)[:9]
    # Level 3 (stride 8), the cell at (0, 0) centred on (4, 4); side 4 x 8 = 32 at scale 0.
    np.testing.assert_allclose(first[0], [-12, -12, 20, 20])
    half_height, half_width = 16 / math.sqrt(2), 16 * math.sqrt(2)  # aspect 2 = width / height
    np.testing.assert_allclose(first[1], [4 - half_height, 4 - half_width, 4 + half_height,
                                          4 + half_width], rtol=1e-6)
    side = 32 * 2 ** (1 / 3)  # scale 1 of 3, aspect 1
    np.testing.assert_allclose(first[3], [4 - side / 2, 4 - side / 2, 4 + side / 2,
                                          4 + side / 2], rtol=1e-6)
    # The next location along x is one stride (8 px) to the right.
    np.testing.assert_allclose(anchors.generate((512, 512), D0)[9], [-12, -4, 20, 28])


def test_box_coding_round_trip_and_iou():
    rng = np.random.RandomState(0)
    corner = rng.uniform(0, 400, (1000, 2))
    real = np.concatenate([corner, corner + rng.uniform(2, 300, (1000, 2))], axis=1)
    grid = anchors.generate((512, 512), D0)[rng.randint(0, 49_104, 1000)]
    codes = boxes.encode(real, grid)
    np.testing.assert_allclose(boxes.decode(codes, grid), real, atol=1e-3)
    # A box and its anchor: codes (0, 0, 0, 0); twice as tall, centred: th = log 2.
    anchor = np.array([[10.0, 10.0, 30.0, 50.0]])
    np.testing.assert_allclose(boxes.encode(anchor, anchor), [[0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(boxes.encode([[0.0, 10.0, 40.0, 50.0]], anchor),
                               [[0, 0, math.log(2), 0]], atol=1e-6)
    overlaps = boxes.iou([[0.0, 0.0, 10.0, 10.0]], [[0.0, 5.0, 10.0, 15.0], [20.0, 20, 30, 30],
                                                     [0.0, 0.0, 10.0, 10.0]])
    np.testing.assert_allclose(overlaps, [[50 / 150, 0.0, 1.0]], rtol=1e-6)


def test_matching_forces_every_object_onto_an_anchor():
    grid = anchors.generate((128, 128), D0)
    exact = grid[100]  # an anchor's own box: IoU 1
    tiny = [60.0, 60.0, 63.0, 63.0]  # IoU far below 0.5 with any anchor
    gt_boxes, gt_classes, dropped = targets_lib.pad_instances(
        tf.constant([exact, tiny]), tf.constant([4, 7]), max_instances=5)
    assert int(dropped) == 0 and gt_classes.numpy().tolist() == [4, 7, -1, -1, -1]
    matches = targets_lib.match(grid, gt_boxes, gt_classes).numpy()
    assert matches[100] == 0
    best_for_tiny = int(np.argmax(boxes.iou(grid, [tiny]).numpy()[:, 0]))
    assert matches[best_for_tiny] == 1  # forced, though its IoU is < 0.5
    assert set(np.unique(matches)) == {-1, 0, 1}  # padding rows match nothing
    # Two boxes whose best anchor is the same: the first keeps it.
    twin_boxes, twin_classes, _ = targets_lib.pad_instances(tf.constant([tiny, tiny]),
                                                        tf.constant([3, 5]), max_instances=2)
    assert targets_lib.match(grid, twin_boxes, twin_classes).numpy()[best_for_tiny] == 0
    # Thresholds 0.5 / 0.4: anchors in between are ignored.
    ignored = targets_lib.match(grid, gt_boxes, gt_classes, 0.5, 0.4).numpy()
    overlap = boxes.iou(grid, [exact]).numpy()[:, 0]
    between = (overlap >= 0.4) & (overlap < 0.5)
    assert between.any() and (ignored[between] == targets_lib.IGNORED).all()


def reference_match(grid, gt_boxes, gt_classes, matched=0.5, unmatched=0.5):
    """The argmax matcher over every row (padding at overlap -1), in numpy."""
    overlaps = boxes.iou(grid, gt_boxes).numpy()
    valid = np.asarray(gt_classes) != targets_lib.PADDING
    overlaps[:, ~valid] = -1.0
    best = overlaps.max(1)
    matches = np.where(best >= matched, overlaps.argmax(1),
                       np.where(best < unmatched, targets_lib.BACKGROUND, targets_lib.IGNORED))
    for row in reversed(np.flatnonzero(valid)):  # the first row sharing an anchor wins
        matches[overlaps[:, row].argmax()] = row
    return matches


def test_matching_compares_only_objects_and_agrees_with_the_dense_matcher():
    grid = anchors.generate((256, 256), D0)
    rng = np.random.RandomState(0)
    for count in (1, 3, 12):
        corner = rng.uniform(0, 200, (count, 2))
        objects = np.concatenate([corner, corner + rng.uniform(4, 120, (count, 2))], 1)
        objects[-1] = objects[0]  # two objects with the same best anchor
        classes = rng.randint(0, 5, count)
        # padding rows between the objects too, not only after them
        order = rng.permutation(count + 7)
        # padding rows hold boxes too (which must match nothing), between the objects too
        padding_corner = rng.uniform(0, 200, (count + 7, 2))
        gt_boxes = np.concatenate([padding_corner, padding_corner + 40], 1).astype(np.float32)
        gt_classes = np.full(count + 7, targets_lib.PADDING, np.int32)
        gt_boxes[order[:count]], gt_classes[order[:count]] = objects, classes
        for thresholds in ((0.5, 0.5), (0.5, 0.4)):  # 0.4: anchors in between are ignored
            np.testing.assert_array_equal(
                targets_lib.match(grid, gt_boxes, gt_classes, *thresholds).numpy(),
                reference_match(grid, gt_boxes, gt_classes, *thresholds))
    # no object at all (every row padding): every anchor is background
    empty_boxes, empty_classes, _ = targets_lib.pad_instances(tf.zeros([0, 4]),
                                                              tf.zeros([0], tf.int32), 100)
    targets = targets_lib.label(grid, empty_boxes, empty_classes, (256, 256), D0)
    assert float(targets.num_positives) == 0.0
    assert all((classes == targets_lib.BACKGROUND).numpy().all() for classes in
               targets.classes.values())


def test_labels_are_dense_static_and_decode_back():
    settings = D0
    image_size = (256, 256)
    grid = anchors.generate(image_size, settings)
    objects = tf.constant([[30.0, 40.0, 120.0, 200.0], [150.0, 10.0, 250.0, 90.0]])

    def make(boxes_, classes_):
        padded_boxes, padded_classes, _ = targets_lib.pad_instances(boxes_, classes_, 100)
        targets = targets_lib.label(grid, padded_boxes, padded_classes, image_size, settings)
        return targets.classes, targets.boxes, targets.num_positives

    dataset = tf.data.Dataset.from_tensors((objects, tf.constant([2, 0]))).map(make)
    classes_spec, boxes_spec, _ = dataset.element_spec
    assert classes_spec[3].shape == (32, 32, 9) and boxes_spec[7].shape == (2, 2, 36)
    classes, codes, positives = next(iter(dataset))
    flat_classes = tf.concat([tf.reshape(classes[level], [-1]) for level in range(3, 8)], 0)
    flat_codes = tf.concat([tf.reshape(codes[level], [-1, 4]) for level in range(3, 8)], 0)
    positive = flat_classes.numpy() >= 0
    assert positives.numpy() == positive.sum() > 2
    assert set(flat_classes.numpy()[positive]) == {0, 2}
    decoded = boxes.decode(tf.boolean_mask(flat_codes, positive), grid[positive]).numpy()
    for box, cls in zip(decoded, flat_classes.numpy()[positive]):
        np.testing.assert_allclose(box, objects[0 if cls == 2 else 1], atol=1e-3)


def test_more_objects_than_max_instances_are_truncated_and_counted():
    many = tf.tile(tf.constant([[0.0, 0.0, 10.0, 10.0]]), [130, 1])
    padded, classes, dropped = targets_lib.pad_instances(many, tf.zeros([130], tf.int32), 100)
    assert padded.shape == (100, 4) and classes.shape == (100,) and int(dropped) == 30
