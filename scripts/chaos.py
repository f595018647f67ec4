"""Kill a training run at random moments and check that it always comes back.

    python scripts/chaos.py [--kills=12] [--seed=0] [--workdir=DIR]

Runs `efficientnet-tf train` on the digits (experiments/digits.py: efficientnetv2-test,
progressive learning over 4 stages) for a short run with frequent checkpoints, SIGKILLs it
`--kills` times at random moments (while TensorFlow loads, while it trains, while it saves,
at a stage switch), and restarts the same command after each kill. Then it lets the run finish.
Checked after every restart:
  - it resumes at or after the last checkpoint the killed process logged as saved (never from
    an older one, never from scratch once a checkpoint exists);
  - it resumes in the right stage: the stage whose steps hold the resume step, at its size;
and at the end:
  - the run finished (results.json at the last step) and
  - every checkpoint on disk reads back completely (every tensor of it).
The last line printed is one JSON object: kills, resumed_ok, corrupt_checkpoints, steps,
seconds. The exit code is 1 if any check failed.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, CHECKPOINT_EVERY, LOG_EVERY = 240, 20, 10

flags.DEFINE_integer("kills", 12, "How many times to SIGKILL the run.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")
flags.DEFINE_float("max_delay", 22.0, "Latest kill moment, in seconds after a (re)start.")
flags.DEFINE_string("workdir", None, "Run directory (default: a new temporary one).")
FLAGS = flags.FLAGS

SAVED = re.compile(r"saved checkpoint \S*ckpt-(\d+)")
RESUMED = re.compile(r"resuming at step (\d+) of")
STAGE_ROW = re.compile(r"\]\s+(\d+)\s+(\d+)-(\d+)\s+(\d+)\s")  # the start-of-run stage table
STAGE_START = re.compile(r"stage (\d+)/\d+: steps (\d+)-(\d+), image size (\d+)")


def command(root, workdir):
    return [sys.executable, "-m", "efficientnet_tf.main", "train",
            f"--config=experiments/digits.py:{root}", f"--workdir={workdir}",
            f"--config.train.steps={STEPS}",
            f"--config.train.checkpoint_every_steps={CHECKPOINT_EVERY}",
            f"--config.train.log_every_steps={LOG_EVERY}", "--config.train.keep_checkpoints=3"]


def start(args, log_path):
    log = open(log_path, "w")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log


def check_restart(text, last_saved, stages):
    """Problems with a restarted process's log `text`, given the last saved step before it."""
    problems = []
    resumed = RESUMED.search(text)
    step = int(resumed.group(1)) if resumed else 0
    if last_saved and not resumed and "stage " in text:
        problems.append(f"started from scratch although ckpt-{last_saved} was saved")
    elif step < last_saved:
        problems.append(f"resumed at step {step}, before the saved step {last_saved}")
    first_stage = STAGE_START.search(text)
    if first_stage and stages:
        index, begin, end, size = map(int, first_stage.groups())
        low, high, expected_size = stages[index - 1]
        if begin != step or not low <= step < high or end != high or size != expected_size:
            problems.append(f"resumed at step {step} in stage {index} (steps {begin}-{end}, "
                            f"{size} px); the stage table says steps {low}-{high} at "
                            f"{expected_size} px")
    return step, problems


def unreadable_checkpoints(workdir):
    """The checkpoints in `workdir` that do not read back completely."""
    import tensorflow as tf  # after the runs: this process never trains

    bad = []
    for index_file in sorted(tf.io.gfile.glob(f"{workdir}/ckpt-*.index")):
        prefix = index_file[:-len(".index")]
        try:
            reader = tf.train.load_checkpoint(prefix)
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except Exception as error:  # noqa: BLE001 -- any failure to read is what we count
            bad.append(f"{prefix}: {str(error).splitlines()[0]}")
    return bad


def main(argv):
    del argv
    rng = random.Random(FLAGS.seed)
    base = FLAGS.workdir or tempfile.mkdtemp(prefix="efficientnet_tf_chaos_")
    workdir, root = f"{base}/run", f"{base}/digits"
    sys.path.insert(0, ROOT)
    from efficientnet_tf.data import digits
    digits.write_digits(root)
    args = command(root, workdir)
    began, last_saved, stages, problems, resumed_ok = time.perf_counter(), 0, [], [], 0
    for kill in range(FLAGS.kills + 1):
        log_path = f"{base}/attempt-{kill:02d}.log"
        process, log = start(args, log_path)
        final = kill == FLAGS.kills
        if not final:
            delay = rng.uniform(2.0, FLAGS.max_delay)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()
        text = open(log_path).read()
        if not stages:
            stages = [(int(low), int(high), int(size))
                      for _, low, high, size in STAGE_ROW.findall(text)]
        if kill:
            step, found = check_restart(text, last_saved, stages)
            problems += [f"restart {kill}: {p}" for p in found]
            resumed_ok += not found
        saved = [int(s) for s in SAVED.findall(text)]
        last_saved = max([last_saved] + saved)
        state = "finished" if process.returncode == 0 else f"killed (exit {process.returncode})"
        print(f"attempt {kill}: {state}; last saved step {last_saved}", flush=True)
        if final and process.returncode != 0:
            problems.append(f"the final run failed (exit {process.returncode}); see {log_path}")
    results_path = f"{workdir}/results.json"
    steps = json.load(open(results_path))["steps"] if os.path.exists(results_path) else None
    if steps != STEPS:
        problems.append(f"results.json says {steps} steps, not {STEPS}")
    corrupt = unreadable_checkpoints(workdir)
    problems += [f"unreadable checkpoint {c}" for c in corrupt]
    for problem in problems:
        print(f"FAILED: {problem}")
    print(json.dumps({"kills": FLAGS.kills, "resumed_ok": resumed_ok,
                      "corrupt_checkpoints": len(corrupt), "steps": steps,
                      "problems": len(problems),
                      "seconds": round(time.perf_counter() - began, 1)}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    app.run(main)
