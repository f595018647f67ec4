"""A detector's serving: the SavedModel module and its signatures, and how `predict` reads,
shows and draws one image's detections.

The SavedModel returns boxes in the original image's pixels after NMS in the graph:
serving_default takes image bytes, predict_uint8 fitted images; the same checks on bad bytes as
a classifier's (serving.checked_decode). Its metadata records the NMS, the input scaling and the
padding colour. Its batch norms are folded (fold.folded_detector: the heads' convolutions,
shared across levels in training, become one copy per level). TFLite: tasks/detection/tflite.py.
"""

import dataclasses
import io

import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from efficientnet_tf import serving
from efficientnet_tf.data import preprocess
from efficientnet_tf.models import efficientdet, efficientnet, fold
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import inputs as inputs_lib
from efficientnet_tf.tasks.detection import postprocess, tflite

# A detector refuses smaller images (a 1 x 1 tracking pixel is a client's mistake, not a scene).
MIN_DETECTION_SIDE = 8
BOX_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (255, 225, 25))


class DetectionServingModule(tf.Module):
    """A detector and its signatures, as one trackable for tf.saved_model.save.

      serving_default  image_bytes: string [batch] (JPEG, PNG, GIF, BMP; any size) -> each
                       image resized to fit size x size (aspect kept, padded bottom/right, as
                       in evaluation) -> detections: boxes [batch, D, 4] float32 in the
                       ORIGINAL image's pixels, ordered (ymin, xmin, ymax, xmax); scores
                       [batch, D]; classes [batch, D] int32, 0-based (-1 past num_detections);
                       class_names [batch, D] ("" past num_detections); num_detections [batch].
      predict_uint8    images: uint8 [batch, size, size, 3], already fitted and padded
                       (with the metadata's pad_colour) -> the same detections, boxes in input
                       pixels (no class names).
    D is the NMS's max_detections (100). Rows are sorted by score. The NMS (`nms`,
    postprocess.NmsSettings; hard per-class NMS by default) is recorded in the metadata.
    """

    def __init__(self, model, image_size, anchor_settings, nms=postprocess.SERVING_NMS,
                 class_names=None, metadata=None, max_pixels=serving.MAX_PIXELS, pad_colour=None):
        super().__init__(name="efficientdet_serving")
        self.model = model
        self.model_variables = serving.tracked_variables(model)
        self.image_size = image_size
        self.nms = nms
        self.max_pixels = max_pixels
        self.num_classes = efficientdet.num_classes_of(model, anchor_settings.min_level,
                                                       anchor_settings.per_location)
        self.anchors = tf.constant(anchors_lib.generate((image_size, image_size),
                                                        anchor_settings))
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for a detector of "
                             f"{self.num_classes} classes")
        self.class_name_list = list(class_names) if class_names else None
        self.class_names = tf.constant(list(class_names) + [""] if class_names else
                                       [str(c) for c in range(self.num_classes)] + [""])
        # Padding looks as the official code's (which pads after normalizing): the colour the
        # model's input scaling maps to 0, unless the run was trained otherwise (older runs:
        # black). predict_uint8's and TFLite's callers pad with it too (the metadata says it).
        self.input_scaling = efficientnet.input_scaling_of(model)
        self.pad_colour = tuple(pad_colour if pad_colour is not None
                                else registry.zero_colour(self.input_scaling))
        self.metadata = {"task": "detection", **(metadata or {}), "image_size": image_size,
                         "num_classes": self.num_classes, "box_order": "ymin,xmin,ymax,xmax",
                         "nms": dataclasses.asdict(nms), "input_scaling": self.input_scaling,
                         "pad_colour": list(self.pad_colour)}
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
        self.predict_uint8 = tf.function(self._detect, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, "images")])

    def signatures(self):
        return {"serving_default": self.serve_bytes, "predict_uint8": self.predict_uint8}

    def _detect(self, images, extents=None):
        """Detections of fitted images ([0, 255], any dtype), boxes in input pixels clipped to
        each image's extent there ([B, 2]; default the whole input) before the NMS; none for an
        empty batch."""
        count = tf.shape(images)[0]
        size = self.nms.max_detections
        if extents is None:
            extents = tf.fill([count, 2], float(self.image_size))

        def run():
            outputs = self.model(tf.cast(images, tf.float32), training=False)
            logits, codes = postprocess.flatten(outputs, self.num_classes)
            return postprocess.detect(logits, codes, self.anchors, self.nms, extents)

        def nothing():
            return {"boxes": tf.zeros([0, size, 4]), "scores": tf.zeros([0, size]),
                    "classes": tf.zeros([0, size], tf.int32),
                    "num_detections": tf.zeros([0], tf.int32)}

        return tf.cond(count > 0, run, nothing)

    def _fit(self, data):
        image = preprocess.decode(data)
        original_size = tf.shape(image)[:2]
        fitted, scale = inputs_lib.resize_to_fit(image, self.image_size,
                                                         self.pad_colour)
        return fitted, scale, original_size

    def _serve_bytes(self, image_bytes):
        size = self.image_size
        default = (tf.zeros([size, size, 3]), tf.constant(1.0), tf.zeros([2], tf.int32))
        fitted, scales, original_sizes = tf.map_fn(
            lambda item: serving.checked_decode(item[0], item[1], self.max_pixels, self._fit,
                                                default, MIN_DETECTION_SIDE),
            (image_bytes, tf.range(tf.shape(image_bytes)[0], dtype=tf.int64)),
            fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                 tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)))
        found = self._detect(fitted, tf.cast(original_sizes, tf.float32) * scales[:, None])
        boxes = postprocess.to_original(found["boxes"], scales, original_sizes)
        valid = found["classes"] >= 0
        return {"boxes": tf.where(valid[..., None], boxes, 0.0), "scores": found["scores"],
                "classes": found["classes"],
                "class_names": tf.gather(self.class_names, tf.where(
                    valid, found["classes"], self.num_classes)),
                "num_detections": found["num_detections"]}

    def tflite_bytes(self, quantize="none", calibration_data=None, calibration_count=64):
        """The TFLite flatbuffer of the detector with TFLite's own post-processing op
        (tasks/detection/tflite.py): float32 or dynamic-range (int8 is not offered)."""
        del calibration_data, calibration_count
        return tflite.detection_tflite_bytes(self, quantize)


