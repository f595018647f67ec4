"""Digit scenes: the offline COCO-format detection dataset (tasks/detection/digit_scenes.py)."""

import itertools
import json

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from efficientnet_tf.tasks.detection import digit_scenes
from efficientnet_tf.tasks.detection.sources import CocoJsonSource

SETTINGS = {"image_size": 128, "train_images": 20, "eval_images": 8, "seed": 3}
COUNTS = {"train": 20, "eval": 8}
VISIBLE = 15.0  # mean absolute change (0..255) a pasted digit makes over its box, at least


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return digit_scenes.write_digit_scenes(str(tmp_path_factory.mktemp("scenes")), **SETTINGS)


@pytest.fixture(scope="module")
def source(written):
    return CocoJsonSource({split: written[split]["annotations"] for split in COUNTS},
                          {split: written[split]["images_dir"] for split in COUNTS})


def annotations_of(written, split):
    """{annotation id: annotation} of the split's file, as written (extra keys included)."""
    with tf.io.gfile.GFile(written[split]["annotations"]) as stream:
        return {annotation["id"]: annotation for annotation in json.load(stream)["annotations"]}


def files_of(root):
    """{path under root: bytes} of every file under root (any tf.io.gfile filesystem)."""
    contents = {}
    for folder, _, names in tf.io.gfile.walk(root):
        for name in names:
            with tf.io.gfile.GFile(f"{folder}/{name}", "rb") as stream:
                contents[f"{folder}/{name}"[len(root):]] = stream.read()
    return contents


def test_splits_load_as_coco_with_ten_digit_classes(written, source):
    assert source.class_names == tuple(str(digit) for digit in range(10))
    assert source.category_ids == tuple(range(1, 11))
    assert source.skipped_annotations == {"train": 0, "eval": 0}
    for split, count in COUNTS.items():
        assert source.num_examples(split) == written[split]["images"] == count
        assert sum(len(e.bboxes) for e in source.entries(split)) == written[split]["boxes"]
    assert written["reused"] is False


def test_boxes_are_ink_boxes_that_barely_overlap(written, source):
    digits = load_digits()
    smallest_ink = min(min(digit_scenes.ink_box(digit_scenes.digit_alpha(
        scan, digit_scenes.MIN_SIDE))[2:]) for scan in digits.images)
    size = SETTINGS["image_size"]
    for split, (first, end) in digit_scenes.DIGIT_RANGES.items():
        annotations = annotations_of(written, split)
        for entry in source.entries(split):
            assert (entry.width, entry.height) == (size, size)
            assert 1 <= len(entry.bboxes) <= digit_scenes.MAX_DIGITS
            for (x, y, w, h), class_index, annotation_id in zip(
                    entry.bboxes, entry.classes, entry.annotation_ids):
                assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
                assert smallest_ink <= min(w, h) and max(w, h) <= min(digit_scenes.MAX_SIDE, size)
                digit_index = annotations[annotation_id]["digit_index"]
                assert first <= digit_index < end  # eval scenes: other writers (>= 1500)
                assert class_index == digits.target[digit_index]
            for a, b in itertools.combinations(entry.bboxes, 2):
                assert digit_scenes.box_iou(a, b) <= digit_scenes.MAX_IOU


def test_files_hold_the_rendered_scenes_and_every_digit_shows(written, source):
    for split, count in COUNTS.items():
        scenes = list(digit_scenes.render_scenes(split, count, SETTINGS["image_size"],
                                                 SETTINGS["seed"]))
        for entry, scene in zip(source.entries(split), scenes):
            pixels = tf.io.decode_png(tf.io.read_file(entry.path)).numpy()
            np.testing.assert_array_equal(pixels, scene.pixels)
            assert [list(box) for box in entry.bboxes] == scene.boxes
            change = np.abs(pixels.astype(np.float64) - scene.background).mean(axis=-1)
            outside = np.ones(change.shape, bool)
            for x, y, w, h in scene.boxes:
                assert change[y:y + h, x:x + w].mean() > VISIBLE, (entry.path, (x, y, w, h))
                outside[y:y + h, x:x + w] = False
            # Outside every box only the faint fringe below the ink threshold may differ.
            assert change[outside].max(initial=0) <= 255 * digit_scenes.INK_THRESHOLD + 0.5


def test_same_seed_same_files_and_the_marker_skips_a_second_call(written, monkeypatch):
    first_root = written["train"]["annotations"].rsplit("/", 2)[0]
    again = digit_scenes.write_digit_scenes("ram://digit_scenes_again", **SETTINGS)
    assert again["train"]["boxes"] == written["train"]["boxes"]
    assert files_of("ram://digit_scenes_again") == files_of(first_root)

    def render_nothing(*args, **kwargs):
        raise AssertionError("a complete set was rendered again")

    monkeypatch.setattr(digit_scenes, "render_scenes", render_nothing)
    reused = digit_scenes.write_digit_scenes(first_root, **SETTINGS)
    assert reused["reused"] is True
    assert {split: reused[split]["boxes"] for split in COUNTS} == {
        split: written[split]["boxes"] for split in COUNTS}
    with pytest.raises(AssertionError, match="rendered again"):
        digit_scenes.write_digit_scenes("ram://digit_scenes_again", **{**SETTINGS, "seed": 4})
