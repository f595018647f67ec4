"""`efficientnet-tf export`: a trained model as a SavedModel for TF Serving, a .keras file, or
TFLite.

The task makes its serving module (tasks/<task>/serving.py: signatures, metadata, TFLite
conversion); this module only picks the format and writes it, through serving.py.
"""

from efficientnet_tf import serving, tasks
from efficientnet_tf.train import workdir as workdir_lib

FORMATS = ("saved_model", "keras", "tflite")


def export(task, model, export_path, export_format="saved_model", quantize="none", top_k=5,
           calibration_count=64, nms=None):
    """Exports a trained model (its EMA weights, workdir.restore_model) of `task` as
    `export_format`; returns the path written. keras: the trainable model as a .keras file;
    tflite: a .tflite file, float32, dynamic-range or int8 (a classifier's, calibrated on
    `calibration_count` eval images, which needs the task's data source). `nms`: a detector's
    serving NMS method ("hard", the default, or "gaussian")."""
    if export_format not in FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; use one of {FORMATS}")
    if export_format == "keras":  # the trainable form, for Keras users who fine-tune
        return serving.save_keras(model, export_path)
    module = task.serving_module(model, top_k, nms)
    if export_format == "saved_model":
        return serving.save_module(module, export_path)
    flatbuffer = module.tflite_bytes(quantize, lambda: task.eval_dataset(batch_size=1),
                                     calibration_count)
    return serving.write_bytes(export_path, flatbuffer)


def export_workdir(workdir, export_path, export_format="saved_model", quantize="none",
                   top_k=5, calibration_count=64, nms=None):
    """Exports the newest good checkpoint of the run in `workdir` (its EMA weights) as
    `export_format` (export); returns the path written."""
    run = workdir_lib.load_run(workdir, with_source=quantize == "int8")
    model, run, _ = workdir_lib.restore_model(workdir, run)
    return export(tasks.create(run), model, export_path, export_format, quantize, top_k,
                  calibration_count, nms)