def serving_module(model, spec, image_size, anchors, class_names=None, nms=None,
                   max_pixels=serving.MAX_PIXELS, pad_colour=None):
    """The detector's SavedModel module (DetectionServingModule) of `model` (built from
    `spec`) with its batch norms folded (models/fold.py folded_detector), at `image_size`, with
    `anchors` (anchors.AnchorSettings): `nms` is the serving NMS method, "hard" (the default:
    per-class NMS at IoU 0.5) or "gaussian" (soft-NMS, as the evaluation). It returns up to 100
    detections. `pad_colour`: default the colour the model's input scaling maps to 0."""
    nms_settings = (postprocess.SERVING_NMS if nms in (None, "hard")
                    else postprocess.NmsSettings(method=nms))
    num_classes = efficientdet.num_classes_of(model, spec.min_level, spec.anchors_per_location)
    folded = fold.folded_detector(model, spec, num_classes, (image_size, image_size),
                                  activation="inference_swish")
    return DetectionServingModule(
        folded, image_size, anchors, nms_settings, class_names,
        metadata={"task": "detection", "model": spec.name}, max_pixels=max_pixels,
        pad_colour=pad_colour)


def detect(model, images, min_score=0.3, class_names=None, nms=None, spec=None,
           anchor_scale=None):
    """Detections of `images` by a detector built here (efficientnet_tf.create_model or a
    run's model): a list with one dict per image, {"boxes": [N, 4] float32 (ymin, xmin, ymax,
    xmax) in the image's own pixels, "scores": [N], "classes": [N] int (0-based), and with
    `class_names` "labels": [N] names}, best first, scored at least `min_score`.

    images: one H x W x 3 array (uint8 or float in [0, 255]), a list of them (any sizes), or
    encoded image bytes (JPEG, PNG, GIF, BMP). Each image is fitted to the model's input size
    as in evaluation (aspect kept, padded). nms: "hard" (per class at IoU 0.5; default) or
    "gaussian" (soft-NMS, as the evaluation). spec: the model's row, default the one its name
    says ('efficientdet_d0'); anchor_scale: a run's detection.anchor_scale where it changed the
    row's."""
    spec = registry.get(spec or model.name)
    anchors = anchors_lib.settings_of(spec)
    if anchor_scale is not None:
        anchors = dataclasses.replace(anchors, anchor_scale=anchor_scale)
    nms_settings = (postprocess.SERVING_NMS if nms in (None, "hard")
                    else postprocess.NmsSettings(method=nms))
    size = int(model.input_shape[1])
    module = DetectionServingModule(model, size, anchors, nms_settings, class_names)
    if isinstance(images, (bytes, tf.Tensor)) or getattr(images, "ndim", 0) == 3:
        images = [images]
    results = []
    for image in images:
        if isinstance(image, bytes):
            pixels = preprocess.decode(tf.constant(image))
        else:
            pixels = tf.convert_to_tensor(image)
        pixels = tf.cast(pixels, tf.float32)
        fitted, scale = inputs_lib.resize_to_fit(pixels, size, module.pad_colour)
        original = tf.shape(pixels)[:2]
        found = module._detect(fitted[None], tf.cast(original, tf.float32)[None] * scale)
        count = int(found["num_detections"][0])
        boxes = postprocess.to_original(found["boxes"], scale[None], original[None])
        keep = found["scores"][0].numpy()[:count] >= min_score
        result = {"boxes": boxes[0].numpy()[:count][keep],
                  "scores": found["scores"][0].numpy()[:count][keep],
                  "classes": found["classes"][0].numpy()[:count][keep]}
        if class_names is not None:
            result["labels"] = [class_names[c] for c in result["classes"]]
        results.append(result)
    return results


