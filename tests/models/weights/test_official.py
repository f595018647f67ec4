"""Official checkpoints (models/weights): the names derived for all 27 official architectures,
look-alike checkpoints that reproduce the official code's outputs through the public API, and
checkpoints that must not (scrambled, of another variant, incomplete).

The fixtures (tests/officialdata.py, tests/data/official/) give each official variable a value
computed from its name, and the official code's outputs with those values (SPEC of the project's
official-checkpoint fixtures). A look-alike holds those values as the released files do: EMA
shadows beside decoy plain values (V1), shadows only (L2), plain values; TF1 bundles, a .tgz,
automl's EfficientDet .h5.
"""

import hashlib
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import efficientnet_tf
import officialdata as od
import weightserver
from efficientnet_tf import pretrained
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models import weights as weights_lib
from efficientnet_tf.models.weights import official
from efficientnet_tf.specs import registry

FAST = {"efficientnet-b0", "efficientnetv2-b0", "efficientnetv2-s", "efficientdet-d0"}
SCALINGS = {"meanstd": "mean_std", "sym128": "sym128", "sym255": "sym255"}
TOLERANCE = 1e-4  # of max|reference|, per array; float32 round-off measured ~1e-6


def test_the_value_function_and_image_are_the_fixtures():
    checks = od.checks()
    key = checks["uniform"]["key"]
    assert zlib.crc32(key.encode()) == checks["uniform"]["crc32"]
    assert od.uniform_bits(key, 4).tolist() == checks["uniform"]["k_first4"]
    for entry, decoy in ([(v, False) for v in checks["values"]]
                         + [(v, True) for v in checks["decoys"]]):
        values = od.value(entry["name"], tuple(entry["shape"]), decoy=decoy)
        assert hashlib.sha256(values.astype("<f4").tobytes()).hexdigest() == (
            entry["sha256_float32_le"]), entry["name"]
    for size, entry in checks["images"].items():
        height, width = map(int, size.split("x"))
        digest = hashlib.sha256(od.image(height, width).astype("<f4").tobytes()).hexdigest()
        assert digest == entry["sha256_float32_le"]


@pytest.mark.parametrize("variant", [v if v in FAST else pytest.param(v, marks=pytest.mark.slow)
                                     for v in od.variants()])
def test_every_official_name_list_maps_completely(variant):
    """Our model of each official architecture and its official variable list: every name
    used, every model variable filled, every shape equal (no values needed: shapes only)."""
    spec = registry.get(variant)
    options = {"input_shape": (128, 128, 3)} if variant.startswith("efficientdet") else {}
    model = efficientnet_tf.create_model(variant, **options)
    names = dict(od.names(variant))
    plan = official.plan(model, spec, official.Store(names, None, variant))
    assert plan.problems == [] and plan.skipped == []
    used = {name for target, _ in plan.assignments for name in target.names}
    assert used == set(names)
    assert len(plan.assignments) == len(model.weights)


def reference_case(reference_id):
    info = {**od.references(), **od.references(generated=True)}[reference_id]
    return info["variant"], SCALINGS[info["normalization"]], od.reference_arrays(reference_id)


def outputs_of(model, images):
    """{reference array name: our output} of a classifier (logits, head features) or a
    detector (class_L, box_L)."""
    if isinstance(model.output, dict):
        found = model(images, training=False)
        return {key.replace("classes_", "class_").replace("boxes_", "box_"): value.numpy()
                for key, value in found.items()}
    features = keras.Model(model.input, [model.output, model.get_layer("top_activation").output])
    logits, head = features(images, training=False)
    return {"logits": logits.numpy(), "features": head.numpy()}


def errors(ours, reference, class_channels=None):
    """max|ours - reference| / max|reference| per reference array (of a detector's class
    outputs, the channels `class_channels` (start, stop, step) the reference kept)."""
    kept = slice(*class_channels) if class_channels else slice(None)
    return {key: float(np.abs((ours[key][..., kept] if key.startswith("class_") else ours[key])
                              - value).max() / np.abs(value).max())
            for key, value in reference.items()}


def write_lookalike(variant, directory, layout="ema", slots=("RMSProp",), prefix="model"):
    values = od.checkpoint_values(od.names(variant), layout, slots)
    return od.write_checkpoint(values, f"{directory}/{prefix}")


# How each reference's look-alike is stored: the layouts the releases use, one packed.
LOOKALIKES = {
    "efficientnet-b0.128x128.meanstd": ("ema", ("RMSProp", "RMSProp_1"), "model.ckpt", "folder"),
    "efficientnetv2-b0.128x128.meanstd": ("plain", (), "model", "prefix"),
    "efficientnetv2-b0.128x128.sym128": ("ema", ("RMSProp",), "model", "tgz"),
    "efficientdet-d0.128x128.meanstd": ("ema", ("Momentum",), "model", "folder"),
}


