"""A real photograph: scikit-image's `coins` (24 Greek coins in 4 rows of 6, 303 x 384 gray).

A detector trained through the trainer on augmented copies of that one photo (the 8 flips and
quarter turns at 3 gammas, plus the pipeline's own flips and scale jitter; the original is one of
the copies) finds the coins in the original photo, read through the serving function `predict`
uses: the detection path learns a real photograph (this does not test generalisation).
Measured, 400 steps of batch 8 at 256 px, efficientdet-test (110 K parameters): seeds 0 to 3
found all 24 coins among their detections scored >= 0.3 (4, 2, 10 and 1 other boxes there), and
23, 24, 24 and 24 of them among their 24 best-scored detections; COCO AP 61-66%, AP50 100%. At
200 steps seed 1 found only 17 of its best 24: the run is short, not generous.
"""

import numpy as np
import pytest
import skimage.data
from imagedata import write_coco_split

from efficientnet_tf import demo, predict
from efficientnet_tf.tasks.detection.photo_sets import COINS, turned_copies
from efficientnet_tf.train import trainer

STEPS = 400
FOUND_AT_LEAST = 20  # of 24 (the bar); measured 23-24 of the best 24


def iou(a, b):
    height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = height * width
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def coins_found(detections, truth=COINS):
    """How many true boxes the detections find at IoU >= 0.5, best score first, each true box
    found at most once (COCO's greedy matching)."""
    free = set(range(len(truth)))
    for detection in sorted(detections, key=lambda d: -d["score"]):
        best = max(free, key=lambda i: iou(detection["box"], truth[i]), default=None)
        if best is not None and iou(detection["box"], truth[best]) >= 0.5:
            free.remove(best)
    return len(truth) - len(free)


def test_the_copies_move_the_boxes_with_the_pixels():
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[2:10, 5:20] = 255  # a bright block and its box
    for image, (box,) in turned_copies(pixels, [(2, 5, 10, 20)]):
        y0, x0, y1, x1 = box
        bright = np.argwhere(image[..., 0] > 128)
        assert tuple(bright.min(0)) == (y0, x0) and tuple(bright.max(0) + 1) == (y1, x1)
    assert coins_found([{"box": COINS[0], "score": 0.9}, {"box": COINS[0], "score": 0.8}]) == 1


@pytest.mark.slow
@pytest.mark.release  # 3 minutes each; the slow tier's learnability guard (test_adapt.py) fits
# coins. The precisions: automl's float32; our defaults on TPU (bfloat16) and GPU (float16 with
# loss scaling). Measured, seed 0: AP 62.0, 62.8 and 61.6%, AP50 100% each.
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_a_detector_trained_on_copies_of_the_coins_photo_finds_its_coins(tmp_path, precision):
    photo = np.stack([skimage.data.coins()] * 3, axis=-1)
    root = f"{tmp_path}/data"
    for split, pictures in (("train", turned_copies(photo, COINS)), ("eval", [(photo, COINS)])):
        write_coco_split(f"{root}/{split}", [(pixels, [(*box, 1) for box in boxes])
                                             for pixels, boxes in pictures], {1: "coin"})
    config = demo.detection_config(root)  # the demo's recipe, with the tests' smaller detector
    config.model.name = "efficientdet-test"
    config.data.random_flip = True  # a mirrored coin is a coin
    config.data.shuffle_buffer = 64
    config.train.batch_size = 8
    config.train.epochs = 0
    config.train.steps = STEPS
    config.train.checkpoint_every_steps = STEPS
    config.optimizer.lr_per_256 = 1e-3 * 256 / 8
    config.optimizer.warmup_epochs = 0.0
    config.eval.batch_size = 1
    config.train.precision = precision
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(config, workdir)
    print(f"{precision}: AP {results['eval_AP']:.4f} AP50 {results['eval_AP50']:.4f}")
    assert results["eval_AP50"] >= 0.9, results["eval_summary"]
    _, (found,) = predict.predict_files(workdir, [f"{root}/eval/images/0.png"], min_score=0.0)
    detections = found.result["detections"]
    best = sorted(detections, key=lambda d: -d["score"])[:len(COINS)]
    confident = [d for d in detections if d["score"] >= 0.3]  # predict's default threshold
    assert coins_found(best) >= FOUND_AT_LEAST, best
    assert coins_found(confident) >= FOUND_AT_LEAST, confident
    # measured 4, 2, 10 and 1 other boxes above 0.3 with seeds 0-3 (the best 24: 23-24 coins)
    assert len(confident) - coins_found(confident) <= 16, confident
