"""Decoding, crops and resizing (REFERENCE.md §5)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import preprocess

from imagedata import photo


def encode(image, image_format="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return tf.constant(buffer.getvalue())


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "BMP"])
def test_formats_decode_to_rgb_with_their_shape(image_format):
    image = photo("coffee", (80, 50))
    decoded = preprocess.decode(encode(image, image_format))
    assert decoded.shape == (50, 80, 3) and decoded.dtype == tf.uint8
    assert tuple(preprocess.image_shape(encode(image, image_format)).numpy()) == (50, 80)
    if image_format in ("PNG", "BMP"):  # lossless
        np.testing.assert_array_equal(decoded, image)


def test_grayscale_and_cmyk_become_rgb():
    gray = Image.fromarray(photo("coffee", (40, 30))).convert("L")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    decoded = preprocess.decode(tf.constant(buffer.getvalue())).numpy()
    assert decoded.shape == (30, 40, 3)
    np.testing.assert_array_equal(decoded[..., 0], np.asarray(gray))
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    cmyk = Image.fromarray(photo("coffee", (40, 30))).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    decoded = preprocess.decode(tf.constant(buffer.getvalue())).numpy().astype(int)
    assert decoded.shape == (30, 40, 3)
    assert np.abs(decoded - photo("coffee", (40, 30)).astype(int)).mean() < 12


def test_eval_center_crop_is_size_over_size_plus_32_of_the_short_side():
    # 256 x 320 image at 224: crop 224/256 * 256 = 224 pixels, centered.
    assert [int(v) for v in preprocess.center_crop_window(tf.constant([256, 320]), 224)] == [
        16, 48, 224, 224]
    image = np.zeros((256, 320, 3), np.uint8)
    image[16:240, 48:272] = 200  # exactly the crop window
    out = preprocess.preprocess_eval(encode(image, "PNG"), 224).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert out.min() == 200.0


def test_train_crop_areas_follow_the_settings():
    image = encode(np.zeros((200, 300, 3), np.uint8), "PNG")
    areas = []
    for i in range(200):
        crop = preprocess.decode_and_random_crop(image, 64, tf.constant([i, 5], tf.int64))
        areas.append(crop.shape[0] * crop.shape[1] / (200 * 300))
        ratio = crop.shape[1] / crop.shape[0]
        assert 0.7 <= ratio <= 1.4 or crop.shape[:2] == (150, 150)  # or the center fallback
    areas = np.array(areas)
    assert areas.min() >= 0.07 and areas.max() <= 1.0
    assert areas.std() > 0.1  # random areas, not one fixed crop


def test_train_crop_falls_back_to_the_center_crop_when_no_window_fits():
    # A 20 x 400 strip: no window of aspect 3/4..4/3 covers 10% of it -> whole image -> V1 falls
    # back to the eval center crop (20 * 64/96 = 13 pixel square); V2 keeps the whole image.
    strip = encode(np.zeros((20, 400, 3), np.uint8), "PNG")
    seed = tf.constant([1, 2], tf.int64)
    v1 = preprocess.decode_and_random_crop(strip, 64, seed, preprocess.V1_CROP)
    assert v1.shape == (13, 13, 3)
    strict_v2 = preprocess.CropSettings(area_range=(0.9, 1.0), center_fallback=False)
    assert preprocess.decode_and_random_crop(strip, 64, seed, strict_v2).shape == (20, 400, 3)


def test_train_preprocessing_is_seeded_uint8_of_the_stage_size():
    image = encode(photo("chelsea"))
    first = preprocess.preprocess_train(image, 96, tf.constant([7, 7], tf.int64))
    again = preprocess.preprocess_train(image, 96, tf.constant([7, 7], tf.int64))
    other = preprocess.preprocess_train(image, 96, tf.constant([8, 7], tf.int64))
    assert first.shape == (96, 96, 3) and first.dtype == tf.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bicubic_resize_stays_in_range():
    checker = np.indices((32, 32)).sum(axis=0) % 2 * 255
    image = np.repeat(checker[:, :, None], 3, axis=2).astype(np.uint8)
    out = preprocess.resize(tf.constant(image), 77, method="bicubic").numpy()
    assert out.min() >= 0.0 and out.max() <= 255.0 and out.shape == (77, 77, 3)