@pytest.mark.parametrize("reference_id", sorted(od.references()))
def test_lookalike_checkpoints_reproduce_the_official_outputs(reference_id, tmp_path):
    variant, scaling, reference = reference_case(reference_id)
    layout, slots, prefix, form = LOOKALIKES[reference_id]
    folder = tmp_path / variant
    path = write_lookalike(variant, str(folder), layout, slots, prefix)
    if form == "folder":
        path = str(folder)
    elif form == "tgz":
        path = od.pack(str(folder), str(tmp_path / f"{variant}.tgz"))
    options = {"input_shape": (128, 128, 3)} if variant.startswith("efficientdet") else {}
    model = efficientnet_tf.create_model(variant, weights=path, input_scaling=scaling, **options)
    measured = errors(outputs_of(model, od.image(128, 128)), reference)
    print(reference_id, measured)  # measured: 3e-7 (b0), 1e-6 (v2-b0), 9e-7 (d0)
    assert max(measured.values()) <= TOLERANCE, measured
    assert efficientnet.input_scaling_of(model) == scaling


@pytest.mark.parametrize("reference_id", sorted(od.references(generated=True)))
def test_other_sizes_scalings_and_variants_reproduce_the_official_code(reference_id, tmp_path):
    """References made here with the official code (tests/data/official/generated): non-square
    and odd detector inputs (96 x 160: 2 x 3 features upsampled to 3 x 5), EfficientDet-D1 and
    V2-B3 at x * 2 / 255 - 1, V2-S and V2-B1 at non-square sizes."""
    info = od.references(generated=True)[reference_id]
    variant, scaling, reference = reference_case(reference_id)
    height, width = info["input_height"], info["input_width"]
    path = write_lookalike(variant, str(tmp_path / variant), "ema", ("RMSProp",))
    options = ({"input_shape": (height, width, 3)} if variant.startswith("efficientdet")
               else {})
    model = efficientnet_tf.create_model(variant, weights=path, input_scaling=scaling, **options)
    images = od.image(height, width)
    ours = (outputs_of(model, images) if isinstance(model.output, dict)
            else {"logits": model(images, training=False).numpy()})
    measured = errors(ours, reference, info["class_channels_kept"])
    print(reference_id, measured)  # measured: at most 1.9e-6 (D1 at 128 x 192)
    assert max(measured.values()) <= TOLERANCE, measured


def test_shadows_only_like_l2_and_the_plain_values_are_not_read(tmp_path):
    _, scaling, reference = reference_case("efficientnet-b0.128x128.meanstd")
    path = write_lookalike("efficientnet-b0", str(tmp_path / "only"), "ema-only", ())
    model = efficientnet_tf.create_model("efficientnet-b0", weights=path)
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) <= TOLERANCE
    report = weights_lib.load_weights(model, "efficientnet-b0", path)
    assert report.notes == ["EMA shadows for 311 of 311 values"]
    # A plain file holding the decoys (what a loader that ignored the shadows would read).
    decoys = {name: od.value(name, shape, decoy=True) for name, shape in
              od.names("efficientnet-b0")}
    wrong = od.write_checkpoint(decoys, str(tmp_path / "decoys" / "model"))
    model = efficientnet_tf.create_model("efficientnet-b0", weights=wrong)
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) > 0.1


def swapped(values, first, second):
    values = dict(values)
    values[first], values[second] = values[second], values[first]
    return values


def test_a_scrambled_checkpoint_fails_the_comparison(tmp_path):
    """Two same-shaped kernels swapped (b0), a fusion node's weights reversed (d0): the load
    succeeds, the outputs no longer match, far beyond the tolerance: the comparison can fail."""
    _, _, reference = reference_case("efficientnet-b0.128x128.meanstd")
    values = od.checkpoint_values(od.names("efficientnet-b0"), "plain")
    first, second = (f"efficientnet-b0/blocks_{n}/conv2d/kernel" for n in (4, 5))
    assert values[first].shape == values[second].shape == (1, 1, 40, 240)
    path = od.write_checkpoint(swapped(values, first, second), str(tmp_path / "b0" / "model"))
    model = efficientnet_tf.create_model("efficientnet-b0", weights=path)
    measured = errors(outputs_of(model, od.image(128, 128)), reference)
    assert max(measured.values()) > 100 * TOLERANCE, measured

    _, _, reference = reference_case("efficientdet-d0.128x128.meanstd")
    values = od.checkpoint_values(od.names("efficientdet-d0"), "plain")
    node = "fpn_cells/cell_1/fnode4"
    values = swapped(values, f"{node}/WSM", f"{node}/WSM_2")
    path = od.write_checkpoint(values, str(tmp_path / "d0" / "model"))
    model = efficientnet_tf.create_model("efficientdet-d0", weights=path,
                                         input_shape=(128, 128, 3))
    measured = errors(outputs_of(model, od.image(128, 128)), reference)
    assert max(measured.values()) > 10 * TOLERANCE, measured


