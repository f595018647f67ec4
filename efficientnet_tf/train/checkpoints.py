"""Checkpoints that survive crashes, and initialising a model from another run or from Keras files.

tf.train.CheckpointManager writes a checkpoint's files first and then, atomically, the state file
that names the latest one: a process killed mid-save leaves the previous checkpoint as the latest.
If the latest is damaged anyway (a partial upload, a disk error), restoring falls back to the one
before it.
"""

import json

import tensorflow as tf
from absl import logging

import efficientnet_tf
from efficientnet_tf.models import weights as weights_lib
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import optim

CONFIG_FILE = "config.json"
UNRELIABLE_STORAGE = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                      tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError,
                      tf.errors.AbortedError, tf.errors.ResourceExhaustedError,
                      tf.errors.CancelledError)


class Checkpoints:
    """The run's checkpoint manager: save every N steps, keep K, restore the newest good one."""

    def __init__(self, directory, keep, restore_from=None, **trackables):
        """Saves into `directory`; restores from `restore_from` (default: the same directory).

        Multi-worker runs save on every worker (the save is a collective), but only the chief
        into the workdir; the others save into scratch and restore from the chief's workdir, so
        that all workers resume from the same state.
        """
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
        self.restore_from = restore_from or directory

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def save(self, step):
        path = self.manager.save(checkpoint_number=step)
        logging.info("saved checkpoint %s", path)
        return path

    def restore_latest(self):
        """Restores the newest readable checkpoint; returns its path or None (fresh start)."""
        if self.restore_from == self.manager.directory:
            candidates = self.manager.checkpoints
        else:
            state = tf.train.get_checkpoint_state(self.restore_from)
            candidates = list(state.all_model_checkpoint_paths) if state else []
        for path in reversed(candidates):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError,
                    RuntimeError) as error:
                # A damaged checkpoint (truncated, a file missing) is skipped; a storage outage
                # or a permission problem stops the run instead of resuming from an older state
                # than the other workers, or throwing away progress.
                if isinstance(error, UNRELIABLE_STORAGE):
                    raise
                logging.warning("checkpoint %s cannot be restored (%s); trying the one before",
                                path, str(error).splitlines()[0])
                continue
            logging.info("restored checkpoint %s", path)
            return path
        return None


def run_config(checkpoint_path):
    """The config.json of the run that wrote `checkpoint_path` (a workdir or checkpoint prefix)."""
    directory = checkpoint_path if tf.io.gfile.isdir(checkpoint_path) else checkpoint_path.rsplit(
        "/", 1)[0]
    path = f"{directory}/{CONFIG_FILE}"
    if not tf.io.gfile.exists(path):
        raise ValueError(f"no {CONFIG_FILE} beside {checkpoint_path!r}: is it a checkpoint of "
                         "efficientnet-tf train?")
    with tf.io.gfile.GFile(path) as stream:
        return json.load(stream)


def load_trained_model(checkpoint_path):
    """(model, checkpoint prefix, run config) of one of our runs: a workdir (its newest
    checkpoint) or a checkpoint prefix. The model holds the EMA weights when the run kept them."""
    saved = run_config(checkpoint_path)
    prefix = (tf.train.latest_checkpoint(checkpoint_path)
              if tf.io.gfile.isdir(checkpoint_path) else checkpoint_path)
    if prefix is None:
        raise ValueError(f"{checkpoint_path!r} holds no checkpoint")
    model = efficientnet_tf.create_model(saved["model"]["name"],
                                         num_classes=saved["resolved"]["num_classes"])
    ema = optim.ExponentialMovingAverage(model)
    checkpoint = tf.train.Checkpoint(model=model, ema=ema)
    checkpoint.restore(prefix).expect_partial()
    if saved["train"]["ema_decay"]:
        ema.copy_to_model()
    return model, prefix, saved


def initialize(model, spec, path):
    """Loads `path` into `model`: one of our checkpoints (EMA weights) or a Keras weights file.

    The classifier is re-initialised when the number of classes differs. Returns the names of
    what was skipped, and says so in the log.
    """
    if path.endswith(".h5"):
        report = weights_lib.load_weights(model, spec, path)
        skipped = report.skipped
    else:
        source, prefix, _ = load_trained_model(path)
        ours = {layer.name: layer for layer in weights_lib.weighted_layers(model)}
        theirs = {layer.name: layer for layer in weights_lib.weighted_layers(source)}
        skipped = sorted(set(ours) ^ set(theirs))
        for name in sorted(set(ours) & set(theirs)):
            values = theirs[name].get_weights()
            if [v.shape for v in values] != [tuple(w.shape) for w in ours[name].weights]:
                if name != weights_lib.CLASSIFIER:
                    raise ValueError(f"init_from {path!r}: layer {name!r} has other shapes; the "
                                     f"checkpoint holds {source.name}, not {model.name}")
                skipped.append(f"{name} (other number of classes: re-initialised)")
                continue
            ours[name].set_weights(values)
        path = prefix
    logging.info("initialised from %s; skipped: %s", path, "; ".join(skipped) or "nothing")
    return skipped


def save_config(config, workdir, resolved):
    """WORKDIR/config.json: the full config plus what the run resolved (classes, steps, ...)."""
    payload = json.loads(config.to_json_best_effort())
    payload["resolved"] = resolved
    with tf.io.gfile.GFile(f"{workdir}/{CONFIG_FILE}", "w") as stream:
        stream.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_config(workdir):
    """The ConfigDict a run in `workdir` used (for `eval` and `export` without --config)."""
    return config_from_dict(run_config(workdir))


def config_from_dict(saved):
    """A ConfigDict from a run's config.json contents (what it resolved is left out)."""
    saved = {key: value for key, value in saved.items() if key != "resolved"}
    config = config_lib.base_config()
    with config.unlocked():
        config.update_from_flattened_dict(_flatten(saved))
    return config


def _flatten(nested, prefix=""):
    flat = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
