"""EfficientDet: rows, BiFPN topology, fusion, resampling, heads, and exact parameter counts.

Trainable-parameter counts (90 classes) are google/automl efficientdet's own
(efficientdet_arch_test.py, as docs/reference.md §6 quotes them; D7x's derived by the same
rules); they do not depend on the input size, so the models are built small.
"""

import math

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.tasks.detection import anchors
from efficientnet_tf import info
from efficientnet_tf.models import bifpn, efficientdet, stats
from efficientnet_tf.specs import registry

AUTOML_PARAMETERS = {
    "efficientdet-d0": 3_880_067, "efficientdet-d1": 6_625_898, "efficientdet-d2": 8_097_039,
    "efficientdet-d3": 12_032_296, "efficientdet-d4": 20_723_675,
    "efficientdet-d5": 33_653_315, "efficientdet-d6": 51_871_782,
    "efficientdet-d7": 51_871_782, "efficientdet-d7x": 77_147_166,
}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if name >= "efficientdet-d4" else [])
    for name in AUTOML_PARAMETERS])
def test_parameter_counts_equal_automl(name):
    model = efficientdet.build(name, num_classes=90, image_size=(128, 128))
    assert efficientdet.trainable_parameters(model) == AUTOML_PARAMETERS[name]


def test_d0_parameters_by_component_and_class_count():
    """docs/reference.md §6's per-component split of D0, and other numbers of classes."""
    model = efficientdet.build("efficientdet-d0", num_classes=90, image_size=(128, 128))
    parts = {"backbone": 0, "p6": 0, "fpn_cell": 0, "class_net": 0, "box_net": 0}
    for layer in model.layers:
        part = next((key for key in parts if layer.name.startswith(key)), "backbone")
        parts[part] += sum(math.prod(v.shape) for v in layer.trainable_variables)
    assert parts == {"backbone": 3_595_388, "p6": 20_672, "fpn_cell": 175_609,
                     "class_net": 69_354, "box_net": 19_044}
    for classes, total in ((1, 3_828_002), (20, 3_839_117), (80, 3_874_217)):
        model = efficientdet.build("efficientdet-d0", num_classes=classes, image_size=(64, 64))
        assert efficientdet.trainable_parameters(model) == total


def test_the_rows_are_the_published_table():
    rows = {name: registry.get(name) for name in registry.detection_names()}
    assert [(r.image_size, r.backbone[-2:], r.fpn_width, r.fpn_repeats, r.head_repeats)
            for r in rows.values()] == [
        (512, "b0", 64, 3, 3), (640, "b1", 88, 4, 3), (768, "b2", 112, 5, 3),
        (896, "b3", 160, 6, 4), (1024, "b4", 224, 7, 4), (1280, "b5", 288, 7, 4),
        (1280, "b6", 384, 8, 5), (1536, "b6", 384, 8, 5), (1536, "b7", 384, 8, 5)]
    assert [r.fusion for r in rows.values()] == ["fast"] * 6 + ["sum"] * 3
    assert rows["efficientdet-d7"].anchor_scale == 5.0 and rows["efficientdet-d7x"].max_level == 8
    assert rows["efficientdet-d0"].backbone_survival_prob == 1.0  # no drop-connect in D0
    assert rows["efficientdet-d1"].backbone_survival_prob == 0.8
    # The paper's formulas give a row for any phi; integer phi match the table's pattern.
    phi3 = registry.get("efficientdet:phi=3")
    assert (phi3.image_size, phi3.fpn_width, phi3.fpn_repeats, phi3.head_repeats) == (
        896, 160, 6, 4)
    assert registry.get("efficientdet:phi=2.5").image_size == 832
    with pytest.raises(ValueError, match="did you mean 'efficientdet-d0'"):
        registry.get("efficientdet-d00")


def test_bifpn_nodes_are_automls():
    assert bifpn.bifpn_nodes(3, 7) == [
        (6, (3, 4)), (5, (2, 5)), (4, (1, 6)), (3, (0, 7)),
        (4, (1, 7, 8)), (5, (2, 6, 9)), (6, (3, 5, 10)), (7, (4, 11))]
    assert bifpn.bifpn_nodes(3, 8) == [
        (7, (4, 5)), (6, (3, 6)), (5, (2, 7)), (4, (1, 8)), (3, (0, 9)),
        (4, (1, 9, 10)), (5, (2, 8, 11)), (6, (3, 7, 12)), (7, (4, 6, 13)), (8, (5, 14))]


def test_fast_normalized_fusion_and_nearest_upsampling():
    a, b = np.full((1, 2, 2, 3), 2.0, "float32"), np.full((1, 2, 2, 3), 5.0, "float32")
    fusion = bifpn.WeightedFusion("fast")
    np.testing.assert_allclose(fusion([a, b]), (2 + 5) / (2 + 1e-4), rtol=1e-6)
    fusion.fusion_weights.assign([-1.0, 3.0])  # relu: the negative weight counts as 0
    np.testing.assert_allclose(fusion([a, b]), 5 * 3 / (3 + 1e-4), rtol=1e-6)
    assert np.allclose(bifpn.WeightedFusion("sum")([a, b]), 7.0)
    # TF1's nearest rule: output i takes input floor(i * in / out); 3 -> 5 rows 0 0 1 1 2.
    x = np.arange(3, dtype="float32").reshape(1, 3, 1, 1) * np.ones((1, 1, 2, 1), "float32")
    up = bifpn.NearestUpsample((5, 4))(x)
    assert up[0, :, 0, 0].numpy().tolist() == [0, 0, 1, 1, 2] and up.shape == (1, 5, 4, 1)


