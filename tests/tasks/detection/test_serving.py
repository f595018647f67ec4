"""A detector's SavedModel (serving.DetectionServingModule): image bytes of any size in, boxes in
the original image's pixels out, the same as the Keras model through the evaluation's
transform; per-class hard NMS by default (recorded in the metadata), soft-NMS by option; bad
requests named by index; a ram:// export; a TF Serving REST body; predict with --draw; TFLite
with TFLite's detection op."""

import base64
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf import serving
from efficientnet_tf.tasks.detection import serving as detection_serving
from efficientnet_tf.tasks.detection import tflite as detection_tflite
from efficientnet_tf import predict
from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import inputs as detection_inputs, postprocess
from efficientnet_tf.models import efficientdet, fold
from efficientnet_tf.models.weights import weighted_layers

from imagedata import photo
from test_export import bad_request_mix, encoded

SIZE = 128
NAMES = ["digit", "coin", "cat"]


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(0)
    model = efficientdet.build("efficientdet-test", len(NAMES), (SIZE, SIZE))
    anchors = anchors_lib.settings_of("efficientdet-test")
    module = detection_serving.DetectionServingModule(model, SIZE, anchors, class_names=NAMES,
                                           metadata={"model": "efficientdet-test"})
    path = serving.save_module(module, "ram://detection_export/hard")
    return {"model": model, "anchors": anchors, "path": path,
            "serve": tf.saved_model.load(path).signatures["serving_default"]}


def requests():
    """Photos of different sizes and aspect ratios, in every format the signature takes."""
    return {"wide.jpg": encoded(photo("coffee", (200, 90))),
            "tall.png": encoded(photo("astronaut", (70, 150)), "PNG"),
            "gray.png": encoded(photo("chelsea", (96, 96)), "PNG", "L"),
            "small.bmp": encoded(photo("coffee", (40, 30)), "BMP")}


