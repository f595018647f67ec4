"""A detector's TFLite model: its network and TFLite's own detection post-processing op, float32
or dynamic range; and how its detections compare with the SavedModel's on image files.
"""

import numpy as np
import tensorflow as tf

from efficientnet_tf.tasks.detection import boxes as boxes_lib
from efficientnet_tf.tasks.detection import inputs as inputs_lib
from efficientnet_tf.tasks.detection import postprocess


# A detector's TFLite model ends in TFLite's built-in TFLite_Detection_PostProcess op: the
# converter replaces a tf.function marked `experimental_implements` with this op name and these
# attributes (a text-format NameAttrList; tensorflow/compiler/mlir/lite/utils/nms_utils.cc) by
# the op. Its inputs are box codes [1, N, 4] (ty, tx, th, tw), class scores [1, N, C] (after the
# sigmoid; no background column) and anchors [N, 4] as (ycenter, xcenter, h, w); its boxes come
# out decoded in the anchors' units (input pixels here), (ymin, xmin, ymax, xmax), classes
# 0-based as float. use_regular_nms: NMS class by class (as the SavedModel's), not the
# class-agnostic fast path. The op takes one image per call.
POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def _postprocess_attributes(nms, num_classes):
    ints = {"max_detections": nms.max_detections, "max_classes_per_detection": 1,
            "num_classes": num_classes}
    floats = {"nms_score_threshold": nms.score_threshold, "nms_iou_threshold": nms.iou_threshold,
              # the box coder has no scale factors (tasks/detection/boxes.py)
              "y_scale": 1.0, "x_scale": 1.0, "h_scale": 1.0, "w_scale": 1.0}
    parts = [f'name: "{POSTPROCESS_OP}"']
    parts += [f'attr {{ key: "{key}" value {{ i: {int(value)} }} }}' for key, value in ints.items()]
    parts += [f'attr {{ key: "{key}" value {{ f: {float(value)!r} }} }}'
              for key, value in floats.items()]
    parts.append('attr { key: "use_regular_nms" value { b: true } }')
    return " ".join(parts)


def detection_function(module):
    """A tf.function of one fitted image [1, size, size, 3] float32 in [0, 255] -> the
    detector's outputs through TFLite's post-processing op (boxes [1, D, 4] in input pixels,
    classes [1, D] float, scores [1, D], num_detections [1]). Only its TFLite conversion
    computes: in TensorFlow the op's stand-in returns zeros."""
    if module.nms.method != "hard":
        raise ValueError(f"TFLite's detection op does hard NMS; the export's NMS is "
                         f"{module.nms.method!r} (export with --nms=hard)")
    corners = module.anchors
    centres = tf.stack([(corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2,
                        corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]], axis=1)

    @tf.function(experimental_implements=_postprocess_attributes(module.nms, module.num_classes))
    def postprocess_op(box_codes, class_scores, anchors):
        del box_codes, class_scores, anchors  # the converter puts the op in this function's place
        return (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))

    size = module.image_size

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, "images")])
    def detect(images):
        outputs = module.model(images, training=False)
        logits, codes = postprocess.flatten(outputs, module.num_classes)
        boxes, classes, scores, count = postprocess_op(codes, tf.sigmoid(logits), centres)
        return {"boxes": boxes, "classes": classes, "scores": scores, "num_detections": count}

    return detect


def detection_tflite_bytes(module, quantize="none"):
    """The TFLite flatbuffer of a detector's serving module (serving.DetectionServingModule):
    its model and TFLite's post-processing op, float32 or dynamic-range quantized."""
    if quantize not in ("none", "dynamic"):
        raise ValueError(f"a detector's TFLite export is float32 (none) or dynamic, got "
                         f"{quantize!r}")
    detect = detection_function(module)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [detect.get_concrete_function()], module)
    if quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def run_detection_tflite(model_bytes, images):
    """[{boxes [n, 4] in input pixels, scores [n], classes [n] int}] of a detector's TFLite
    model (detection_tflite_bytes) on fitted float32 images [size, size, 3], one per call."""
    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner()
    results = []
    for image in images:
        found = runner(images=np.asarray(image, np.float32)[None])
        count = int(found["num_detections"][0])
        results.append({"boxes": found["boxes"][0, :count], "scores": found["scores"][0, :count],
                        "classes": found["classes"][0, :count].astype(np.int64)})
    return results