def test_automls_efficientdet_h5_reproduces_the_reference(tmp_path):
    _, _, reference = reference_case("efficientdet-d0.128x128.meanstd")
    values = {name: od.value(name, shape) for name, shape in od.names("efficientdet-d0")}
    path = od.write_detector_h5(values, str(tmp_path / "efficientdet-d0.h5"), {})
    model = efficientnet_tf.create_model("efficientdet-d0", weights=path,
                                         input_shape=(128, 128, 3))
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) <= TOLERANCE


def test_checkpoints_that_do_not_fit_are_refused_before_anything_changes(tmp_path):
    model = efficientnet_tf.create_model("efficientnet-b0")
    before = [w.copy() for w in model.get_weights()]
    other = write_lookalike("efficientnet-b1", str(tmp_path / "b1"), "plain", ())
    with pytest.raises(ValueError, match=r"does not fit efficientnet-b0 \(checkpoint scope "
                       r"'efficientnet-b1'\): .*variables of the model are not in it"):
        weights_lib.load_weights(model, "efficientnet-b0", other)
    values = od.checkpoint_values(od.names("efficientnet-b0"), "ema")
    lost = dict(values)
    del lost["efficientnet-b0/blocks_3/se/conv2d_1/bias/ExponentialMovingAverage"]
    del lost["efficientnet-b0/blocks_3/se/conv2d_1/bias"]
    incomplete = od.write_checkpoint(lost, str(tmp_path / "lost" / "model"))
    with pytest.raises(ValueError, match=r"1 variables of the model are not in it \(first: "
                       r"efficientnet-b0/blocks_3/se/conv2d_1/bias\)"):
        weights_lib.load_weights(model, "efficientnet-b0", incomplete)
    extra = {**values, "efficientnet-b0/blocks_16/conv2d/kernel": np.zeros((1, 1, 8, 8))}
    unexpected = od.write_checkpoint(extra, str(tmp_path / "extra" / "model"))
    with pytest.raises(ValueError, match=r"1 of its variables have no place in the model "
                       r"\(first: efficientnet-b0/blocks_16/conv2d/kernel\)"):
        weights_lib.load_weights(model, "efficientnet-b0", unexpected)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_another_number_of_classes_reinitialises_only_the_class_predictor(tmp_path):
    """A 21k-sized head into 10 classes (classifier), COCO's 90 into 3 (detector): the head is
    left fresh (and said so), everything else is the checkpoint's."""
    _, _, reference = reference_case("efficientnetv2-b0.128x128.sym128")
    values = od.checkpoint_values(od.names("efficientnetv2-b0"), "plain", classes=21843)
    path = od.write_checkpoint(values, str(tmp_path / "v2" / "model"))
    whole = efficientnet_tf.create_model("efficientnetv2-b0", weights=path)
    assert whole.output_shape == (None, 21843)  # the checkpoint's classes, unless told
    model = efficientnet_tf.create_model("efficientnetv2-b0", num_classes=10,
                                         input_scaling="sym128")
    report = weights_lib.load_weights(model, "efficientnetv2-b0", path)
    assert report.skipped == ["predictions (efficientnetv2-b0/head/dense/kernel is (1280, "
                              "21843) in the file, (1280, 10) here: another number of classes; "
                              "left freshly initialised)"]
    features = outputs_of(model, od.image(128, 128))["features"]
    assert float(np.abs(features - reference["features"]).max()) <= TOLERANCE * np.abs(
        reference["features"]).max()

    _, _, reference = reference_case("efficientdet-d0.128x128.meanstd")
    path = write_lookalike("efficientdet-d0", str(tmp_path / "d0"), "ema", ("Momentum",))
    detector = efficientnet_tf.create_model("efficientdet-d0", weights=path, num_classes=3,
                                            input_shape=(128, 128, 3))
    found = outputs_of(detector, od.image(128, 128))
    assert found["class_3"].shape == (1, 16, 16, 27)
    boxes = {key: value for key, value in reference.items() if key.startswith("box_")}
    assert max(errors(found, boxes).values()) <= TOLERANCE


