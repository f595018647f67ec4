"""Loading keras.applications weight files (legacy .h5 and Keras 3 .weights.h5) into our models."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

import efficientnet_tf
from efficientnet_tf.models import weights as weights_lib
from weightserver import refused_port
from efficientnet_tf.specs import registry

KERAS_APPLICATIONS = {
    "efficientnet-b0": "EfficientNetB0", "efficientnet-b1": "EfficientNetB1",
    "efficientnet-b2": "EfficientNetB2", "efficientnet-b3": "EfficientNetB3",
    "efficientnet-b4": "EfficientNetB4", "efficientnet-b5": "EfficientNetB5",
    "efficientnet-b6": "EfficientNetB6", "efficientnet-b7": "EfficientNetB7",
    "efficientnetv2-b0": "EfficientNetV2B0", "efficientnetv2-b1": "EfficientNetV2B1",
    "efficientnetv2-b2": "EfficientNetV2B2", "efficientnetv2-b3": "EfficientNetV2B3",
    "efficientnetv2-s": "EfficientNetV2S", "efficientnetv2-m": "EfficientNetV2M",
    "efficientnetv2-l": "EfficientNetV2L",
}
DEFAULT = {"efficientnet-b0", "efficientnetv2-b0", "efficientnetv2-s"}
SIZE = 64


def keras_model(name, include_top=True, seed=0):
    """A keras.applications model with random weights, BN statistics and ImageNet normalization.

    Residual branches get small BN scales (as zero-init residuals do) so that activations stay
    in range through the 79 blocks of V2-L: with exploding activations float32 round-off alone
    would make the two models disagree.
    """
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, KERAS_APPLICATIONS[name])(
        weights=None, include_top=include_top, input_shape=(SIZE, SIZE, 3),
        classifier_activation=None)
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            scale = (0.05, 0.2) if layer.name.endswith("project_bn") else (0.8, 1.2)
            layer.set_weights([rng.uniform(*scale, gamma.shape), rng.uniform(-0.1, 0.1, beta.shape),
                               rng.uniform(-0.1, 0.1, mean.shape),
                               rng.uniform(0.8, 1.2, variance.shape)])
        if isinstance(layer, keras.layers.Normalization) and layer.weights:
            # What the published V1 files hold: ImageNet mean/std of images in [0, 1].
            layer.set_weights([np.array([0.485, 0.456, 0.406]),
                               np.array([0.229, 0.224, 0.225]) ** 2, np.array(0)])
            layer.finalize_state()
    return model


def save_both_formats(model, directory):
    keras3 = str(directory / f"{model.name}.weights.h5")
    model.save_weights(keras3)
    legacy = str(directory / f"{model.name}.h5")
    with h5py.File(legacy, "w") as h5file:
        legacy_h5_format.save_weights_to_hdf5_group(h5file, model)
    return keras3, legacy


def images(count=2, size=SIZE):
    return np.random.RandomState(1).uniform(0, 255, (count, size, size, 3)).astype("float32")


@pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in KERAS_APPLICATIONS])
def test_same_logits_as_keras_applications_from_both_formats(name, tmp_path):
    theirs = keras_model(name)
    expected = theirs(images(), training=False).numpy()
    assert expected.std() > 0.01  # logits that tell weights apart, not a constant
    for path in save_both_formats(theirs, tmp_path):
        ours = efficientnet_tf.create_model(name, weights=path)
        got = ours(images(), training=False).numpy()
        assert np.abs(got - expected).max() <= 1e-4, path


def test_headless_files_into_headless_and_full_models(tmp_path):
    theirs = keras_model("efficientnetv2-b0", include_top=False)
    expected = theirs(images(), training=False).numpy()
    keras3, legacy = save_both_formats(theirs, tmp_path)
    for path in (keras3, legacy):
        headless = efficientnet_tf.create_model("efficientnetv2-b0", include_top=False,
                                                weights=path)
        np.testing.assert_allclose(headless(images(), training=False), expected, atol=1e-4)
        full = efficientnet_tf.create_model("efficientnetv2-b0", num_classes=5)
        report = weights_lib.load_weights(full, registry.get("efficientnetv2-b0"), path)
        assert report.skipped == [
            "predictions (not in the file: classifier left freshly initialised)"]
        features = keras.Model(full.input, full.get_layer("top_activation").output)
        np.testing.assert_allclose(features(images(), training=False), expected, atol=1e-4)


def test_other_number_of_classes_skips_only_the_classifier(tmp_path):
    theirs = keras_model("efficientnet-b0")
    _, legacy = save_both_formats(theirs, tmp_path)
    ours = efficientnet_tf.create_model("efficientnet-b0", num_classes=10)
    before = ours.get_layer("predictions").get_weights()
    report = weights_lib.load_weights(ours, registry.get("efficientnet-b0"), legacy)
    assert len(report.skipped) == 1 and report.skipped[0].startswith("predictions (file shapes")
    np.testing.assert_array_equal(ours.get_layer("predictions").get_weights()[0], before[0])
    np.testing.assert_array_equal(ours.get_layer("top_conv").get_weights()[0],
                                  theirs.get_layer("top_conv").get_weights()[0])


def test_headless_model_skips_the_head_of_a_full_file(tmp_path):
    keras3, _ = save_both_formats(keras_model("efficientnet-b0"), tmp_path)
    features = efficientnet_tf.create_model("efficientnet-b0", features_only=True)
    report = weights_lib.load_weights(features, registry.get("efficientnet-b0"), keras3)
    assert sorted(report.skipped) == [f"{n} (not in this headless model)"
                                      for n in ("predictions", "top_bn", "top_conv")]


@pytest.mark.parametrize("file_format", ["keras3", "legacy"])
def test_file_of_another_variant_is_a_clear_error_and_changes_nothing(file_format, tmp_path):
    keras3, legacy = save_both_formats(keras_model("efficientnet-b1"), tmp_path)
    ours = efficientnet_tf.create_model("efficientnet-b0")
    before = [w.copy() for w in ours.get_weights()]
    with pytest.raises(ValueError, match="another variant"):
        efficientnet_tf.models.weights.load_weights(
            ours, registry.get("efficientnet-b0"), keras3 if file_format == "keras3" else legacy)
    for old, new in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_v1_file_into_v2_model_is_a_clear_error(tmp_path):
    _, legacy = save_both_formats(keras_model("efficientnet-b0"), tmp_path)
    with pytest.raises(ValueError, match="has layer 'block1a_dwconv'.*another variant"):
        efficientnet_tf.create_model("efficientnetv2-b0", weights=legacy)


@pytest.mark.parametrize("file_format", ["keras3", "legacy"])
def test_truncated_file_is_a_clear_error(file_format, tmp_path):
    keras3, legacy = save_both_formats(keras_model("efficientnetv2-b0"), tmp_path)
    path = keras3 if file_format == "keras3" else legacy
    data = open(path, "rb").read()
    truncated = str(tmp_path / ("cut.weights.h5" if file_format == "keras3" else "cut.h5"))
    with open(truncated, "wb") as stream:
        stream.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read weights file .*truncated"):
        efficientnet_tf.create_model("efficientnetv2-b0", weights=truncated)


def test_missing_file_and_unreachable_imagenet_download(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        efficientnet_tf.create_model("efficientnet-test", weights=str(tmp_path / "nope.h5"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / "efficientnetv2-b0_notop.h5"
    with refused_port() as port:
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
        with pytest.raises(ValueError, match=f"cannot download http://127.0.0.1:.*/tensorflow/"
                           f"keras-applications/efficientnet_v2/efficientnetv2-b0_notop.h5: "
                           f".*put it at {cached}"):
            efficientnet_tf.create_model("efficientnetv2-b0", include_top=False,
                                         weights="imagenet")
    assert not cached.exists() and list((tmp_path / "models").iterdir()) == []
    with pytest.raises(ValueError, match="no ImageNet weights for 'efficientnet-b8'"):
        efficientnet_tf.create_model("efficientnet-b8", weights="imagenet")


def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch):
    theirs = keras_model("efficientnetv2-b0")
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / "efficientnetv2-b0.h5", "w") as h5file:
        legacy_h5_format.save_weights_to_hdf5_group(h5file, theirs)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ours = efficientnet_tf.create_model("efficientnetv2-b0", weights="imagenet")
    np.testing.assert_allclose(ours(images(), training=False), theirs(images(), training=False),
                               atol=1e-4)


def test_weights_from_a_non_local_filesystem(tmp_path):
    _, legacy = save_both_formats(keras_model("efficientnetv2-b0"), tmp_path)
    remote = "ram://weights/efficientnetv2-b0.h5"
    tf.io.gfile.makedirs("ram://weights")
    tf.io.gfile.copy(legacy, remote, overwrite=True)
    from_local = efficientnet_tf.create_model("efficientnetv2-b0", weights=legacy)
    from_ram = efficientnet_tf.create_model("efficientnetv2-b0", weights=remote)
    np.testing.assert_array_equal(from_ram(images()), from_local(images()))


def test_our_own_weights_file_round_trips(tmp_path):
    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=3)
    path = str(tmp_path / "ours.weights.h5")
    model.save_weights(path)
    loaded = efficientnet_tf.create_model("efficientnetv2-test", num_classes=3, weights=path)
    np.testing.assert_array_equal(loaded(images()), model(images()))
