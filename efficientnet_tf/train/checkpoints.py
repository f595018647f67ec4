"""Checkpoints that survive crashes: save every N steps, keep K, restore the newest good one.

tf.train.CheckpointManager writes a checkpoint's files first and then, atomically, the state file
that names the latest one: a process killed mid-save leaves the previous checkpoint as the latest.
If the latest is damaged anyway (a partial upload, a disk error), restoring falls back to the one
before it.
"""

import tensorflow as tf
from absl import logging

UNRELIABLE_STORAGE = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                      tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError,
                      tf.errors.AbortedError, tf.errors.ResourceExhaustedError,
                      tf.errors.CancelledError)


def remove_leftovers(directory):
    """Removes what a save killed midway leaves in `directory`: the checkpoint being written
    (`ckpt-N_temp/`, never named by the state file) and the state file's temporary copy
    (`checkpoint.tmp*`), and a JSON file's half-written copy (`*.json.tmp-*`, report.py).
    Returns the paths removed."""
    removed = []
    for path in sorted(tf.io.gfile.glob(f"{directory}/ckpt-*_temp")
                       + tf.io.gfile.glob(f"{directory}/checkpoint.tmp*")
                       + tf.io.gfile.glob(f"{directory}/*.json.tmp-*")):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
        removed.append(path)
    if removed:
        logging.info("removed what interrupted saves left: %s", ", ".join(removed))
    return removed


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
                # Only what this manager tracks must match (eval and export track no optimizer).
                self.checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
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