def test_a_detector_takes_its_backbone_from_a_classifier_checkpoint(tmp_path):
    path = write_lookalike("efficientnet-b0", str(tmp_path / "b0"), "ema", ("RMSProp",))
    detector = efficientnet_tf.create_model("efficientdet-d0", weights=path, num_classes=4,
                                            input_shape=(128, 128, 3))
    np.testing.assert_array_equal(
        detector.get_layer("block6d").project_conv.kernel.numpy(),
        od.value("efficientnet-b0/blocks_14/conv2d_1/kernel", (1, 1, 1152, 192)))
    report = weights_lib.load_weights(detector, "efficientdet-d0", path)
    assert "fpn_cell0_node0_conv (the checkpoint is a classifier's: only the backbone is " \
           "loaded)" in report.skipped


def test_the_catalog_lists_every_release_by_name():
    names = efficientnet_tf.list_weights()
    assert len(names) == len(set(names)) == 78
    assert efficientnet_tf.list_weights("efficientnet_b0") == [
        "efficientnet-b0/baseline", "efficientnet-b0/autoaugment", "efficientnet-b0/advprop",
        "efficientnet-b0/noisy-student"]
    assert efficientnet_tf.list_weights("efficientnet-l2") == [
        "efficientnet-l2/noisy-student", "efficientnet-l2/noisy-student-475"]
    assert len(efficientnet_tf.list_weights("efficientdet-d0")) == 2  # coco, det-advprop
    checkpoint = weights_lib.catalog.find("efficientnet-l2/noisy-student-475")
    assert (checkpoint.eval_size, checkpoint.url) == (475, (
        "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/noisystudent/"
        "noisy_student_efficientnet-l2_475.tar.gz"))
    for checkpoint in weights_lib.catalog.checkpoints():  # every variant is a registry row
        assert registry.get(checkpoint.variant).name == checkpoint.variant
        assert checkpoint.url.startswith("https://storage.googleapis.com/cloud-tpu-checkpoints/")


def test_input_scaling_follows_the_checkpoint_and_contradictions_are_errors(tmp_path):
    assert weights_lib.implied_input_scaling(
        "efficientnetv2-s", "efficientnetv2-s/imagenet21k-ft1k") == "sym255"
    assert weights_lib.implied_input_scaling("efficientnet-b3", "advprop") == "sym255"
    assert weights_lib.implied_input_scaling("efficientdet-d2", "efficientdet-d2/coco") == (
        "mean_std")
    assert weights_lib.implied_input_scaling("efficientdet-d0", "efficientnet-b0/advprop") == (
        "sym255")  # a detector's backbone from a classifier checkpoint
    with pytest.raises(ValueError, match="input_scaling 'mean_std' contradicts weights "
                       "'efficientnetv2-s/imagenet21k-ft1k', which expect 'sym255'"):
        weights_lib.choose_input_scaling("efficientnetv2-s", "mean_std", "sym255",
                                         "weights 'efficientnetv2-s/imagenet21k-ft1k'")
    with pytest.raises(ValueError, match="checkpoint 'efficientnet-b4/noisy-student' holds "
                       "efficientnet-b4; this model is efficientnet-b0"):
        efficientnet_tf.create_model("efficientnet-b0", weights="efficientnet-b4/noisy-student")
    with pytest.raises(ValueError, match="unknown checkpoint 'efficientnet-b0/noisy': "
                       "efficientnet-b0 has baseline, autoaugment, advprop, noisy-student"):
        efficientnet_tf.create_model("efficientnet-b0", weights="efficientnet-b0/noisy")


def test_pretrained_exports_and_converted_files_keep_the_outputs(tmp_path):
    """The SavedModel of official weights (BN folded) gives the reference logits; a converted
    file (official names, its input scaling recorded) loads back whole."""
    variant, scaling, reference = reference_case("efficientnetv2-b0.128x128.sym128")
    path = write_lookalike(variant, str(tmp_path / "v2"), "ema", ("RMSProp",))
    export_dir = pretrained.export_pretrained(path, str(tmp_path / "export"), model_name=variant,
                                              input_scaling=scaling, image_size=128)
    served = tf.saved_model.load(export_dir).signatures["predict_images"]
    logits = served(images=tf.constant(od.image(128, 128)))["logits"].numpy()
    assert errors({"logits": logits}, {"logits": reference["logits"]})["logits"] <= TOLERANCE

    converted, attributes = pretrained.convert(path, str(tmp_path / "v2.weights.h5"), variant,
                                               scaling)
    assert attributes["input_scaling"] == "sym128" and attributes["num_classes"] == 1000
    model = efficientnet_tf.create_model(variant, weights=converted)  # scaling from the file
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) <= TOLERANCE

    _, _, reference = reference_case("efficientdet-d0.128x128.meanstd")
    path = write_lookalike("efficientdet-d0", str(tmp_path / "d0"), "plain", ())
    _, module = pretrained.serving(path, "efficientdet-d0", image_size=128)
    folded = {key.replace("classes_", "class_").replace("boxes_", "box_"): value.numpy()
              for key, value in module.model(od.image(128, 128), training=False).items()}
    assert max(errors(folded, reference).values()) <= TOLERANCE


