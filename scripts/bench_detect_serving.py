"""Detector serving speed: our exported EfficientDet SavedModel vs the Keras model's predict.

    python scripts/bench_detect_serving.py [--model=efficientdet-d0] [--size=512]

Ours is the export path (detection_serving.DetectionServingModule) saved and loaded back with
tf.saved_model.load as a server would, called through its predict_uint8 signature: the detector
AND the NMS (per-class hard NMS, 100 detections per image) in one graph. The anchor is what a
Keras user runs without an export: the same keras.Model (same weights) and `model.predict` on
the same images, which returns the raw per-level outputs and does no NMS at all. Random weights:
speed does not depend on them. Measured call by call, alternating between the two in one
process so that machine noise hits both alike: batch-1 latency and batch-8 throughput, medians
over the calls; export_speedup is Keras' batch-1 time / ours. The last line printed is one JSON
object with `batch1_ms`, `batch8_img_s`, `export_speedup` and the rest of the figures.
"""

import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from benchtiming import alternating_medians  # noqa: E402

from efficientnet_tf import serving  # noqa: E402
from efficientnet_tf.models import efficientdet  # noqa: E402
from efficientnet_tf.specs import registry  # noqa: E402
from efficientnet_tf.tasks.detection import anchors as anchors_lib  # noqa: E402
from efficientnet_tf.tasks.detection import serving as detection_serving  # noqa: E402

flags.DEFINE_string("model", "efficientdet-d0", "An EfficientDet row.")
flags.DEFINE_integer("size", None, "Input size (default: the row's, 512 for D0).")
flags.DEFINE_integer("num_classes", 90, "Classes of the detector (COCO's 90 ids).")
flags.DEFINE_integer("latency_calls", 40, "Batch-1 calls of each.")
flags.DEFINE_integer("throughput_calls", 8, "Batch-8 calls of each.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    spec = registry.get(FLAGS.model)
    size = FLAGS.size or spec.image_size
    keras.utils.set_random_seed(0)
    model = efficientdet.build(spec, FLAGS.num_classes, (size, size))
    module = detection_serving.DetectionServingModule(model, size, anchors_lib.settings_of(spec))
    with tempfile.TemporaryDirectory() as directory:
        serving.save_module(module, directory)
        serve = tf.saved_model.load(directory).signatures["predict_uint8"]

        def ours(images):
            return serve(images=images)["num_detections"].numpy()

        def theirs(images):
            return model.predict(images, verbose=0, batch_size=len(images))

        rng = np.random.RandomState(0)
        one = rng.randint(0, 256, (1, size, size, 3)).astype(np.uint8)
        eight = rng.randint(0, 256, (8, size, size, 3)).astype(np.uint8)
        median = {}
        median["ours_1"], median["keras_1"] = alternating_medians(
            ours, theirs, one, FLAGS.latency_calls)
        median["ours_8"], median["keras_8"] = alternating_medians(
            ours, theirs, eight, FLAGS.throughput_calls)
    result = {
        "model": spec.name, "image_size": size, "num_classes": FLAGS.num_classes,
        "batch1_ms": round(1000 * median["ours_1"], 1),
        "batch8_img_s": round(8 / median["ours_8"], 2),
        "export_speedup": round(median["keras_1"] / median["ours_1"], 3),
        "batch8_speedup": round(median["keras_8"] / median["ours_8"], 3),
        "keras_predict_batch1_ms": round(1000 * median["keras_1"], 1),
        "keras_predict_batch8_img_s": round(8 / median["keras_8"], 2),
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print(f"{spec.name} at {size}: export (detector + NMS) batch 1 {result['batch1_ms']} ms vs "
          f"Keras predict (no NMS) {result['keras_predict_batch1_ms']} ms "
          f"({result['export_speedup']}x); batch 8 {result['batch8_img_s']} img/s vs "
          f"{result['keras_predict_batch8_img_s']} ({result['batch8_speedup']}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
