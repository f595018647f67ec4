"""The detection input pipelines (tasks/detection/inputs.py): boxes follow the pixels through
the flip and the scale-jitter crop, shapes are static, more than max_instances boxes are
dropped with a counted warning, bad files are skipped with their reason, and evaluation keeps
what maps detections back to the original pixels."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import MAX_PIXELS
from efficientnet_tf.data.sources import EVAL, TRAIN
from efficientnet_tf.data.stream import DecodeCounter
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import inputs as detection_inputs
from efficientnet_tf.tasks.detection.sources import CocoJsonSource

ANCHORS = anchors_lib.AnchorSettings(min_level=3, max_level=4)
RED = (230, 20, 20)


def settings(**overrides):
    values = dict(image_size=64, batch_size=2, num_classes=2, anchors=ANCHORS, max_instances=100,
                  scale_range=(0.1, 2.0), random_flip=True, shuffle_buffer=4, cache=False,
                  max_pixels=MAX_PIXELS, deterministic=True,
                  pad_colour=detection_inputs.MEAN_COLOUR, seed=3)
    return detection_inputs.DetectionSettings(**{**values, **overrides})


def red_rectangle(height, width, box):
    """A black image with a red rectangle at the pixel box (ymin, xmin, ymax, xmax)."""
    image = np.zeros((height, width, 3), np.float32)
    ymin, xmin, ymax, xmax = box
    image[ymin:ymax, xmin:xmax] = RED
    return image


def red_share(image, box):
    """The share of the pixels inside a pixel box (rounded inwards by one) that are red."""
    ymin, xmin, ymax, xmax = (int(np.ceil(box[0])) + 1, int(np.ceil(box[1])) + 1,
                              int(box[2]) - 1, int(box[3]) - 1)
    inside = np.asarray(image)[ymin:ymax, xmin:xmax]
    return float(np.mean(inside[..., 0] > 150))


def test_flipped_boxes_cover_the_flipped_pixels():
    image = red_rectangle(40, 100, (10, 20, 30, 50))
    boxes = tf.constant([[10 / 40, 20 / 100, 30 / 40, 50 / 100]])
    flipped = detection_inputs.flip_boxes(boxes).numpy()[0]
    np.testing.assert_allclose(flipped, [0.25, 0.5, 0.75, 0.8], rtol=1e-6)
    pixels = tf.image.flip_left_right(image).numpy()
    assert red_share(pixels, flipped * [40, 100, 40, 100]) == 1.0


@pytest.mark.parametrize("scale, offset", [(0.5, (0.0, 0.0)), (1.0, (0.3, 0.9)),
                                           (2.0, (0.5, 0.5)), (1.7, (0.99, 0.0))])
def test_scale_jitter_and_crop_move_the_boxes_with_the_pixels(scale, offset):
    """A 120 x 80 image fitted into scale x 64, a 64 x 64 window at `offset`: the kept box
    still covers red pixels only, and the red pixels of the window lie inside it."""
    image = red_rectangle(120, 80, (40, 10, 100, 60))
    boxes = tf.constant([[40 / 120, 10 / 80, 100 / 120, 60 / 80]])
    window, pixels, keep = detection_inputs._scale_and_crop(
        tf.constant(image), boxes, 64, tf.constant(scale), tf.constant(offset, tf.float32))
    window, pixels, keep = window.numpy(), pixels.numpy(), keep.numpy()
    assert window.shape == (64, 64, 3)
    red = window[..., 0] > 150
    if not keep[0]:  # the rectangle left the window
        assert not red.any()
        return
    box = pixels[0]
    assert red_share(window, box) == 1.0
    ys, xs = np.nonzero(red)
    assert ys.min() >= box[0] - 1 and ys.max() <= box[2] and xs.min() >= box[1] - 1 \
        and xs.max() <= box[3]


def test_a_box_outside_the_window_is_dropped_and_one_across_its_edge_is_clipped():
    image = tf.zeros((200, 200, 3))
    boxes = tf.constant([[0.0, 0.0, 0.1, 0.1],     # top left: outside a bottom-right window
                         [0.4, 0.4, 0.9, 0.9]])   # across the window's top-left edge
    # scale 2: 128 x 128; the window at floor(0.999 x the free 64) = 63 rows and columns in
    _, pixels, keep = detection_inputs._scale_and_crop(image, boxes, 64, tf.constant(2.0),
                                               tf.constant([0.999, 0.999]))
    assert keep.numpy().tolist() == [False, True]
    np.testing.assert_allclose(pixels.numpy()[1], [0.0, 0.0, 0.9 * 128 - 63, 0.9 * 128 - 63],
                               atol=1e-4)


def write_scenes(root, boxes_per_image, missing=()):
    """COCO JSON with 100 x 80 images, each holding `boxes_per_image[i]` red squares."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for index, count in enumerate(boxes_per_image):
        pixels = np.zeros((80, 100, 3), np.uint8)
        for k in range(count):
            x, y = 2 + 12 * (k % 8), 2 + 12 * (k // 8)
            pixels[y:y + 10, x:x + 10] = RED
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": 1, "bbox": [x, y, 10, 10], "area": 100,
                                "iscrowd": 0})
        if index not in missing:
            Image.fromarray(pixels).save(root / "images" / f"{index}.png")
        images.append({"id": index + 1, "file_name": f"{index}.png", "width": 100,
                       "height": 80})
    (root / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}]}))
    paths = {split: str(root / "annotations.json") for split in (TRAIN, EVAL)}
    return CocoJsonSource(paths, {split: str(root / "images") for split in (TRAIN, EVAL)})


