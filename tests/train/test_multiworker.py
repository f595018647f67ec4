"""MultiWorkerMirroredStrategy with two real worker processes on 127.0.0.1 (issue: multi-worker).

Both workers train the same run; only the chief writes the workdir; their weights end identical;
the chief's checkpoint resumes in a single-process run.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.train import trainer
from trainutil import tiny_config

pytestmark = pytest.mark.slow  # two TensorFlow processes, about a minute: run by .ci/run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def two_workers(photo_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("multiworker")
    workdir, out = str(base / "run"), str(base / "out")
    os.makedirs(out)
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes, logs = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        # Each worker gets its own temp dir, to check that the non-chief cleans up after itself.
        scratch = str(base / f"tmp{index}")
        os.makedirs(scratch)
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=scratch,
                   TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
        log = open(base / f"worker{index}.log", "w")
        logs.append(base / f"worker{index}.log")
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multiworker_worker.py"), photo_folder, workdir,
             out, "8"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [process.wait(timeout=420) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    texts = [path.read_text() for path in logs]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in texts)
    return {"workdir": workdir, "out": out, "logs": texts, "base": base,
            "info": [json.load(open(os.path.join(out, f"worker{i}.json"))) for i in range(2)],
            "weights": [np.load(os.path.join(out, f"worker{i}.npz")) for i in range(2)]}


def test_both_workers_finish_with_identical_weights(two_workers):
    first, second = two_workers["info"]
    assert first["multi_worker"] and first["replicas"] == 2
    assert [first["chief"], second["chief"]] == [True, False]
    assert first["results"]["steps"] == second["results"]["steps"] == 8
    # Eval metrics are all-reduced over both workers' shards: the same numbers on both.
    assert first["results"]["eval_top1"] == second["results"]["eval_top1"]
    a, b = two_workers["weights"]
    assert len(a.files) == len(b.files) > 50
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    assert any(np.abs(a[name]).sum() > 0 for name in a.files)


def test_only_the_chief_writes_and_the_other_worker_cleans_up(two_workers):
    workdir = two_workers["workdir"]
    names = set(os.listdir(workdir))
    assert {"config.json", "results.json", "checkpoint", "train", "eval"} <= names
    assert tf.train.latest_checkpoint(workdir).endswith("ckpt-8")
    # The non-chief saved into a scratch dir (saving is a collective) and removed it.
    assert not [n for n in os.listdir(two_workers["base"] / "tmp1") if "efficientnet" in n]
    chief_log, other_log = two_workers["logs"]
    assert "step 8/8" in chief_log and "step 8/8" not in other_log  # progress: chief only
    # Every worker reports its own input pipeline.
    assert "worker 1/2 at step 8: input pipeline decoded" in chief_log
    assert "worker 2/2 at step 8: input pipeline decoded" in other_log


def test_the_chiefs_checkpoint_resumes_in_one_process(two_workers, photo_folder, tmp_path):
    config = tiny_config(photo_folder, **{"train.steps": 10, "train.checkpoint_every_steps": 4,
                                          "train.log_every_steps": 2})
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    state = trainer.build_state(run, tf.distribute.get_strategy(), tempfile.mkdtemp(),
                                restore_from=two_workers["workdir"])
    assert state.checkpoints.restore_latest().endswith("ckpt-8")
    assert state.step == 8
    weights = two_workers["weights"][0]
    for index, variable in enumerate(state.model.weights):
        np.testing.assert_array_equal(variable.numpy(), weights[f"arr_{index}"])
    # And training goes on from there on one process.
    workdir = str(tmp_path / "run")
    shutil.copytree(two_workers["workdir"], workdir)
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 10 and results["steps_this_run"] == 2
