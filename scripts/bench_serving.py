"""Serving speed: our exported SavedModel vs a SavedModel of keras.applications, same variant.

    python scripts/bench_serving.py [--variant=efficientnet-b0]

Both SavedModels take float32 images at the variant's eval size and are loaded back with
tf.saved_model.load, as a server would; ours is the export path (models/fold.py: batch norm
folded into the convolutions), theirs is keras.applications' model (weights=None) saved with a
plain serving function. Measured call by call, alternating between the two in one process so that
machine noise hits both alike: batch-1 latency and batch-32 throughput, medians over the calls.
A speedup is keras time / ours. The last line printed is one JSON
object with the figures.
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

import efficientnet_tf  # noqa: E402
from efficientnet_tf.data import preprocess  # noqa: E402
from efficientnet_tf.models import fold  # noqa: E402
from efficientnet_tf.tasks.classification import serving as classification_serving  # noqa: E402

flags.DEFINE_string("variant", "efficientnet-b0", "A variant keras.applications also has.")
flags.DEFINE_integer("latency_calls", 150, "Batch-1 calls of each model.")
flags.DEFINE_integer("throughput_calls", 15, "Batch-32 calls of each model.")
FLAGS = flags.FLAGS

KERAS_APPLICATIONS = {
    **{f"efficientnet-b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnetv2-{s}": f"EfficientNetV2{s.upper()}"
       for s in ("b0", "b1", "b2", "b3", "s", "m", "l")},
}


def save_keras_applications(model, size, directory):
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda images: {"probabilities": model(images, training=False)},
                               input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    return tf.saved_model.load(directory).signatures["serving_default"]


def main(argv):
    del argv
    spec = efficientnet_tf.get_spec(FLAGS.variant)
    size = spec.eval_size
    ours_model = fold.folded_copy(efficientnet_tf.create_model(spec), spec, 1000,
                                  activation="inference_swish")
    theirs_model = getattr(keras.applications, KERAS_APPLICATIONS[spec.name])(weights=None)
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as theirs_dir:
        classification_serving.save_model(ours_model, ours_dir,
                          classification_serving.ServingSettings(preprocess.EvalTransform(size)))
        ours = tf.saved_model.load(ours_dir).signatures["predict_images"]
        theirs = save_keras_applications(theirs_model, size, theirs_dir)
        rng = np.random.RandomState(0)
        one = tf.constant(rng.uniform(0, 255, (1, size, size, 3)), tf.float32)
        many = tf.constant(rng.uniform(0, 255, (32, size, size, 3)), tf.float32)
        median = {}
        median["ours_1"], median["theirs_1"] = alternating_medians(ours, theirs, one,
                                                                   FLAGS.latency_calls)
        median["ours_32"], median["theirs_32"] = alternating_medians(ours, theirs, many,
                                                                     FLAGS.throughput_calls)
    result = {
        "variant": spec.name, "image_size": size,
        "batch1_speedup": round(median["theirs_1"] / median["ours_1"], 3),
        "batch32_speedup": round(median["theirs_32"] / median["ours_32"], 3),
        "ours_batch1_ms": round(1000 * median["ours_1"], 2),
        "keras_batch1_ms": round(1000 * median["theirs_1"], 2),
        "ours_batch32_img_s": round(32 / median["ours_32"], 1),
        "keras_batch32_img_s": round(32 / median["theirs_32"], 1),
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print(f"{spec.name} SavedModel at {size}: batch 1 ours {result['ours_batch1_ms']} ms vs "
          f"keras.applications {result['keras_batch1_ms']} ms ({result['batch1_speedup']}x); "
          f"batch 32 ours {result['ours_batch32_img_s']} img/s vs "
          f"{result['keras_batch32_img_s']} ({result['batch32_speedup']}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