def test_an_unpacked_official_folder_by_its_relative_prefix(tmp_path, monkeypatch):
    """'efficientnetv2-b0/model', as the official tutorials name the unpacked checkpoint, is a
    path, not a mistyped name."""
    monkeypatch.chdir(tmp_path)
    write_lookalike("efficientnetv2-b0", "efficientnetv2-b0", "plain", ())
    _, scaling, reference = reference_case("efficientnetv2-b0.128x128.sym128")
    model = efficientnet_tf.create_model("efficientnetv2-b0", weights="efficientnetv2-b0/model",
                                         input_scaling=scaling)
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) <= TOLERANCE
    with pytest.raises(ValueError, match="unknown checkpoint 'efficientnetv2-b0/modle'"):
        efficientnet_tf.create_model("efficientnetv2-b0", weights="efficientnetv2-b0/modle")


def test_a_path_wins_over_an_official_name_that_reads_the_same(tmp_path, monkeypatch):
    """A run or checkpoint folder named like a release ('efficientnet-b0/baseline') is loaded
    from disk, not downloaded (the mirror refuses every connection here)."""
    monkeypatch.chdir(tmp_path)
    write_lookalike("efficientnet-b0", "efficientnet-b0/baseline", "ema", ("RMSProp",))
    _, _, reference = reference_case("efficientnet-b0.128x128.meanstd")
    with weightserver.refused_port() as port:
        monkeypatch.setenv("EFFICIENTNET_TF_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
        model = efficientnet_tf.create_model("efficientnet-b0", weights="efficientnet-b0/baseline")
    assert max(errors(outputs_of(model, od.image(128, 128)), reference).values()) <= TOLERANCE


def test_weights_refuse_a_model_of_another_input_scaling(tmp_path):
    path = write_lookalike("efficientnetv2-b0", str(tmp_path / "v2"), "plain", ())
    converted, _ = pretrained.convert(path, str(tmp_path / "ft.weights.h5"), "efficientnetv2-b0",
                                      "sym255")
    model = efficientnet_tf.create_model("efficientnetv2-b0")  # the row's mean_std
    with pytest.raises(ValueError, match="were trained with input scaling 'sym255'; this model "
                       "applies 'mean_std': build it with input_scaling='sym255'"):
        weights_lib.load_weights(model, "efficientnetv2-b0", converted)


def test_serving_and_converting_refuse_weights_that_leave_layers_untrained(tmp_path):
    """A classifier's checkpoint into a detector trains its backbone only: exporting or
    converting that would pass random heads off as pretrained ones."""
    path = write_lookalike("efficientnet-b0", str(tmp_path / "b0"), "plain", ())
    with pytest.raises(ValueError, match=r"leave \d+ layers of efficientdet-d0 untrained "
                       r"\(first: .*\); export, predict and convert take whole models"):
        pretrained.convert(path, str(tmp_path / "d0.weights.h5"), "efficientdet-d0")
    assert not (tmp_path / "d0.weights.h5").exists()


def test_a_multi_label_head_serves_sigmoid_probabilities():
    """The ImageNet-21k checkpoints were trained with a sigmoid loss: their exports give each
    class its own probability; the others a softmax."""
    assert weights_lib.catalog.find("efficientnetv2-s/imagenet21k").release.probabilities == (
        "sigmoid")
    assert weights_lib.catalog.find("efficientnetv2-s/imagenet21k-ft1k").release.probabilities \
        == "softmax"
    from efficientnet_tf.tasks.classification import task as classification

    model = efficientnet_tf.create_model("efficientnet-test", num_classes=4)
    images = tf.constant(od.image(64, 64))
    for probabilities, expected in (("sigmoid", tf.sigmoid), ("softmax", tf.nn.softmax)):
        module = classification.ClassificationTask.pretrained_serving_module(
            model, registry.get("efficientnet-test"), 64, probabilities=probabilities)
        found = module.predict_images(images)
        np.testing.assert_allclose(found["probabilities"], expected(found["logits"]), atol=1e-6)
        assert module.metadata["probabilities"] == probabilities