def test_odd_inputs_build_and_outputs_line_up_with_the_anchors():
    model = efficientdet.build("efficientdet-test", num_classes=5, image_size=(100, 70))
    settings = anchors.settings_of(registry.get("efficientdet-test"))
    outputs = model(np.zeros((2, 100, 70, 3), "float32"))
    for level, (height, width, per_location) in anchors.level_shapes((100, 70),
                                                                     settings).items():
        assert outputs[f"classes_{level}"].shape == (2, height, width, per_location * 5)
        assert outputs[f"boxes_{level}"].shape == (2, height, width, per_location * 4)
    # Every anchor starts at a 1% foreground probability.
    bias = model.get_layer("class_net_predict").bias.numpy()
    np.testing.assert_allclose(bias, -math.log(99), rtol=1e-6)
    probabilities = keras.ops.sigmoid(outputs["classes_3"]).numpy()
    assert 0.001 < probabilities.mean() < 0.1


def test_head_drop_connect_is_automls_option():
    plain = efficientdet.build("efficientdet-test", 3, image_size=(64, 64))
    spec = registry.DetectionSpec("efficientdet-two", "efficientnet-test", 64, 16, 1, 2,
                                  backbone_survival_prob=1.0)
    dropping = efficientdet.build(spec, 3, head_survival_prob=0.8)
    names = [layer.name for layer in dropping.layers]
    assert "class_net_drop1_level3" in names and "box_net_residual1_level7" in names
    assert not any("_drop" in layer.name for layer in plain.layers)
    images = np.zeros((4, 64, 64, 3), "float32")  # inference: no drop, the same every call
    np.testing.assert_allclose(dropping(images)["boxes_3"], dropping(images)["boxes_3"])


def test_a_classification_row_is_not_a_detector():
    with pytest.raises(ValueError, match="'efficientnet-b0' is not an EfficientDet row"):
        efficientdet.build("efficientnet-b0", num_classes=3)


def test_create_model_round_trips_and_builds_under_mixed_precision(tmp_path):
    model = efficientnet_tf.create_model("efficientdet-test", num_classes=4,
                                         input_shape=(96, 64, 3))
    images = np.random.RandomState(0).uniform(0, 255, (2, 96, 64, 3)).astype("float32")
    expected = model(images)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    path = str(tmp_path / "detector.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for other in (clone, loaded):
        outputs = other(images)
        for key, value in expected.items():
            np.testing.assert_allclose(outputs[key], value, rtol=1e-5, atol=1e-5)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = efficientnet_tf.create_model("efficientdet-test", num_classes=4)
        outputs = mixed(np.zeros((1, 128, 128, 3), "float32"))  # the row's own size
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {keras.backend.standardize_dtype(value.dtype) for value in outputs.values()} == {
        "float32"}
    assert mixed.get_layer("fpn_cell0_node0_conv").compute_dtype == "bfloat16"


def test_the_backbone_loads_keras_applications_weights(tmp_path):
    theirs = keras.applications.EfficientNetB0(weights=None, include_top=False,
                                               input_shape=(64, 64, 3))
    path = str(tmp_path / "efficientnetb0_notop.weights.h5")
    theirs.save_weights(path)
    detector = efficientnet_tf.create_model("efficientdet-d0", weights=path, num_classes=3,
                                            input_shape=(128, 128, 3))
    np.testing.assert_array_equal(detector.get_layer("block6d").project_conv.kernel.numpy(),
                                  theirs.get_layer("block6d_project_conv").kernel.numpy())
    np.testing.assert_array_equal(detector.get_layer("stem_bn").moving_variance.numpy(),
                                  theirs.get_layer("stem_bn").moving_variance.numpy())


def test_d0_macs_are_automls_and_odd_inputs_build():
    """Multiply-adds counted from the graph: google/automl's D0 at 512 is 2,550,618,821 and at
    (511, 513) 2,628,615,337 (docs/reference.md §6); their profiler counts a few elementwise
    ops differently, so within 2%."""
    line = info.detector_line(registry.get("efficientdet-d0"))
    name, params, gmacs, size, backbone, bifpn_size, head, levels = line.split()
    assert (name, params, size, backbone, bifpn_size, head, levels) == (
        "efficientdet-d0", "3,880,067", "512", "efficientnet-b0", "64x3", "3", "3-7")
    assert float(gmacs) == pytest.approx(2.5506, rel=0.02)
    odd = efficientdet.build("efficientdet-d0", 90, image_size=(511, 513))
    assert stats.count_macs(odd, (511, 513)) / 1e9 == pytest.approx(2.6286, rel=0.02)
