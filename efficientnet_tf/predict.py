"""`efficientnet-tf predict`: results for image files from an export or a training run.

Both go through the same serving function (serving_default): an export's, or the one the task
builds from a restored run in this process. The task's serving module (tasks/<task>/serving.py)
reads its outputs (for classification: the top-k labels), formats and draws them. A bad file
(unreadable, not an image, too large) is reported with its reason and the others go on; a
folder stands for the images in it.
"""

import dataclasses
import json
import re
from typing import Optional

import tensorflow as tf

from efficientnet_tf import pretrained, serving, tasks
from efficientnet_tf.train import workdir as workdir_lib


@dataclasses.dataclass
class Prediction:
    file: str
    result: dict  # the task's reading of the outputs, e.g. {"top": [{"class", "label", ...}]}
    error: Optional[str] = None

    def as_dict(self):
        return {"file": self.file, "error": self.error, **self.result}


# What the serving function decodes (image_header), by file name, for the images of a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# Model files predict does not run, and what to give it instead.
MODEL_FILES = {
    ".keras": "a .keras file is the bare network (float images in, outputs out): load it with "
              "keras.models.load_model, or give predict the run's workdir or a SavedModel export",
    ".tflite": "a .tflite file runs in the TFLite interpreter (tf.lite.Interpreter); give "
               "predict the run's workdir or a SavedModel export",
    ".h5": "an .h5 file holds weights: give predict --weights=FILE --model=VARIANT, the run's "
           "workdir or a SavedModel export",
}


def image_files(paths):
    """`paths` with each folder replaced by its image files (sorted; not its subfolders')."""
    files = []
    for path in paths:
        if not tf.io.gfile.isdir(path):
            files.append(path)
            continue
        found = sorted(f"{path.rstrip('/')}/{name}" for name in tf.io.gfile.listdir(path)
                       if name.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise ValueError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files.extend(found)
    return files


def _first_line(error):
    """The reason of an error in one line; for a failed serving check, its own message."""
    message = getattr(error, "message", None) or str(error)
    match = re.search(r"assertion failed: \[(.*?)\]\s*$", message, re.MULTILINE)
    if match:
        return match.group(1)
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def predictor(model_path, top_k=5, min_score=None, weights=None):
    """(the task's serving module, callable: encoded image bytes -> the task's result) for an
    export directory (its SavedModel's serving_default), one of our runs (a workdir or
    checkpoint prefix), or pretrained `weights` ((name or path, model name, input scaling):
    pretrained.serving).
    `min_score`: results below it are left out (default: the task's MIN_SCORE)."""
    if weights:
        task_class, module = pretrained.serving(*weights, top_k=top_k)
        shown = tasks.serving(task_class.NAME)

        def call(data):
            return module.serve_bytes(tf.constant([data]))
    elif tf.io.gfile.exists(f"{model_path.rstrip('/')}/saved_model.pb"):
        shown = tasks.serving(serving.read_metadata(model_path).get("task", "classification"))
        serve = tf.saved_model.load(model_path).signatures["serving_default"]

        def call(data):
            return serve(image_bytes=tf.constant([data]))
    else:
        model, run, _ = workdir_lib.restore_model(model_path)
        shown = tasks.serving(run.task)
        module = tasks.create(run).serving_module(model, top_k)

        def call(data):
            return module.serve_bytes(tf.constant([data]))

    min_score = shown.MIN_SCORE if min_score is None else min_score
    return shown, lambda data: shown.read_outputs(call(data), top_k, min_score)


def check_model_path(model_path):
    """A model file predict does not take is a one-line error saying what it takes."""
    suffix = "." + model_path.rsplit(".", 1)[-1].lower() if "." in model_path else ""
    if suffix in MODEL_FILES and not tf.io.gfile.isdir(model_path):
        raise ValueError(f"predict --export_dir={model_path}: {MODEL_FILES[suffix]}")


def drawing_paths(files, draw_dir):
    """Where `--draw` writes each file's picture: DIR/<file name>.png, numbered when two files
    share a name."""
    paths, seen = [], {}
    for path in files:
        stem = path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "image"
        seen[stem] = seen.get(stem, 0) + 1
        suffix = f"_{seen[stem]}" if seen[stem] > 1 else ""
        paths.append(f"{draw_dir.rstrip('/')}/{stem}{suffix}.png")
    return paths


def predict_files(model_path, files, top_k=5, min_score=None, draw_dir=None, weights=None):
    """(the task's serving module, one Prediction per file, in order, a folder's images in its
    place); failures carry their
    error. With `draw_dir`, each image is also written there as a PNG with its results drawn
    (the serving module's draw: boxes and labels of a detector). `weights`: see predictor."""
    if model_path:
        check_model_path(model_path)
    files = image_files(files)
    shown, run = predictor(model_path, top_k, min_score, weights)
    drawings = drawing_paths(files, draw_dir) if draw_dir else [None] * len(files)
    if draw_dir:
        tf.io.gfile.makedirs(draw_dir)
    results = []
    for path, drawing in zip(files, drawings):
        try:
            with tf.io.gfile.GFile(path, "rb") as stream:
                data = stream.read()
            result = run(data)
            if drawing:
                shown.draw(data, result, drawing)
                result = {**result, "drawing": drawing}
            results.append(Prediction(path, result))
        except (tf.errors.OpError, OSError, ValueError) as error:
            results.append(Prediction(path, {}, _first_line(error)))
    return shown, results


def format_json(source, predictions):
    """What `predict --json` prints: one JSON object of the model and every file's result."""
    return json.dumps({"model": source, "predictions": [p.as_dict() for p in predictions]})


def format_text(shown, predictions):
    """The text `predict` prints: each file's result as its task's serving module formats it."""
    lines = []
    for prediction in predictions:
        if prediction.error:
            lines.append(f"{prediction.file}: error: {prediction.error}")
            continue
        lines.append(prediction.file)
        lines.extend(shown.format_result(prediction.result))
    return "\n".join(lines)
