"""A run directory (WORKDIR): its config.json, and the trained model its checkpoints hold.

WORKDIR/config.json holds the config the run used and, under "resolved", the Run (train/run.py)
it resolved from it; eval, export and predict rebuild the Run from there and never re-derive a
rule. restore_model is the one way a trained model comes back (EMA weights when the run kept
them), for eval, export, predict and fine-tuning (initialize): from a workdir it takes the
newest checkpoint that reads back, falling back past damaged ones and saying why.
"""

import json

import keras
import tensorflow as tf
from absl import logging

from efficientnet_tf import tasks
from efficientnet_tf.models import weights as weights_lib
from efficientnet_tf.train import checkpoints as checkpoints_lib
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import files, optim
from efficientnet_tf.train.run import Run

CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"  # {split: {class: images}} of an image folder (trainer)


def directory_of(path):
    """The run directory of a workdir or of a checkpoint prefix in it."""
    path = path.rstrip("/")
    return path if tf.io.gfile.isdir(path) else path.rsplit("/", 1)[0]


def write_config(workdir, run):
    """WORKDIR/config.json: the full config plus the resolved Run."""
    payload = json.loads(run.config.to_json_best_effort())
    payload["resolved"] = run.to_dict()
    files.write_json(f"{workdir}/{CONFIG_FILE}", payload)  # whole: resume and searches read it


def read_record(path):
    """The contents of the config.json of the run at `path` (a workdir or checkpoint prefix)."""
    if not tf.io.gfile.exists(path) and not tf.io.gfile.glob(f"{path}.index"):
        raise ValueError(f"{path!r} does not exist")
    record_path = f"{directory_of(path)}/{CONFIG_FILE}"
    if not tf.io.gfile.exists(record_path):
        raise ValueError(f"no {CONFIG_FILE} in {directory_of(path)!r}: is {path!r} a workdir "
                         "of efficientnet-tf train?")
    with tf.io.gfile.GFile(record_path) as stream:
        return json.load(stream)


def recorded_seed(workdir):
    """The seed a run in `workdir` recorded, or None (no run there yet)."""
    if not workdir or not tf.io.gfile.exists(f"{workdir}/{CONFIG_FILE}"):
        return None
    return read_record(workdir).get("resolved", {}).get("seed")


def _what_it_trains(resolved):
    """What a run's checkpoints hold the variables of: (task, model, classes)."""
    names = resolved.get("class_names")
    return (resolved.get("task", "classification"), resolved["spec"]["name"],
            resolved["model"]["num_classes"], tuple(names) if names else None)


def check_continues(workdir, run):
    """A ValueError unless `run` can continue what `workdir` holds: a workdir with a
    checkpoint of another task, model or classes (another dataset) is a user's mistake, not a
    damaged checkpoint to skip; retraining there would overwrite its config and classes."""
    if not tf.train.get_checkpoint_state(workdir) or not tf.io.gfile.exists(
            f"{workdir}/{CONFIG_FILE}"):
        return
    before = _what_it_trains(read_record(workdir)["resolved"])
    now = _what_it_trains(run.to_dict())
    if before == now:
        return
    differences = [f"{label} {old} there, {new} here" for label, old, new in
                   zip(("task", "model", "classes"), before[:3], now[:3]) if old != new]
    if not differences:
        gone = [name for name in before[3] or () if name not in (now[3] or ())]
        added = [name for name in now[3] or () if name not in (before[3] or ())]
        differences.append(f"class names: {', '.join(gone[:3]) or 'the same'} there, "
                           f"{', '.join(added[:3]) or 'in another order'} here")
    raise ValueError(f"workdir {workdir!r} holds checkpoints of another run "
                     f"({'; '.join(differences)}): they cannot continue with this config; "
                     "train into another --workdir (or delete this one)")


def config_from_dict(saved):
    """A ConfigDict from a run's config.json contents (what it resolved is left out)."""
    return config_lib.from_dict({key: value for key, value in saved.items()
                                 if key != "resolved"})


def load_run(path, with_source=False):
    """The Run recorded at `path`; with_source: with its data source, for what reads the data
    (evaluation, int8 calibration)."""
    record = read_record(path)
    config = config_from_dict(record)
    source = (tasks.get(record["resolved"]["task"]).make_source(config.data) if with_source
              else None)
    return Run.from_dict(record["resolved"], source=source, config=config)