# predict shows detections scored at least this (the export keeps those above 0.001,
# what COCO AP scores; a person looking at the boxes wants the confident ones).
MIN_SCORE = 0.3


def read_outputs(outputs, top_k, min_score=0.0):
    """predict's result for one image: its detections scored at least min_score, best
    first (boxes in the image's pixels: ymin, xmin, ymax, xmax)."""
    del top_k
    count = int(outputs["num_detections"][0])
    boxes = outputs["boxes"][0].numpy()[:count].round(2).tolist()
    scores = outputs["scores"][0].numpy()[:count].tolist()
    classes = outputs["classes"][0].numpy()[:count].tolist()
    names = [name.decode("utf-8") for name in outputs["class_names"][0].numpy()[:count]]
    return {"detections": [{"box": box, "score": round(score, 4), "class": c, "label": name}
                           for box, score, c, name in zip(boxes, scores, classes, names)
                           if score >= min_score]}

def format_result(result):
    if not result["detections"]:
        return ["  no detections"]
    return [f"  {d['label']:<16} {d['score']:.3f}  box (ymin, xmin, ymax, xmax) "
            f"{', '.join(f'{v:.1f}' for v in d['box'])}" for d in result["detections"]]

def draw(data, result, path):
    """The image with each detection's box (in its class's colour, BOX_COLOURS) and a label
    'name score' above it, the best drawn last (on top), as a PNG at `path`."""
    with Image.open(io.BytesIO(data)) as picture:  # local: decodes bytes in memory
        picture = picture.convert("RGB")
    pen = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 150))
    font = ImageFont.load_default()
    for detection in reversed(result["detections"]):
        colour = BOX_COLOURS[detection["class"] % len(BOX_COLOURS)]
        ymin, xmin, ymax, xmax = detection["box"]
        pen.rectangle([round(xmin), round(ymin), round(xmax), round(ymax)], outline=colour,
                      width=width)
        text = f"{detection['label']} {detection['score']:.2f}"
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        y = max(0, round(ymin) - (bottom - top) - 2)
        pen.rectangle([round(xmin), y, round(xmin) + right - left + 3, y + bottom - top + 2],
                      fill=colour)
        pen.text((round(xmin) + 2, y + 1 - top), text, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as stream:
        stream.write(buffer.getvalue())
