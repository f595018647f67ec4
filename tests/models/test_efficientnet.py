"""The built models: exact parameter counts, normalization, endpoints, precision, serialization."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.models import blocks, efficientnet, weights
from efficientnet_tf.specs import registry

# docs/reference.md §2-3: V1 = keras.applications minus its 7 Normalization values; V2 = official.
PARAMS = {
    "efficientnet-b0": 5_330_564, "efficientnet-b1": 7_856_232, "efficientnet-b2": 9_177_562,
    "efficientnet-b3": 12_320_528, "efficientnet-b4": 19_466_816, "efficientnet-b5": 30_562_520,
    "efficientnet-b6": 43_265_136, "efficientnet-b7": 66_658_680,
    "efficientnetv2-b0": 7_200_312, "efficientnetv2-b1": 8_212_124,
    "efficientnetv2-b2": 10_178_374, "efficientnetv2-b3": 14_467_622,
    "efficientnetv2-s": 21_612_360, "efficientnetv2-m": 54_431_388,
    "efficientnetv2-l": 119_027_848, "efficientnetv2-xl": 208_896_832,
}
# b8 and l2 by the same rules. Cross-check: their trainable counts (no BN statistics) equal the
# ones timm publishes for its ports of the official checkpoints, tf_efficientnet_b8 87.41M and
# tf_efficientnet_l2 480.31M.
COMPUTED = {"efficientnet-b8": (87_793_174, 87_413_142),
            "efficientnet-l2": (481_399_996, 480_309_308)}
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
BIG = {"efficientnet-b4", "efficientnet-b5", "efficientnet-b6", "efficientnet-b7",
       "efficientnetv2-m", "efficientnetv2-l", "efficientnetv2-xl"}


def _leaves(model):
    return list(weights.weighted_layers(model))


def _maybe_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


@pytest.mark.parametrize("name", _maybe_slow(PARAMS))
def test_parameter_count_is_exact_and_equals_keras_applications(name):
    ours = efficientnet_tf.create_model(name)
    assert ours.count_params() == PARAMS[name]
    if name not in KERAS_APPLICATIONS:
        return
    theirs = getattr(keras.applications, KERAS_APPLICATIONS[name])(weights=None)
    normalization_values = 7 if name.startswith("efficientnet-") else 0
    assert ours.count_params() == theirs.count_params() - normalization_values
    # Layer by layer, under the same names (keras calls the V2 depthwise conv `dwconv2`).
    theirs_by_name = {layer.name.replace("dwconv2", "dwconv"): layer for layer in theirs.layers
                      if layer.weights}
    theirs_by_name.pop("normalization", None)
    ours_by_name = {layer.name: layer for layer in _leaves(ours)}
    assert sorted(ours_by_name) == sorted(theirs_by_name)
    for layer_name, layer in ours_by_name.items():
        assert [tuple(w.shape) for w in layer.weights] == [
            tuple(w.shape) for w in theirs_by_name[layer_name].weights], layer_name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in COMPUTED])
def test_parameter_count_of_b8_and_l2(name):
    model = efficientnet_tf.create_model(name)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == COMPUTED[name]


def test_input_scalings_inside_the_model():
    mean_std = efficientnet.normalization_layer(registry.get("efficientnet-b0").normalization)
    pixel = np.array([[[[0.485 * 255, 0.456 * 255, 0.406 * 255]]]], "float32")
    np.testing.assert_allclose(mean_std(pixel), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        mean_std(pixel + np.array([0.229, 0.224, 0.225], "float32") * 255), 1.0, rtol=1e-5)
    sym128 = efficientnet.normalization_layer(registry.get("efficientnetv2-s").normalization)
    np.testing.assert_allclose(sym128(np.array([[[[0.0, 128.0, 255.0]]]], "float32")),
                               [[[[-1.0, 0.0, 127 / 128]]]])
    sym255 = efficientnet.normalization_layer("sym255")  # AdvProp: x * 2 / 255 - 1
    np.testing.assert_allclose(sym255(np.array([[[[0.0, 127.5, 255.0]]]], "float32")),
                               [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    assert registry.get("efficientnetv2-b0").normalization == "mean_std"  # B0-B3 as V1
    for scaling in registry.INPUT_SCALINGS:  # the colour each maps to 0 (detectors pad with it)
        zero = np.array(registry.zero_colour(scaling), "float32").reshape(1, 1, 1, 3)
        np.testing.assert_allclose(efficientnet.normalization_layer(scaling)(zero), 0.0,
                                   atol=1e-5)
    with pytest.raises(ValueError, match="input_scaling 'sym127'; use one of mean_std"):
        efficientnet.normalization_layer("sym127")


def test_input_scaling_option_is_recorded_and_changes_the_model():
    default = efficientnet_tf.create_model("efficientnet-test")
    advprop = efficientnet_tf.create_model("efficientnet-test", input_scaling="sym255")
    advprop.set_weights(default.get_weights())
    images = np.random.RandomState(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    logits = default(images).numpy()
    assert np.abs(logits - advprop(images)).max() > 0.1 * np.abs(logits).max()
    assert [efficientnet.input_scaling_of(efficientnet_tf.create_model(
        "efficientnet-test", input_scaling=scaling)) for scaling in registry.INPUT_SCALINGS] == [
        "mean_std", "sym128", "sym255"]
    options = efficientnet.ModelOptions.from_kwargs(input_scaling="sym255")
    assert efficientnet.ModelOptions.from_dict(options.to_dict()).input_scaling == "sym255"


def test_batch_norm_settings_per_family():
    for name, momentum in (("efficientnet-test", 0.99), ("efficientnetv2-test", 0.9)):
        model = efficientnet_tf.create_model(name)
        norms = [layer for layer in _leaves(model)
                 if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and {(norm.momentum, norm.epsilon) for norm in norms} == {(momentum, 1e-3)}


def test_survival_probability_decays_linearly_over_all_blocks():
    spec = registry.get("efficientnet-b0")
    model = efficientnet_tf.create_model(spec)
    block_layers = [layer for layer in model.layers
                    if isinstance(layer, (blocks.MBConv, blocks.FusedMBConv))]
    assert len(block_layers) == spec.num_blocks == 16
    for index, block in enumerate(block_layers):
        assert block.survival_prob == pytest.approx(1 - 0.2 * index / 16)
        assert (block.drop is not None) == (block.strides == 1 and
                                           block.input_filters == block.output_filters)
    assert sum(b.drop is not None for b in block_layers) == 9
    assert efficientnet_tf.create_model(spec, survival_prob=0.5).get_layer(
        "block7a").survival_prob == pytest.approx(1 - 0.5 * 15 / 16)


@pytest.mark.parametrize("size", [32, 61, 100])
def test_any_input_size(size):
    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=7)
    assert model(np.zeros((2, size, size, 3), "float32")).shape == (2, 7)


def test_fixed_input_shape_and_headless_models():
    model = efficientnet_tf.create_model("efficientnet-test", input_shape=(64, 64, 3),
                                         include_top=False)
    assert model.output_shape == (None, 2, 2, 320)
    pooled = efficientnet_tf.create_model("efficientnet-test", include_top=False, pooling="avg")
    assert pooled.output_shape == (None, 320)
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, 3\)"):
        efficientnet_tf.create_model("efficientnet-test", input_shape=(64, 64))


@pytest.mark.parametrize("name, channels", [
    ("efficientnet-b0", (16, 24, 40, 112, 320)), ("efficientnetv2-s", (24, 48, 64, 160, 256))])
def test_feature_endpoints_at_strides_2_to_32(name, channels):
    features = efficientnet_tf.create_model(name, features_only=True)
    outputs = features(np.zeros((1, 128, 96, 3), "float32"))
    assert list(outputs) == [f"stride_{s}" for s in (2, 4, 8, 16, 32)]
    for (stride, tensor), depth in zip(((int(k.split("_")[1]), v) for k, v in outputs.items()),
                                       channels):
        assert tensor.shape == (1, 128 // stride, 96 // stride, depth)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_low_keeps_float32_logits_and_statistics(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=5)
    logits = model(np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"),
                   training=True)
    assert logits.dtype == "float32" and np.isfinite(logits.numpy()).all()
    block = model.get_layer("block4a")
    assert block.dtype_policy.compute_dtype == policy.split("_")[1]
    assert block.dwconv.kernel.dtype == "float32"
    assert {w.dtype for w in block.bn.weights} == {"float32"}
    features = keras.Model(model.input, model.get_layer("top_activation").output)
    assert features(np.zeros((1, 64, 64, 3), "float32")).dtype == policy.split("_")[1]


def test_config_and_keras_file_round_trip(tmp_path):
    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=3, dropout_rate=0.1)
    images = np.random.RandomState(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(images), model(images))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(images), model(images))
    assert loaded.get_layer("top_dropout").rate == 0.1
    assert isinstance(loaded.get_layer("block2a"), blocks.FusedMBConv)


@pytest.mark.parametrize("first", ["import keras", "import tensorflow", ""])
def test_a_keras_file_loads_after_importing_the_package(tmp_path, first):
    """`keras.models.load_model` finds our layers once the package is imported after Keras or
    TensorFlow; `efficientnet_tf.load_model` whatever was imported before."""
    path = str(tmp_path / "model.keras")
    efficientnet_tf.create_model("efficientnetv2-test", num_classes=3).save(path)
    loader = "keras.models.load_model" if first else "efficientnet_tf.load_model"
    script = (f"{first}\nimport efficientnet_tf\nimport keras\n"
              f"model = {loader}({path!r})\n"
              "print(type(model.get_layer('block2a')).__name__)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "FusedMBConv"


def test_keras_applications_names_work():
    model = efficientnet_tf.create_model("efficientnetv2-test", classes=7,
                                         include_preprocessing=True)
    assert model.output_shape == (None, 7)
    detector = efficientnet_tf.create_model("efficientdet-test", classes=2)
    assert detector.output["classes_3"].shape[-1] == 2 * 9
    with pytest.raises(TypeError, match="num_classes or classes"):
        efficientnet_tf.create_model("efficientnetv2-test", classes=7, num_classes=7)
    with pytest.raises(ValueError, match=r"include_preprocessing=False: .* \[0, 255\]"):
        efficientnet_tf.create_model("efficientnetv2-test", include_preprocessing=False)


def test_list_models_names_classifiers_and_detectors():
    names = efficientnet_tf.list_models()
    assert names[0] == "efficientnet-b0" and names[-1] == "efficientdet-d7x"
    assert "efficientnetv2-s" in names and "efficientdet-d0" in names
    assert efficientnet_tf.list_models("efficientdet")[:2] == ["efficientdet-d0",
                                                               "efficientdet-d1"]
    assert efficientnet_tf.list_models("efficientnetv2")[-1] == "efficientnetv2-xl"
    with pytest.raises(ValueError, match="unknown family 'v3'; use 'efficientnet', "):
        efficientnet_tf.list_models("v3")


def test_create_model_accepts_a_spec():
    spec = registry.compound_scale(0.5, base="efficientnet-test")
    model = efficientnet_tf.create_model(spec, num_classes=4)
    assert model.output_shape == (None, 4)