def _restore(path, trackables):
    """Restores `trackables` from `path`: a checkpoint prefix as it is, a workdir from its newest
    readable checkpoint. Returns the prefix restored."""
    path = path.rstrip("/")
    if not tf.io.gfile.isdir(path):
        tf.train.Checkpoint(**trackables).restore(path).expect_partial()
        return path
    restored = checkpoints_lib.Checkpoints(path, 1, **trackables).restore_latest()
    if restored is None:
        raise ValueError(f"{path!r} holds no checkpoint that can be restored")
    return restored


def restore_model(path, run=None, precision="float32", use_ema=True):
    """(model, run, checkpoint prefix) of a trained run at `path` (a workdir or a checkpoint
    prefix): the model holds the EMA weights when the run kept them (and `use_ema`). Builds
    under the current strategy scope; `precision` is the Keras policy (float32: serving)."""
    run = run or load_run(path)
    keras.mixed_precision.set_global_policy(precision)
    model = tasks.create(run).build_model(for_serving=precision == "float32")
    trackables = {"model": model}
    if run.optimization.ema_decay:
        trackables["ema"] = optim.ExponentialMovingAverage(model)
    prefix = _restore(path, trackables)
    if "ema" in trackables and use_ema:
        trackables["ema"].copy_to_model()
    return model, run, prefix


def is_run(path):
    """Whether `path` (an init_from value) is one of our runs: a workdir, or a checkpoint prefix
    in one (its config.json beside it). A weights file kept in a workdir is not, nor a URL."""
    if weights_lib.download.is_url(path) or not weights_lib.exists(path):
        return False
    if not (tf.io.gfile.isdir(path) or tf.io.gfile.exists(f"{path}.index")):
        return False
    return tf.io.gfile.exists(f"{directory_of(path)}/{CONFIG_FILE}")


def recorded_input_scaling(workdir):
    """The input scaling a run in `workdir` recorded, or None (no run there yet): a resumed run
    keeps it even if what init_from named is gone."""
    if not workdir or not tf.io.gfile.exists(f"{workdir}/{CONFIG_FILE}"):
        return None
    return read_record(workdir).get("resolved", {}).get("model", {}).get("input_scaling")


def init_input_scaling(path, spec):
    """The input scaling the weights at `path` (init_from) were trained with, where known: a
    run's recorded one, an official checkpoint's; None for a file."""
    if not path:
        return None
    if is_run(path):
        resolved = read_record(path)["resolved"]
        recorded = resolved["model"].get("input_scaling")
        return recorded or weights_lib.default_input_scaling(resolved["spec"]["name"])
    return weights_lib.implied_input_scaling(spec, path)


def initialize(task, model, path):
    """Loads `path` into `model` (config.init_from): one of our runs (its EMA weights), or
    pretrained weights (an official checkpoint by name or path, a Keras weights file: see
    models/weights). From a run, layers whose shapes differ are an error but for the task's
    REINITIALIZED_LAYERS (another number of classes), which stay freshly initialised; the
    pretrained loader re-initialises the class predictor likewise. Returns what was skipped,
    and says so in the log."""
    if not is_run(path):
        skipped = weights_lib.load_weights(model, task.run.spec, path).skipped
    else:
        keras_policy = keras.mixed_precision.global_policy().name
        source, _, path = restore_model(path, precision=keras_policy)
        ours = {layer.name: layer for layer in weights_lib.weighted_layers(model)}
        theirs = {layer.name: layer for layer in weights_lib.weighted_layers(source)}
        skipped = sorted(set(ours) ^ set(theirs))
        for name in sorted(set(ours) & set(theirs)):
            values = theirs[name].get_weights()
            if [v.shape for v in values] != [tuple(w.shape) for w in ours[name].weights]:
                if name not in task.REINITIALIZED_LAYERS:
                    raise ValueError(f"init_from {path!r}: layer {name!r} has other shapes; the "
                                     f"checkpoint holds {source.name}, not {model.name}")
                skipped.append(f"{name} (other shapes: re-initialised)")
                continue
            ours[name].set_weights(values)
    logging.info("initialised from %s; skipped: %s", path, "; ".join(skipped) or "nothing")
    return skipped