def expected_detections(detector, data, nms=postprocess.SERVING_NMS):
    """Independently of the module: the evaluation's resize-to-fit, the Keras model, detect,
    and the boxes divided by the scale."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    fitted, scale = detection_inputs.resize_to_fit(tf.cast(image, tf.float32), SIZE)
    outputs = detector["model"](fitted[None], training=False)
    logits, codes = postprocess.flatten(outputs, len(NAMES))
    anchors = anchors_lib.generate((SIZE, SIZE), detector["anchors"])
    # the image's extent in the fitted input: boxes are clipped to it before the NMS
    extent = tf.cast(tf.shape(image)[:2], tf.float32)[None] * scale
    found = postprocess.detect(logits, codes, anchors, nms, extent)
    count = int(found["num_detections"][0])
    boxes = found["boxes"][0, :count].numpy() / float(scale)
    return boxes, found["scores"][0, :count].numpy(), found["classes"][0, :count].numpy(), \
        image.shape[:2]


def iou(a, b):
    height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = height * width
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_boxes_in_original_pixels_match_the_keras_model(detector):
    data = list(requests().values())
    served = detector["serve"](image_bytes=tf.constant(data))
    assert served["boxes"].shape == (4, 100, 4) and served["scores"].shape == (4, 100)
    for index, item in enumerate(data):
        boxes, scores, classes, (height, width) = expected_detections(detector, item)
        count = int(served["num_detections"][index])
        assert count == len(scores) > 0
        np.testing.assert_allclose(served["scores"][index, :count], scores, rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_array_equal(served["classes"][index, :count], classes)
        got = served["boxes"][index, :count].numpy()
        np.testing.assert_allclose(got, boxes, atol=1e-3 * max(height, width))
        assert got.min() >= 0 and got[:, 2].max() <= height and got[:, 3].max() <= width
        names = [n.decode() for n in served["class_names"][index].numpy()]
        assert names[:count] == [NAMES[c] for c in classes]
        assert set(names[count:]) <= {""}
        assert (served["classes"][index, count:].numpy() == -1).all()


def test_detect_from_python_gives_the_boxes_in_each_image_s_pixels(detector):
    """efficientnet_tf.detect: what a Keras user calls on a detector, bytes or arrays of any
    size in, the served detections out (keras-hub's detectors' predict)."""
    import efficientnet_tf

    data = list(requests().values())
    arrays = [tf.io.decode_image(item, channels=3, expand_animations=False).numpy()
              for item in data]
    assert detector["model"].name == "efficientdet_test"  # the row, from the model's name
    for given in (data, arrays):
        found = efficientnet_tf.detect(detector["model"], given, min_score=0.0,
                                       class_names=NAMES)
        assert len(found) == len(data)
        for item, result in zip(data, found):
            boxes, scores, classes, _ = expected_detections(detector, item)
            np.testing.assert_allclose(result["scores"], scores, rtol=1e-4, atol=1e-6)
            np.testing.assert_array_equal(result["classes"], classes)
            np.testing.assert_allclose(result["boxes"], boxes, atol=0.2)
            assert result["labels"] == [NAMES[c] for c in classes]
    (every,) = efficientnet_tf.detect(detector["model"], arrays[0], min_score=0.0)
    threshold = float(np.median(every["scores"]))
    (one,) = efficientnet_tf.detect(detector["model"], arrays[0], min_score=threshold)
    assert len(one["scores"]) == int((every["scores"] >= threshold).sum()) > 0
    assert "labels" not in one


def test_hard_nms_leaves_no_two_boxes_of_a_class_above_the_iou_threshold(detector):
    """On a 200 x 90 photo (fitted: 128 x 58, padding below)."""
    served = detector["serve"](image_bytes=tf.constant([requests()["wide.jpg"]]))
    count = int(served["num_detections"][0])
    boxes, classes = served["boxes"][0, :count].numpy(), served["classes"][0, :count].numpy()
    scores = served["scores"][0, :count].numpy()
    assert (np.diff(scores) <= 1e-7).all()  # best first
    # clipped to the image before the NMS; a box that lay in the padding below it is gone
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert boxes[:, 2].max() <= 90 and boxes[:, 3].max() <= 200
    for i in range(count):
        for j in range(i + 1, count):
            if classes[i] == classes[j]:
                assert iou(boxes[i], boxes[j]) <= 0.5 + 1e-4


def test_the_metadata_records_the_nms_and_soft_nms_is_an_option(detector):
    metadata = serving.read_metadata(detector["path"])
    assert metadata["task"] == "detection" and metadata["model"] == "efficientdet-test"
    assert metadata["box_order"] == "ymin,xmin,ymax,xmax" and metadata["num_classes"] == 3
    assert metadata["nms"]["method"] == "hard" and metadata["nms"]["iou_threshold"] == 0.5
    assert metadata["nms"]["score_threshold"] == 0.001
    assert serving.read_labels(detector["path"]) == NAMES
    soft = detection_serving.DetectionServingModule(detector["model"], SIZE, detector["anchors"],
                                         postprocess.EVAL_NMS, NAMES)
    data = requests()["tall.png"]
    served = soft.serve_bytes(tf.constant([data]))
    _, scores, classes, _ = expected_detections(detector, data, postprocess.EVAL_NMS)
    count = int(served["num_detections"][0])
    np.testing.assert_allclose(served["scores"][0, :count], scores, rtol=1e-4, atol=1e-6)
    assert soft.metadata["nms"]["method"] == "gaussian"


def test_predict_uint8_takes_fitted_images_and_returns_input_pixels(detector):
    loaded = tf.saved_model.load(detector["path"])
    image = tf.io.decode_image(requests()["wide.jpg"], channels=3)
    fitted, _ = detection_inputs.resize_to_fit(tf.cast(image, tf.float32), SIZE)
    uint8 = tf.cast(tf.round(fitted), tf.uint8)[None]
    found = loaded.signatures["predict_uint8"](images=uint8)
    outputs = detector["model"](tf.cast(uint8, tf.float32), training=False)
    expected = postprocess.detect(*postprocess.flatten(outputs, len(NAMES)), anchors_lib.generate(
        (SIZE, SIZE), detector["anchors"]), postprocess.SERVING_NMS, [[SIZE, SIZE]])
    np.testing.assert_allclose(found["boxes"], expected["boxes"], atol=1e-3)
    np.testing.assert_allclose(found["scores"], expected["scores"], atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (b"", r"image_bytes\[1\] is empty"),
    (b"%PDF-1.4 not an image", r"image_bytes\[1\] is not a JPEG, PNG, GIF or BMP image"),
    (encoded(np.zeros((1, 1, 3), np.uint8), "PNG"),
     r"image_bytes\[1\] is 1 x 1 pixels; at least 8 x 8 are needed"),
    (encoded(np.zeros((6000, 8000, 3), np.uint8), "PNG"),
     r"image_bytes\[1\] is 8000 x 6000 pixels; at most 40000000 pixels are accepted"),
])
def test_bad_requests_are_one_invalid_argument_naming_the_image(detector, bad, message):
    good = requests()["small.bmp"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        detector["serve"](image_bytes=tf.constant([good, bad]))
    assert int(detector["serve"](image_bytes=tf.constant([good]))["num_detections"][0]) > 0


def test_every_bad_image_is_named_and_an_empty_request_gets_empty_outputs(detector):
    for bad, kind in bad_request_mix(12):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            detector["serve"](image_bytes=tf.constant([requests()["gray.png"], bad]))
        assert "image_bytes[1] " in error.value.message, (kind, error.value.message[:300])
    empty = detector["serve"](image_bytes=tf.constant([], tf.string))
    assert empty["boxes"].shape == (0, 100, 4) and empty["class_names"].shape == (0, 100)


def test_a_tf_serving_rest_body_goes_through_the_signature(detector):
    servingutil = pytest.importorskip("servingutil", reason="needs tensorflow-serving-api")
    loaded = tf.saved_model.load(detector["path"])
    arguments = loaded.signatures["serving_default"].structured_input_signature[1]
    data = requests()["tall.png"]
    body = json.loads(json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}))
    request = servingutil.rest_to_request(body, "serving_default", list(arguments))
    reply = json.loads(json.dumps(servingutil.response_to_rest(servingutil.serve(loaded,
                                                                                 request))))
    prediction = reply["predictions"][0]
    assert set(prediction) == {"boxes", "scores", "classes", "class_names", "num_detections"}
    boxes, scores, classes, _ = expected_detections(detector, data)
    assert prediction["num_detections"] == len(scores)
    np.testing.assert_allclose(prediction["scores"][:len(scores)], scores, rtol=1e-4, atol=1e-6)
    assert prediction["class_names"][0] == NAMES[classes[0]]


def test_predict_lists_the_boxes_and_draws_them(detector, tmp_path):
    """predict on the export: detections above --min_score, best first; --draw writes a PNG
    per image whose pixels on the best box's bottom edge have its class's colour."""
    files = []
    for name, data in requests().items():
        files.append(str(tmp_path / name))
        (tmp_path / name).write_bytes(data)
    served = detector["serve"](image_bytes=tf.constant([requests()["wide.jpg"]]))
    best = float(served["scores"][0, 0])
    task, results = predict.predict_files(detector["path"], files, min_score=best - 1e-6,
                                          draw_dir="ram://drawn")
    wide = results[0]
    assert wide.error is None and len(wide.result["detections"]) >= 1
    top = wide.result["detections"][0]
    assert top["score"] == pytest.approx(best, abs=1e-4) and top["label"] == NAMES[top["class"]]
    np.testing.assert_allclose(top["box"], served["boxes"][0, 0].numpy(), atol=0.01)
    assert wide.result["drawing"] == "ram://drawn/wide.png"
    with tf.io.gfile.GFile("ram://drawn/wide.png", "rb") as stream:
        drawn = np.asarray(Image.open(io.BytesIO(stream.read())).convert("RGB"))
    assert drawn.shape == (90, 200, 3)
    ymin, xmin, ymax, xmax = (round(v) for v in top["box"])
    colour = detection_serving.BOX_COLOURS[top["class"]]
    bottom = min(ymax, 89)
    edge = drawn[bottom, xmin + (xmax - xmin) // 4: xmax - (xmax - xmin) // 4]
    assert len(edge) > 2 and (edge == colour).all()
    text = predict.format_text(task, results)
    assert f"{top['label']:<16} {top['score']:.3f}  box (ymin, xmin, ymax, xmax)" in text


def test_predict_defaults_to_confident_boxes_only(detector, tmp_path):
    """An untrained detector scores about the prior 0.01: nothing reaches the default 0.3."""
    (tmp_path / "a.png").write_bytes(requests()["tall.png"])
    task, (result,) = predict.predict_files(detector["path"], [str(tmp_path / "a.png")])
    assert task.MIN_SCORE == 0.3 and result.result["detections"] == []
    assert "no detections" in predict.format_text(task, [result])


@pytest.mark.slow
@pytest.mark.parametrize("quantize, score_tolerance", [("none", 1e-4), ("dynamic", 0.02)])
def test_tflite_with_the_detection_op_matches_the_saved_model(detector, quantize,
                                                             score_tolerance):
    """The TFLite model (TFLite's own detection post-processing op, anchors baked in) on the
    fitted images, its boxes mapped back like the SavedModel's: the SavedModel's 10 best
    detections of each image are found again, same class, IoU >= 0.9."""
    module = detection_serving.DetectionServingModule(detector["model"], SIZE, detector["anchors"],
                                           class_names=NAMES)
    flatbuffer = detection_tflite.detection_tflite_bytes(module, quantize)
    ops = {detail["op_name"] for detail in tf.lite.Interpreter(
        model_content=flatbuffer)._get_ops_details()}
    assert "TFLite_Detection_PostProcess" in ops and "NON_MAX_SUPPRESSION_V5" not in ops
    data = list(requests().values())
    served = detector["serve"](image_bytes=tf.constant(data))
    for index, found in enumerate(detection_tflite.detect_encoded(flatbuffer, data, SIZE)):
        reference = {key: served[key][index, :10].numpy()
                     for key in ("boxes", "scores", "classes")}
        matches = detection_tflite.match_detections(reference, found, min_score=0.0)
        assert len(matches) == 10
        for overlap, difference in matches:
            assert overlap >= 0.9 and difference <= score_tolerance


def test_the_folded_detector_has_no_batch_norm_and_computes_the_same_outputs():
    """Batch norms with moving statistics far from (0, 1), folded into the convolutions before
    them; the heads' shared convolutions become one copy per level, each with its level's BN."""
    keras.utils.set_random_seed(1)
    model = efficientdet.build("efficientdet-test", 3, (SIZE, SIZE))
    rng = np.random.RandomState(0)
    for layer in weighted_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, variance.shape)])
    folded = fold.folded_detector(model, "efficientdet-test", 3, (SIZE, SIZE),
                                  activation="inference_swish")
    assert not [layer for layer in weighted_layers(folded)
                if isinstance(layer, keras.layers.BatchNormalization)]
    names = {layer.name for layer in weighted_layers(folded)}
    assert {"class_net_conv0_level3", "class_net_conv0_level7", "box_net_conv0_level5"} <= names
    images = tf.constant(rng.uniform(0, 255, (2, SIZE, SIZE, 3)), tf.float32)
    expected, got = model(images, training=False), folded(images, training=False)
    for key in expected:
        scale = float(tf.reduce_max(tf.abs(expected[key])))
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5 * max(scale, 1.0))
