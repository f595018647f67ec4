"""Does progressive learning pay off here, and where does the time of each stage go?

    python scripts/bench_progressive.py [--steps=1024 --min_size=64 --max_size=160]
        [--model=efficientnetv2-test] [--compile_model=efficientnetv2-s | --compile_model=]
        [--set=SECTION.KEY=VALUE ...]

Two runs of the same model, data, recipe and number of steps (V2 paper §4, Table 7, Figure 6):
(a) fixed: every stage at max_size; (b) progressive: the image grows from min_size to max_size.
Both are the embedded default run's recipe (efficientnet_tf/demo.py: 4 stages ramping dropout,
RandAugment and mixup, decoded images cached in memory) on scikit-learn's digits written as PNG
files, 1,500 scans for training and the 297 after them (other writers) held out; only the image
sizes differ. Accuracy: the held-out images at max_size, with the EMA weights. The sizes are
chosen so that the model, not the input pipeline, sets the pace (the breakdown shows it).

The breakdown, per stage of each run:
  model ms    one step of the stage's step function on one in-memory batch (no input pipeline)
  input img/s the stage's input pipeline alone (no model)
  run ms      a steady step of the run itself (both together, sharing the cores)
  switch s    what the stage cost beyond its steps: dataset, iterator, the step's trace, the
              first batches
and each run's final evaluation.

Stage switches of a large model (--compile_model, efficientnetv2-s by default; empty skips it):
its official stages, each run for two steps on one in-memory batch, as a graph (what this
machine trains with; on GPU and CPU the trainer hides this trace behind the stage before) and
with XLA-compiled steps (what a TPU runs: each stage is a new program, compiled at its first
step, which nothing hides). Reported: traces per stage and the first step's seconds beyond the
second's. This is the CPU's XLA compiler, not a TPU's, so the seconds give the order of
magnitude of a TPU's stage switch, not its figure; one trace per stage holds anywhere.

The last line printed is one JSON object: `time_ratio` (progressive / fixed wall seconds),
`fixed_accuracy`, `progressive_accuracy`, `compute_ratio` (the sizes' arithmetic: sum over the
steps of size^2 over steps x max_size^2), `stage_switch_s` (the progressive run's costliest
switch from one stage to the next; `first_stage_start_s` is the first stage's start, which
also decodes the files and has no stage before it to hide behind), the breakdown and the
compile figures. Both runs fix their seeds and TensorFlow's op order
(enable_op_determinism), so a second run gives the same accuracies; only the times vary.
"""

import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from efficientnet_tf import demo  # noqa: E402
from efficientnet_tf.data import samples  # noqa: E402
from efficientnet_tf.train import config as config_lib  # noqa: E402
from efficientnet_tf.train import loop as loop_lib  # noqa: E402
from efficientnet_tf.train import trainer  # noqa: E402

flags.DEFINE_integer("steps", 1024, "Steps of each run.")
flags.DEFINE_integer("batch", 64, "Batch size of each run.")
flags.DEFINE_integer("min_size", 64, "First stage's image size of the progressive run.")
flags.DEFINE_integer("max_size", 160, "Last stage's size, the fixed run's size and the eval size.")
flags.DEFINE_string("model", "efficientnetv2-test", "The variant both runs train.")
flags.DEFINE_string("compile_model", "efficientnetv2-s",
                    "Variant whose official stages are XLA-compiled (empty: skip).")
flags.DEFINE_integer("compile_batch", 2, "Batch of the XLA compile measurement.")
flags.DEFINE_multi_string("set", [], "SECTION.KEY=VALUE overrides of both runs' config, e.g. "
                          "train.prepare_next_stage=false data.cache=false (the state before "
                          "the stage-switch and decoding fixes).")
FLAGS = flags.FLAGS

MODEL_STEPS, INPUT_BATCHES = 10, 30  # steps / batches timed in the breakdown, after a warm-up


