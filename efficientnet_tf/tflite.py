"""TFLite exports of a SavedModel's predict_images signature: float32, dynamic range or int8.

int8 calibrates the activations' ranges on images of the run's eval split, preprocessed as the
eval transform says; inputs and outputs stay float32 for the caller.
"""

import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("none", "dynamic", "int8")


def tflite_bytes(saved_model_dir, quantize="none", calibration_images=None):
    """The TFLite flatbuffer of the predict_images signature of `saved_model_dir`."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be none, dynamic or int8, got {quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["predict_images"])
    if quantize in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        if calibration_images is None or not len(calibration_images):
            raise ValueError("int8 quantization needs calibration images from the eval split")

        def representative():
            for image in calibration_images:
                yield {"images": np.asarray(image, np.float32)[None]}

        converter.representative_dataset = representative
    return converter.convert()


def run_tflite(model_bytes, images):
    """(logits, probabilities) of a TFLite model from tflite_bytes on float32 images."""
    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner("predict_images")
    outputs = [runner(images=np.asarray(image, np.float32)[None]) for image in images]
    return (np.concatenate([o["logits"] for o in outputs]),
            np.concatenate([o["probabilities"] for o in outputs]))


def calibration_images(task, count):
    """`count` preprocessed images of the task's eval split (padding rows left out)."""
    images = [image[0].numpy() for image, label in task.eval_dataset(batch_size=1).take(count)
              if label[0] >= 0]
    if not images:
        raise ValueError("the eval split gave no images to calibrate int8 quantization with")
    return np.stack(images)