def test_train_batches_are_static_and_extra_boxes_are_dropped_and_counted(tmp_path, caplog):
    caplog.set_level("WARNING", logger="absl")
    source = write_scenes(tmp_path, [2, 7, 1, 3], missing={3})
    counter, truncations = DecodeCounter(), detection_inputs.TruncationCounter(max_instances=5)
    dataset = detection_inputs.train_dataset(
        source, settings(max_instances=5, scale_range=(0.9, 1.1)), counter=counter,
        truncations=truncations)
    images, targets = dataset.element_spec
    assert images.shape == (2, 64, 64, 3)
    levels = {key: spec.shape for key, spec in targets.items()}
    assert levels["classes_3"] == (2, 8, 8, 9) and levels["boxes_4"] == (2, 4, 4, 36)
    assert levels["num_positives"] == (2,)
    positives = []
    for images, targets in dataset.take(6):  # 12 examples: every image more than once
        assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 255
        positives.extend(targets["num_positives"].numpy().tolist())
    assert min(positives) >= 1  # each kept image still has a square at scale ~1
    assert truncations.images == {str(tmp_path / "images" / "1.png"): 2}
    assert "has 2 boxes more than detection.max_instances=5" in caplog.text
    assert counter.files == {str(tmp_path / "images" / "3.png"):
                             "no such file, or it cannot be read"}


def test_train_batches_reproduce_with_a_seed(tmp_path):
    source = write_scenes(tmp_path, [1, 2, 3, 4])

    def first_batches(seed):
        batches = detection_inputs.train_dataset(source, settings(seed=seed)).take(3)
        return [(images.numpy(), targets["num_positives"].numpy()) for images, targets in batches]

    one, again, other = first_batches(5), first_batches(5), first_batches(6)
    for (images, positives), (images_again, positives_again) in zip(one, again):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(positives, positives_again)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(one, other))


def test_eval_batches_carry_ids_scales_and_sizes_and_mark_their_padding(tmp_path):
    source = write_scenes(tmp_path, [1, 2, 3])
    batches = list(detection_inputs.eval_dataset(source, settings(), batch_size=2))
    assert len(batches) == 2
    image_ids = np.concatenate([targets["image_id"].numpy() for _, targets in batches])
    assert image_ids.tolist() == [1, 2, 3, detection_inputs.PADDING_IMAGE_ID]
    first_images, first = batches[0]
    np.testing.assert_allclose(first["scale"].numpy(), [0.64, 0.64])  # 100 px wide -> 64
    assert first["original_size"].numpy().tolist() == [[80, 100], [80, 100]]
    # resized to fit: 51 rows of image (80 x 0.64 = 51.2), padding below in ImageNet's mean
    # colour, which the detectors' mean/std scaling maps to 0 (as the official code pads)
    np.testing.assert_allclose(first_images[:, 52:], np.broadcast_to(
        [123.675, 116.28, 103.53], first_images[:, 52:].shape), atol=1e-4)
    assert red_share(first_images[0].numpy(), np.array([2, 2, 12, 12]) * 0.64) == 1.0
    for scaling, colour in (("sym128", 128.0), ("sym255", 127.5)):
        padded = detection_inputs.eval_dataset(source, settings(pad_colour=(colour,) * 3),
                                               batch_size=2)
        images, _ = next(iter(padded))
        np.testing.assert_allclose(images[:, 52:], colour, atol=1e-4)
        assert registry.zero_colour(scaling) == (colour,) * 3


def test_the_train_window_is_padded_with_the_colour_its_scaling_maps_to_zero():
    """A small image scaled into a larger window: the window's outside is the pad colour."""
    image = tf.zeros((20, 40, 3))
    boxes = tf.constant([[0.1, 0.1, 0.9, 0.9]])
    window, _, _ = detection_inputs._scale_and_crop(image, boxes, 64, tf.constant(0.5),
                                            tf.constant([0.0, 0.0]), (127.5, 127.5, 127.5))
    window = window.numpy()
    assert window.shape == (64, 64, 3) and float(window[:16, :32].max()) == 0.0
    np.testing.assert_allclose(window[16:], 127.5)
    np.testing.assert_allclose(window[:, 32:], 127.5)


def test_without_scale_jitter_a_training_image_is_the_evaluation_image(tmp_path):
    """Scale range (1, 1), no flip (a detector's last stage without jitter, flips aside): the
    training pipeline gives each image exactly as evaluation (and the recalibration of batch
    norm) sees it, fitted and padded, not resampled otherwise."""
    source = write_scenes(tmp_path, [1, 2, 3])
    plain = settings(scale_range=(1.0, 1.0), random_flip=False, batch_size=3)
    train_images, _ = next(iter(detection_inputs.train_dataset(source, plain)))
    eval_images, _ = next(iter(detection_inputs.eval_dataset(source, plain, batch_size=3)))
    train_rows, eval_rows = (sorted(np.asarray(images).reshape(3, -1).tolist())
                             for images in (train_images, eval_images))
    np.testing.assert_array_equal(train_rows, eval_rows)
