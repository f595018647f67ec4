"""Detection through the real trainer (tasks/detection.py): a COCO JSON folder of coloured boxes
trains, checkpoints, evaluates with COCO AP, and `eval` of the workdir gives the same numbers."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.train import config as config_lib, trainer

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}


def write_split(directory, count, seed):
    """`count` 64 x 48 noise images with 1-2 solid boxes each, and their COCO JSON."""
    rng = np.random.RandomState(seed)
    tf.io.gfile.makedirs(f"{directory}/images")
    images, annotations = [], []
    for index in range(count):
        pixels = rng.randint(0, 120, size=(48, 64, 3)).astype("uint8")
        for _ in range(rng.randint(1, 3)):
            name = list(COLOURS)[rng.randint(2)]
            x, y = rng.randint(0, 40), rng.randint(0, 28)
            w, h = rng.randint(12, 24), rng.randint(12, 20)
            pixels[y:y + h, x:x + w] = COLOURS[name]
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": 5 if name == "red" else 9,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        with tf.io.gfile.GFile(f"{directory}/images/{index}.png", "wb") as stream:
            stream.write(buffer.getvalue())
        images.append({"id": index + 1, "file_name": f"{index}.png", "width": 64, "height": 48})
    payload = {"images": images, "annotations": annotations,
               "categories": [{"id": 5, "name": "red"}, {"id": 9, "name": "blue"}]}
    with tf.io.gfile.GFile(f"{directory}/annotations.json", "w") as stream:
        stream.write(json.dumps(payload))


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
    config.augment.kind = "none"
    config.train.image_size = 64
    config.train.batch_size = 4
    config.train.steps = 8
    config.train.log_every_steps = 4
    config.train.checkpoint_every_steps = 4
    config.train.seed = 0
    config.train.label_smoothing = 0.0
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
