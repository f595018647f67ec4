"""Detection through the real trainer (task.py): a COCO JSON folder of coloured boxes
trains, checkpoints, evaluates with COCO AP, `eval` of the workdir gives the same numbers, and
its exports (SavedModel and TFLite, on ram://) predict the boxes the workdir predicts."""

import json

import numpy as np
import pytest
import tensorflow as tf
from imagedata import write_coco_boxes as write_split

from efficientnet_tf import serving
from efficientnet_tf.tasks.detection import tflite as detection_tflite
from efficientnet_tf import export, predict
from efficientnet_tf.train import config as config_lib, trainer


def detection_config(root):
    config = config_lib.base_config()
    config.task = "detection"
    config.model.name = "efficientdet-test"
    config.data.source = "coco_json"
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{root}/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{root}/{split}/images"
    config.data.shuffle_buffer = 32
    config.data.deterministic = True
    config.train.image_size = 64
    config.train.batch_size = 4
    config.train.steps = 8
    config.train.log_every_steps = 4
    config.train.checkpoint_every_steps = 4
    config.train.seed = 0
    config.train.weight_decay = 4e-5
    config.train.grad_clip_norm = 10.0
    config.train.ema_decay = 0.0
    config.optimizer.name = "sgd"
    config.optimizer.lr_per_256 = 0.32
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.schedule = "cosine"
    config.eval.batch_size = 4
    return config


@pytest.mark.slow
def test_a_detection_run_trains_evaluates_with_coco_ap_and_eval_agrees(tmp_path):
    write_split(f"{tmp_path}/data/train", 16, seed=0)
    write_split(f"{tmp_path}/data/eval", 6, seed=1)
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(detection_config(f"{tmp_path}/data"), workdir)
    assert results["task"] == "detection" and results["steps"] == 8
    assert results["eval_examples"] == 6  # 6 images in 2 batches of 4: the padding not counted
    assert 0.0 <= results["eval_AP"] <= 1.0 and np.isfinite(results["eval_loss"])
    assert set(results) >= {"eval_AP50", "eval_AP75", "eval_AP/red", "eval_AP/blue"}
    assert np.isfinite(results["train_loss"]) and results["train_loss"] > 0
    recorded = json.loads(tf.io.gfile.GFile(f"{workdir}/config.json").read())
    assert recorded["resolved"]["class_names"] == ["red", "blue"]
    again = trainer.evaluate_workdir(workdir)
    assert again["step"] == 8
    np.testing.assert_allclose(again["AP"], results["eval_AP"], atol=1e-6)
    np.testing.assert_allclose(again["loss"], results["eval_loss"], rtol=1e-4)
    # exported to a TF filesystem that is not the local disk (gs:// stands in), then predict
    # on the export and on the workdir itself give the same boxes
    path = export.export_workdir(workdir, "ram://detection_run/export")
    assert serving.read_metadata(path)["task"] == "detection"
    assert serving.read_labels(path) == ["red", "blue"]
    image = f"{tmp_path}/data/eval/images/0.png"
    _, (served,) = predict.predict_files(path, [image], min_score=0.0)
    _, (restored,) = predict.predict_files(workdir, [image], min_score=0.0)
    assert served.error is None and len(served.result["detections"]) > 0
    for a, b in zip(served.result["detections"], restored.result["detections"]):
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-4
        np.testing.assert_allclose(a["box"], b["box"], atol=0.05)
    # the TFLite export through the same command path, on ram:// too: its best box, in the
    # image's pixels, is the SavedModel's
    flatbuffer = export.export_workdir(workdir, "ram://detection_run/model.tflite", "tflite")
    (found,) = detection_tflite.detect_encoded(tf.io.gfile.GFile(flatbuffer, "rb").read(),
                                     [tf.io.read_file(image).numpy()], 64)
    best = served.result["detections"][0]
    assert int(found["classes"][0]) == best["class"]
    assert abs(float(found["scores"][0]) - best["score"]) < 1e-3
    np.testing.assert_allclose(found["boxes"][0], best["box"], atol=0.05)
