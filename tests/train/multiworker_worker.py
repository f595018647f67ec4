"""One process of the two-worker MultiWorkerMirroredStrategy test (test_multiworker.py).

Usage: python multiworker_worker.py DATA_ROOT WORKDIR OUT_DIR STEPS, with TF_CONFIG set. Trains
through the real trainer and writes this worker's final weights and results to OUT_DIR.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from efficientnet_tf.train import distribute, trainer  # noqa: E402
from trainutil import tiny_config  # noqa: E402


def main(root, workdir, out, steps):
    logging.set_verbosity(logging.INFO)
    strategy = distribute.resolve()  # MultiWorkerMirroredStrategy from TF_CONFIG, first thing
    captured = {}
    build_state = trainer.build_state

    def capture(*args, **kwargs):  # keeps a handle on the model the real trainer builds
        captured["state"] = build_state(*args, **kwargs)
        return captured["state"]

    trainer.build_state = capture
    config = tiny_config(root, **{"train.steps": steps, "train.checkpoint_every_steps": 4,
                                  "train.log_every_steps": 2})
    results = trainer.train_and_evaluate(config, workdir, strategy)
    index, count = distribute.worker(strategy)
    state = captured["state"]
    np.savez(os.path.join(out, f"worker{index}.npz"),
             *[v.numpy() for v in state.model.weights])
    with open(os.path.join(out, f"worker{index}.json"), "w") as stream:
        json.dump({"results": results, "workers": count, "chief": distribute.is_chief(strategy),
                   "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
                   "replicas": strategy.num_replicas_in_sync}, stream)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