def detect_encoded(model_bytes, encoded, image_size, pad_colour=inputs_lib.MEAN_COLOUR):
    """run_detection_tflite on encoded images (bytes each), each decoded and fitted to
    `image_size` as the SavedModel's serving_default fits it (padded with `pad_colour`: its
    metadata's), its boxes mapped back to the image's pixels (clipped to it), as the
    SavedModel returns them."""
    images, placements = [], []
    for data in encoded:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        fitted, scale = inputs_lib.resize_to_fit(tf.cast(image, tf.float32), image_size,
                                                 pad_colour)
        images.append(fitted.numpy())
        placements.append((scale, tf.shape(image)[:2]))
    found = run_detection_tflite(model_bytes, images)
    for result, (scale, extent) in zip(found, placements):
        result["boxes"] = postprocess.to_original(result["boxes"], scale, extent).numpy()
    return found

def match_detections(reference, other, min_score):
    """(IoU, |score difference|) of each `reference` detection scoring >= min_score with the
    same-class detection of `other` that overlaps it most (IoU 0, difference None if none has
    its class); each a dict of boxes [n, 4], scores [n], classes [n]."""
    keep = np.asarray(reference["scores"]) >= min_score
    ref_boxes = np.asarray(reference["boxes"], np.float32)[keep].reshape(-1, 4)
    ref_scores, ref_classes = np.asarray(reference["scores"])[keep], \
        np.asarray(reference["classes"])[keep]
    other_boxes = np.asarray(other["boxes"], np.float32).reshape(-1, 4)
    overlaps = boxes_lib.iou(ref_boxes, other_boxes).numpy() if len(other_boxes) else \
        np.zeros((len(ref_boxes), 0), np.float32)
    matches = []
    for row, (score, label) in enumerate(zip(ref_scores, ref_classes)):
        same = np.flatnonzero(np.asarray(other["classes"]) == label)
        if not len(same):
            matches.append((0.0, None))
            continue
        best = same[np.argmax(overlaps[row, same])]
        matches.append((float(overlaps[row, best]),
                        abs(float(other["scores"][best]) - float(score))))
    return matches


def detection_parity(export_dir, flatbuffer, files, image_size, min_scores=(0.3,), min_iou=0.9,
                     pad_colour=inputs_lib.MEAN_COLOUR):
    """How a detector's TFLite model (detection_tflite_bytes) agrees with its SavedModel on
    image files: the SavedModel's serving_default gets each file's bytes; TFLite the decoded
    image fitted to `image_size` (padded with `pad_colour`, the export's metadata's), its boxes
    mapped back to the image's pixels. The detections
    scoring >= min_score of each are matched to the other's (same class, highest IoU), both
    ways.

    Returns, for each of `min_scores`: {"images", "detections" / "tflite_detections" (the
    SavedModel's / TFLite's scoring >= min_score), "matched" / "tflite_matched" (those found in
    the other, IoU >= min_iou), "min_iou" (of all), "max_score_diff" (of the matched)}."""
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    encoded, saved = [], []
    for path in files:
        data = tf.io.gfile.GFile(path, "rb").read()
        found = serve(image_bytes=tf.constant([data]))
        count = int(found["num_detections"][0])
        saved.append({key: found[key][0, :count].numpy()
                      for key in ("boxes", "scores", "classes")})
        encoded.append(data)
    lites = detect_encoded(flatbuffer, encoded, image_size, pad_colour)
    parity = {}
    for min_score in min_scores:
        counts = parity[min_score] = {
            "images": len(encoded), "detections": 0, "matched": 0, "tflite_detections": 0,
            "tflite_matched": 0, "min_iou": 1.0, "max_score_diff": 0.0}
        for reference, lite in zip(saved, lites):
            for prefix, matches in (("", match_detections(reference, lite, min_score)),
                                    ("tflite_", match_detections(lite, reference, min_score))):
                for overlap, difference in matches:
                    counts[f"{prefix}detections"] += 1
                    counts["min_iou"] = min(counts["min_iou"], overlap)
                    if overlap >= min_iou:
                        counts[f"{prefix}matched"] += 1
                        counts["max_score_diff"] = max(counts["max_score_diff"], difference)
    return parity
