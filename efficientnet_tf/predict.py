"""`efficientnet-tf predict`: top-k labels of image files from an export or a training run.

A bad file (unreadable, not an image, too large) is reported and the others go on.
"""

import dataclasses
import re
from typing import List, Optional, Tuple

import tensorflow as tf


@dataclasses.dataclass
class Prediction:
    file: str
    top: List[Tuple[int, str, float]]  # (class index, label, probability)
    error: Optional[str] = None

    def as_dict(self):
        return {"file": self.file, "error": self.error,
                "top": [{"class": c, "label": label, "probability": p} for c, label, p in self.top]}


def _first_line(error):
    """The reason of an error in one line; for a failed serving check, its own message."""
    message = getattr(error, "message", None) or str(error)
    match = re.search(r"assertion failed: \[(.*?)\]\s*$", message, re.MULTILINE)
    if match:
        return match.group(1)
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class _SavedModelPredictor:
    def __init__(self, path, top_k):
        loaded = tf.saved_model.load(path)
        self._loaded = loaded
        self.serve = loaded.signatures["serving_default"]
        self.top_k = top_k

    def __call__(self, data):
        outputs = self.serve(image_bytes=tf.constant([data]))
        classes = outputs["classes"][0].numpy().tolist()[: self.top_k]
        probabilities = outputs["probabilities"][0].numpy().tolist()[: self.top_k]
        names = ([n.decode("utf-8") for n in outputs["class_names"][0].numpy()]
                 if "class_names" in outputs else [str(c) for c in classes])
        return list(zip(classes, names, probabilities))


class _CheckpointPredictor:
    def __init__(self, path, top_k):
        import keras

        from efficientnet_tf import export
        from efficientnet_tf.train import checkpoints

        keras.mixed_precision.set_global_policy("float32")
        self.model, _, saved = checkpoints.load_trained_model(path)
        self.settings = export.serving_settings(saved, top_k)
        names = saved["resolved"].get("class_names")
        self.names = names or [str(i) for i in range(saved["resolved"]["num_classes"])]
        self.top_k = top_k
        self._decode = export.decode_for_serving

    def __call__(self, data):
        image = self._decode(tf.constant(data), tf.constant(0, tf.int64), self.settings)
        probabilities = tf.nn.softmax(tf.cast(self.model(image[None], training=False),
                                              tf.float32))[0]
        top = tf.math.top_k(probabilities, k=min(self.top_k, len(self.names)))
        return [(int(c), self.names[int(c)], float(p))
                for c, p in zip(top.indices.numpy(), top.values.numpy())]


def predictor(model_path, top_k=5):
    """A callable: encoded image bytes -> [(class, label, probability)] for an export directory
    (SavedModel) or one of our training runs (workdir or checkpoint prefix)."""
    if tf.io.gfile.exists(f"{model_path.rstrip('/')}/saved_model.pb"):
        return _SavedModelPredictor(model_path, top_k)
    return _CheckpointPredictor(model_path, top_k)


def predict_files(model_path, files, top_k=5):
    """One Prediction per file, in order; failures carry their error instead of labels."""
    run = predictor(model_path, top_k)
    results = []
    for path in files:
        try:
            with tf.io.gfile.GFile(path, "rb") as stream:
                data = stream.read()
            results.append(Prediction(path, run(data)))
        except (tf.errors.OpError, OSError, ValueError) as error:
            results.append(Prediction(path, [], _first_line(error)))
    return results


def format_text(predictions):
    lines = []
    for prediction in predictions:
        if prediction.error:
            lines.append(f"{prediction.file}: error: {prediction.error}")
            continue
        lines.append(prediction.file)
        lines.extend(f"  {rank}. {label:<24} {probability:.4f}"
                     for rank, (_, label, probability) in enumerate(prediction.top, 1))
    return "\n".join(lines)
