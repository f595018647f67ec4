"""Decoding, crops and resizing (docs/reference.md §5)."""

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
    out = preprocess.preprocess_eval(encode(image, "PNG"), preprocess.EvalTransform(224)).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert out.min() == 200.0


@pytest.mark.parametrize("train_crop, size, crop, fraction", [
    ("v1", 224, True, 224 / 256), ("v1", 600, True, 600 / 632),  # tensorflow/tpu: any size
    ("v2", 300, True, 300 / 332), ("v2", 319, True, 319 / 351),  # automl: crop below 320 ...
    ("v2", 320, False, 1.0), ("v2", 384, False, 1.0),  # ... the whole image from 320 on
    ("whole", 384, False, 1.0), ("whole", 64, False, 1.0)])  # automl fine-tuning: no crop
def test_one_function_decides_the_eval_transform_as_the_official_codes(train_crop, size, crop,
                                                                       fraction):
    transform = preprocess.eval_transform(train_crop, size, "bilinear")
    assert (transform.image_size, transform.crop) == (size, crop)
    assert transform.fraction == pytest.approx(fraction)
    explicit = preprocess.eval_transform(train_crop, size, "bicubic", crop_fraction=1.0)
    assert (explicit.crop, explicit.fraction, explicit.resize_method) == (True, 1.0, "bicubic")
    with pytest.raises(ValueError, match="unknown train crop 'v3'"):
        preprocess.eval_transform("v3", size, "bilinear")


def test_whole_image_transforms_resize_without_cropping():
    """A 60 x 120 image in three vertical bands of 40 columns: 0, 100, 250. Resized whole to
    30 x 30, each band is 10 columns (aspect not kept); the center square (columns 30-90) shows
    the middle band over 20 of its 30 columns."""
    image = np.zeros((60, 120, 3), np.uint8)
    image[:, 40:80], image[:, 80:] = 100, 250
    data = encode(image, "PNG")
    whole = preprocess.preprocess_eval(data, preprocess.EvalTransform(30, crop=False)).numpy()
    np.testing.assert_allclose(whole[:, [0, 8]], 0.0, atol=1e-3)
    np.testing.assert_allclose(whole[:, [11, 18]], 100.0, atol=1e-3)
    np.testing.assert_allclose(whole[:, [21, 29]], 250.0, atol=1e-3)
    square = preprocess.preprocess_eval(data, preprocess.EvalTransform(30, True, 1.0)).numpy()
    assert (np.isclose(square[0, :, 0], 100.0).sum() >= 18) and square[0, 0, 0] < 50
    train = preprocess.preprocess_train(data, 30, tf.constant([1, 2], tf.int64), crop=None,
                                        flip=False).numpy()
    np.testing.assert_array_equal(train, np.round(whole).astype(np.uint8))


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


def test_train_crops_are_the_official_ones():
    """tensorflow/tpu preprocessing._decode_and_random_crop (V1, and automl's legacy path for
    V2-B0..B3): area 0.08-1, aspect 3/4-4/3, min_object_covered 0.1, 10 attempts, center-crop
    fallback. automl preprocessing.preprocess_for_train (V2): area 0.05-1, min_object_covered 0,
    TF's defaults otherwise (aspect 0.75-1.33, 100 attempts), the whole image on failure."""
    v1, v2 = preprocess.V1_CROP, preprocess.V2_CROP
    assert (v1.area_range, v1.aspect_ratio_range, v1.min_object_covered, v1.max_attempts,
            v1.center_fallback) == ((0.08, 1.0), (3 / 4, 4 / 3), 0.1, 10, True)
    assert (v2.area_range, v2.aspect_ratio_range, v2.min_object_covered, v2.max_attempts,
            v2.center_fallback) == ((0.05, 1.0), (0.75, 1.33), 0.0, 100, False)
    assert preprocess.TRAIN_CROPS == {"v1": v1, "v2": v2, "whole": None,
                                      "pad": preprocess.PadCrop(0.125)}


def test_pad_crop_translates_the_whole_picture_by_at_most_an_eighth():
    """40 x 40 picture: each training image is it shifted by (dy, dx) in [-5, 5] (5 = 40 / 8),
    the uncovered border reflected; the shifts vary with the seed."""
    image = photo("astronaut", (40, 40))
    data = encode(image, "PNG")
    shifts = set()
    for index in range(12):
        out = preprocess.preprocess_train(data, 40, tf.constant([index, 7], tf.int64),
                                          crop=preprocess.PadCrop(), flip=False).numpy()
        found = [(dy, dx) for dy in range(-5, 6) for dx in range(-5, 6)
                 if np.array_equal(out[max(dy, 0):40 + min(dy, 0), max(dx, 0):40 + min(dx, 0)],
                                   image[max(-dy, 0):40 + min(-dy, 0),
                                         max(-dx, 0):40 + min(-dx, 0)])]
        assert len(found) == 1, found
        shifts.add(found[0])
    assert len(shifts) > 4
    assert preprocess.eval_transform("pad", 40, "bilinear").crop is False  # eval: the whole


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_decoded_pixels_give_the_crops_of_the_encoded_image(image_format):
    """The in-memory cache hands decoded pixels to the same functions: same windows, same
    pixels (PNG); a JPEG decoded inside its window rounds differently at a few pixels."""
    encoded = encode(photo("astronaut", (120, 90)), image_format)
    pixels = preprocess.decode(encoded)
    assert preprocess.decode(pixels) is pixels
    np.testing.assert_array_equal(preprocess.image_shape(pixels), [90, 120])
    for index in range(8):
        seed = tf.constant([index, 3], tf.int64)
        for crop in (preprocess.V1_CROP, preprocess.V2_CROP, None, preprocess.PadCrop()):
            from_bytes = preprocess.preprocess_train(encoded, 48, seed, crop).numpy()
            from_pixels = preprocess.preprocess_train(pixels, 48, seed, crop).numpy()
            difference = np.abs(from_bytes.astype(int) - from_pixels.astype(int))
            if image_format == "PNG":
                assert difference.max() == 0
            else:
                assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 2
        transform = preprocess.EvalTransform(48)
        np.testing.assert_allclose(preprocess.preprocess_eval(encoded, transform),
                                   preprocess.preprocess_eval(pixels, transform),
                                   atol=0 if image_format == "PNG" else 32)