def config_for(train_root, eval_root, fixed):
    config = demo.digits_config(train_root)
    config.data.eval_root = eval_root
    config.data.deterministic = True
    config.model.name = FLAGS.model
    config.train.steps = FLAGS.steps
    config.train.batch_size = FLAGS.batch
    config.train.log_every_steps = FLAGS.steps // 8
    config.train.checkpoint_every_steps = FLAGS.steps  # one checkpoint, at the end
    config.progressive.image_size_max = config.eval.image_size = FLAGS.max_size
    config.progressive.image_size_min = FLAGS.max_size if fixed else FLAGS.min_size
    for assignment in FLAGS.set:
        config_lib.override(config, assignment)
    return config


def train(config):
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        results = trainer.train_and_evaluate(config, workdir)
        return time.perf_counter() - start, results


def _timed_loop(loop, iterator, steps):
    start = time.perf_counter()
    loop(iterator, tf.constant(steps))
    return time.perf_counter() - start


def component_speeds(config):
    """{image size: (model ms per step on an in-memory batch, input pipeline img/s)}."""
    strategy = tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    with tempfile.TemporaryDirectory() as scratch:
        state = trainer.build_state(run, strategy, scratch)
        speeds = {}
        for stage in run.stages:
            if stage.image_size in speeds:
                continue
            dataset = state.task.train_dataset(stage, None, 0, state.counter)
            batches = iter(dataset)
            batch = next(batches)
            for _ in range(3):
                next(batches)  # warm-up
            start = time.perf_counter()
            for _ in range(INPUT_BATCHES):
                next(batches)
            input_rate = INPUT_BATCHES * run.global_batch / (time.perf_counter() - start)
            del batches
            state.task.enter_stage(state.model, stage)
            loop = state.steps.make_train_loop()
            in_memory = iter(strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors(batch).repeat()))
            _timed_loop(loop, in_memory, 2)  # trace and warm up
            model_ms = 1000 * _timed_loop(loop, in_memory, MODEL_STEPS) / MODEL_STEPS
            speeds[stage.image_size] = (model_ms, input_rate)
    return speeds


def breakdown(name, results, speeds, batch):
    rows = []
    for timing in results["stage_timings"]:
        model_ms, input_rate = speeds[timing["image_size"]]
        rows.append({"run": name, **timing, "model_ms": round(model_ms, 1),
                     "model_img_s": round(batch / model_ms * 1000, 1),
                     "input_img_s": round(input_rate, 1)})
    return rows


def compile_times(model, root):
    """Per official stage of `model`: traces and the first step's extra seconds, as a graph and
    with XLA."""
    config = demo.digits_config(root)
    config.model.name = model
    config.progressive.schedule = "official"
    for key in ("image_size_min", "image_size_max", "randaug_min", "randaug_max", "mixup_min",
                "mixup_max", "dropout_min", "dropout_max"):
        config.progressive[key] = None
    config.eval.image_size = None
    config.train.batch_size = FLAGS.compile_batch
    config.train.steps = 4 * config.progressive.num_stages
    strategy = tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    figures = []
    with tempfile.TemporaryDirectory() as scratch:
        state = trainer.build_state(run, strategy, scratch)
        # The trainer never compiles on a CPU (distribute.use_xla); here the point is to.
        compiled = loop_lib.Steps(state.task, state.model, state.optimizer, strategy,
                                  state.steps.loss, state.ema, jit_compile=True)
        for stage in run.stages:
            state.task.enter_stage(state.model, stage)
            size = stage.image_size
            batch = (tf.random.uniform([run.global_batch, size, size, 3], 0, 255),
                     tf.one_hot(tf.range(run.global_batch) % run.num_classes, run.num_classes))
            batches = iter(strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors(batch).repeat()))
            figure = {"stage": stage.index + 1, "image_size": size}
            for name, steps in (("graph", state.steps), ("xla", compiled)):
                traces = steps.traces["train"]
                loop = steps.make_train_loop()
                first = _timed_loop(loop, batches, 1)
                second = _timed_loop(loop, batches, 1)
                figure[f"{name}_traces"] = steps.traces["train"] - traces
                figure[f"{name}_first_step_extra_s"] = round(max(first - second, 0.0), 1)
                figure[f"{name}_step_s"] = round(second, 2)
            figures.append(figure)
            print(f"{model} stage {stage.index + 1} ({size} px), first step's extra seconds: "
                  f"{figure['graph_first_step_extra_s']} as a graph (trace), "
                  f"{figure['xla_first_step_extra_s']} with XLA (trace and compile); "
                  f"{figure['graph_traces'] + figure['xla_traces']} traces", flush=True)
    return figures


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tf.config.experimental.enable_op_determinism()
    with tempfile.TemporaryDirectory() as root:
        summary = measure(*samples.write_digits(os.path.join(root, "digits")))
    print(f"time ratio {summary['time_ratio']} (compute ratio {summary['compute_ratio']}); "
          f"top-1 fixed {100 * summary['fixed_accuracy']:.2f}%, progressive "
          f"{100 * summary['progressive_accuracy']:.2f}%; costliest stage switch "
          f"{summary['stage_switch_s']} s")
    print(json.dumps(summary))


