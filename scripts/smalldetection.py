"""What the small-detection scripts share (imported from scripts/, which `python scripts/X.py`
puts first on the path): the three small sets of real pixels, the detect_folder recipe run as
a user runs it, and the JSON lines a killed run resumes from.

Sets (tasks/detection/photo_sets.py, digit_scenes.py), each with validation from regions
training never sees: `sky` (Hubble deep-field sources, 2 classes, median 7 px), `coins` (coins
pasted on real backgrounds, 16-48 px), `digits` (digit scenes, 10 classes, 24-128 px); 128-px
pictures.
"""

import importlib.util
import json
import os
import subprocess
import tempfile
import time

import keras

from efficientnet_tf.tasks.detection import digit_scenes, photo_sets
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = "docs/results"  # the records, relative to ROOT
SETS = ("sky", "coins", "digits")


def detect_folder_recipe():
    spec = importlib.util.spec_from_file_location(
        "detect_folder", os.path.join(ROOT, "experiments", "detect_folder.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


def write_set(name, root, train_images, eval_images):
    """{split: (annotations, images)} of set `name`, written under root."""
    if name == "digits":
        digit_scenes.write_digit_scenes(root, image_size=128, train_images=train_images,
                                        eval_images=eval_images)
        return {split: (f"{root}/{split}/annotations.json", f"{root}/{split}/images")
                for split in ("train", "eval")}
    return photo_sets.make(name, root, train_images=train_images, eval_images=eval_images)


def flips(name):
    """Whether the set's pictures may be mirrored (digits may not)."""
    return name != "digits"


def ours(paths, epochs, seed, overrides=(), random_flip=True):
    """COCO AP, AP50, wall seconds and input size of the detect_folder recipe, configured as a
    user would (the folders, the epochs), with `overrides` (KEY=VALUE) on top."""
    config = detect_folder_recipe()()
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"], config.data[f"{split}_images"] = paths[split]
    config.data.random_flip = random_flip
    config.train.epochs = epochs
    config.train.seed = seed
    config.data.deterministic = True
    for item in overrides:
        config_lib.override(config, item)
    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        results = trainer.train_and_evaluate(config, workdir)
        return {"AP": results["eval_AP"], "AP50": results["eval_AP50"],
                "seconds": time.perf_counter() - start,
                "image_size": results["eval_image_size"]}


def results(name):
    """docs/results/`name`: where the scripts keep the runs the README reports, so a later
    session (or a reader) resumes or checks them from the repository."""
    return os.path.join(ROOT, RESULTS, name)


def finished(path, key):
    """{key(row): row} of the JSON lines at `path` (none if it does not exist)."""
    done = {}
    if os.path.exists(path):
        with open(path) as stream:
            for line in stream:
                row = json.loads(line)
                done[key(row)] = row
    return done


def commit():
    """The checkout's commit, with "+changes" when files differ from it (None outside git): the
    recipe a recorded run measured. The records under docs/results/ do not count: a run that
    appends to them changes no recipe."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                  "--untracked-files=no", "--", ".", f":!{RESULTS}"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if changed else "")


def append(path, row):
    """Appends `row`, with the commit that measured it, as one JSON line."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as stream:
        stream.write(json.dumps({**row, "commit": commit()}) + "\n")