def measure(train_root, eval_root):
    walls, results, rows = {}, {}, []
    for name, fixed in (("fixed", True), ("progressive", False)):
        config = config_for(train_root, eval_root, fixed)
        walls[name], results[name] = train(config)
        rows += breakdown(name, results[name], component_speeds(config), FLAGS.batch)
        print(f"{name}: {walls[name]:.1f} s, held-out top-1 "
              f"{100 * results[name]['eval_top1']:.2f}%, sizes {results[name]['stage_sizes']}",
              flush=True)
    print(f"{'run':<12} {'stage':>5} {'size':>4} {'steps':>5} {'model ms':>8} "
          f"{'(img/s)':>7} {'input img/s':>11} {'run ms':>6} {'switch s':>8} {'seconds':>7}")
    for row in rows:
        print(f"{row['run']:<12} {row['stage']:>5} {row['image_size']:>4} {row['steps']:>5} "
              f"{row['model_ms']:>8.1f} {row['model_img_s']:>7.0f} {row['input_img_s']:>11.0f} "
              f"{row['step_ms']:>6.1f} {row['switch_s']:>8.2f} {row['seconds']:>7.1f}")
    for name in walls:
        print(f"{name}: final evaluation {results[name]['eval_seconds']:.1f} s")
    timings = results["progressive"]["stage_timings"]
    switches = [t["switch_s"] for t in timings[1:]] or [0.0]
    compute_ratio = (sum(t["steps"] * t["image_size"] ** 2 for t in timings)
                     / (sum(t["steps"] for t in timings) * FLAGS.max_size ** 2))
    summary = {
        "time_ratio": round(walls["progressive"] / walls["fixed"], 3),
        "fixed_accuracy": round(results["fixed"]["eval_top1"], 4),
        "progressive_accuracy": round(results["progressive"]["eval_top1"], 4),
        "compute_ratio": round(compute_ratio, 3),
        "stage_switch_s": round(max(switches), 2),
        "first_stage_start_s": round(timings[0]["switch_s"], 2),
        "fixed_wall_s": round(walls["fixed"], 1),
        "progressive_wall_s": round(walls["progressive"], 1),
        "steps": FLAGS.steps, "batch": FLAGS.batch, "model": FLAGS.model,
        "overrides": FLAGS.set,
        "eval_examples": results["fixed"]["eval_examples"],
        "eval_s": {name: round(results[name]["eval_seconds"], 2) for name in walls},
        "breakdown": rows,
    }
    if FLAGS.compile_model:
        summary["xla"] = {"model": FLAGS.compile_model, "batch": FLAGS.compile_batch,
                          "stages": compile_times(FLAGS.compile_model, train_root)}
    return summary


if __name__ == "__main__":
    app.run(main)
