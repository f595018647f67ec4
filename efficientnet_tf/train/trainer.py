"""train_and_evaluate: the story of one run, for any task (V1 paper §5.2, V2 paper §4 and §5.1).

1. Plan: the Run (train/run.py), every setting resolved once and recorded in config.json.
2. Build, under the strategy: the task's model, optimizer, EMA of weights and BN statistics,
   checkpoints.
3. Resume, in this order: the newest good checkpoint of WORKDIR (model, optimizer, EMA, step);
   else the run's init_from (fine-tuning); else the random initialisation.
4. Train stage by stage from that step: a stage sets the model's regularization, builds its
   dataset at its image size and its own step function (one trace per stage); the host loop
   logs, checkpoints, evaluates, and stops on a non-finite loss without saving, so the last good
   checkpoint stays the latest. With one replica (a CPU or one GPU), the next stage's dataset
   and step function are made in a background thread while the current stage trains
   (NextStage), so a stage switch does not stop training for the trace.
5. Finish: a last checkpoint, evaluation with the EMA weights, a summary, results.json and a plot.
"""

import dataclasses
import json
import math
import shutil
import tempfile
import threading
from typing import Optional

import keras
import tensorflow as tf
from absl import logging

from efficientnet_tf.train import workdir as workdir_lib
from efficientnet_tf import tasks
from efficientnet_tf.data import stream
from efficientnet_tf.tasks import base
from efficientnet_tf.train import checkpoints as checkpoints_lib
from efficientnet_tf.train import distribute, files, loop, optim, progressive, report
from efficientnet_tf.train.run import Run, plan_run


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite."""


@dataclasses.dataclass
class State:
    """What a run builds: the Run, its task, its model and everything that trains it."""

    run: Run
    strategy: tf.distribute.Strategy
    task: base.Task
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: optim.WarmupSchedule
    ema: Optional[optim.ExponentialMovingAverage]
    steps: loop.Steps
    checkpoints: checkpoints_lib.Checkpoints
    counter: Optional[stream.DecodeCounter]  # None on TPU pods: see decode_skipping_bad

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())


def resolve_run(config, strategy, workdir=None):
    """The Run of `config` in `workdir` (whose recorded seed an unset seed reuses, and whose
    recorded input scaling a resumed run keeps; else init_from's weights' own)."""
    scaling = (workdir_lib.recorded_input_scaling(workdir)
               or workdir_lib.init_input_scaling(config.init_from, config.model.name))
    return plan_run(config, strategy, workdir_lib.recorded_seed(workdir), scaling)


def build_state(run, strategy, checkpoint_dir, restore_from=None):
    keras.mixed_precision.set_global_policy(run.precision)
    keras.utils.set_random_seed(run.seed)  # the seed fixes the initial weights too
    task = tasks.create(run)
    settings = run.optimization
    with strategy.scope():
        model = task.build_model(run.stages[0])
        schedule = optim.schedule_from_run(settings, run.total_steps)
        optimizer = optim.optimizer_from_run(settings, schedule)
        if run.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = (optim.ExponentialMovingAverage(model, settings.ema_decay)
               if settings.ema_decay else None)
    loss_settings = loop.LossSettings(
        global_batch=run.global_batch,
        l2_weight_decay=0.0 if settings.decoupled_weight_decay else settings.weight_decay,
        weight_decay_exclude=settings.weight_decay_exclude,
        grad_clip_norm=settings.grad_clip_norm, grad_clip_mode=settings.grad_clip_mode)
    trackables = dict(model=model, optimizer=optimizer)
    if ema is not None:
        trackables["ema"] = ema
    return State(run=run, strategy=strategy, task=task, model=model, optimizer=optimizer,
                 schedule=schedule, ema=ema,
                 steps=loop.Steps(task, model, optimizer, strategy, loss_settings, ema,
                                  jit_compile=run.jit_compile),
                 checkpoints=checkpoints_lib.Checkpoints(
                     checkpoint_dir, run.keep_checkpoints, restore_from, **trackables),
                 counter=None if run.placement.pod else stream.DecodeCounter())


def data_seed(run, start_step):
    """The data seed of a stage started at `start_step`: a resumed stage draws new examples
    rather than repeating the ones before the crash."""
    return (run.seed * 1_000_003 + start_step) % (2 ** 31)


def train_iterator(state, stage, start_step):
    dataset = state.strategy.distribute_datasets_from_function(
        lambda context: state.task.train_dataset(stage, context,
                                                 data_seed(state.run, start_step), state.counter))
    return iter(dataset)


def stage_inputs(state, stage, start_step, warm=False):
    """(distributed iterator, train loop) of `stage` from `start_step`, its regularization set.
    `warm`: also run the loop for zero steps, which traces it and prepares the traced graph for
    execution (graph optimization) without taking a batch."""
    state.task.enter_stage(state.model, stage)
    iterator = train_iterator(state, stage, start_step)
    train_loop = state.steps.make_train_loop()
    if warm:
        train_loop(iterator, tf.constant(0))
    return iterator, train_loop


class NextStage:
    """Makes the next stage's stage_inputs in a background thread while the current stage trains.

    Started once the current stage's step is traced (its dropout rate is then part of its graph,
    so setting the next one cannot change it). A trace is mostly Python and a step mostly native
    code that lets other threads run, so the two overlap: the switch itself shrinks, and the
    stage before it runs a little slower while the thread works (scripts/bench_progressive.py
    measures both). Only with one replica on one host (not on TPU, where a switch is a compile
    that happens at the first real step anyway; see enabled() for several replicas), and unless
    train.prepare_next_stage is False.
    """

    def __init__(self, state):
        self.state = state
        self._stage = self._thread = self._inputs = self._error = None

    @staticmethod
    def enabled(run):
        # One replica only: with several, a step traces collectives (synchronized batch norm,
        # all-reduce), and TensorFlow's bookkeeping of collective keys across threads and
        # strategies is fragile (a second MirroredStrategy in one process can abort with
        # "Shape mismatch in the collective instance"); a few seconds per stage are not worth
        # that risk on multi-GPU runs.
        return (run.prepare_next_stage and not run.placement.tpu
                and run.placement.num_workers == 1 and run.placement.replicas == 1)

    def start(self, stage):
        def work():
            try:
                self._inputs = stage_inputs(self.state, stage, stage.start_step, warm=True)
            except BaseException as error:  # re-raised in the training thread by take()
                self._error = error

        self._stage, self._inputs, self._error = stage, None, None
        self._thread = threading.Thread(target=work, name="next-stage", daemon=True)
        self._thread.start()

    def take(self, stage, start_step):
        """The prepared inputs of `stage` if they were made for it from `start_step`, else None."""
        thread, self._thread = self._thread, None
        if thread is None:
            return None
        thread.join()
        if self._error is not None:
            raise self._error
        if self._stage != stage or stage.start_step != start_step:
            return None
        return self._inputs


def evaluate(state):
    """The task's metrics on the eval split, with the EMA weights if the run evaluates with them."""
    dataset = state.strategy.distribute_datasets_from_function(
        lambda context: state.task.eval_dataset(context, state.counter))
    if state.run.eval_with_ema and state.ema is not None:
        with state.ema.swapped():
            return state.steps.evaluate(dataset)
    return state.steps.evaluate(dataset)


def recalibrate_batch_norm(state):
    """At the end of training, the batch norms' moving statistics recomputed on the task's
    recalibration batches (Task.recalibration_dataset), for the model's weights and, when
    there is an EMA, for the averaged weights evaluation and export use. Nothing when the
    task does not ask for it."""
    found = state.task.recalibration_dataset()
    if found is None:
        return
    num_batches = found[1]
    dataset = state.strategy.distribute_datasets_from_function(
        lambda context: state.task.recalibration_dataset(context)[0])
    timer = report.Timer()
    if state.ema is not None:
        with state.ema.swapped():
            state.steps.recalibrate_batch_norm(dataset, num_batches)
            state.ema.take_from_model([variable for layer in state.steps.batch_norms()
                                       for variable in (layer.moving_mean,
                                                        layer.moving_variance)])
    used = state.steps.recalibrate_batch_norm(dataset, num_batches)
    logging.info("batch norm statistics recomputed on %d batches of %d training images as "
                 "evaluation sees them (%s)", used, state.run.global_batch,
                 report.duration(timer.elapsed()))


def _next_boundary(step, every):
    return (step // every + 1) * every if every else math.inf


def train_stage(state, stage, progress, workdir, next_stage=None, preparer=None):
    """Trains `stage` from the current step to its end; the host loop of the docstring. With a
    NextStage `preparer`, takes this stage's inputs from it if it made them, and has it make
    `next_stage`'s once this stage's step is traced. Returns the stage's report.StageTiming."""
    run = state.run
    timing, timer = report.StageTiming(stage.index + 1, stage.image_size), report.Timer()
    start = state.step
    prepared = preparer.take(stage, start) if preparer else None
    iterator, train_loop = prepared or stage_inputs(state, stage, start)
    timing.start_s = timer.elapsed()
    logging.info("stage %d/%d: steps %d-%d, image size %d, dropout %.3f, RandAugment %.2f, "
                 "mixup %.3f, cutmix %.3f", stage.index + 1, len(run.stages), start,
                 stage.end_step, stage.image_size, stage.dropout_rate, stage.randaug_magnitude,
                 stage.mixup_alpha, stage.cutmix_alpha)
    step, first = start, True
    input_meter = report.InputMeter(state.counter) if state.counter else None
    while step < stage.end_step:
        count = int(min(run.steps_per_loop, stage.end_step - step,
                        _next_boundary(step, run.log_every_steps) - step,
                        _next_boundary(step, run.checkpoint_every_steps) - step,
                        _next_boundary(step, run.eval_every_steps) - step))
        timer = report.Timer()
        totals = train_loop(iterator, tf.constant(count))
        loss = float(totals["loss"]) / max(float(totals["examples"]), 1.0)
        seconds = timer.elapsed()
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss} at step {step + count} (stage {stage.index + 1}, learning rate "
                f"{float(state.schedule(step)):.3g}); stopped without saving, so "
                f"{state.checkpoints.latest or 'no checkpoint'} stays the latest good state. "
                "Lower optimizer.lr_per_256 or set train.grad_clip_norm")
        progress.add(totals, count, seconds, timed=not first)
        timing.add(count, seconds)
        if first and preparer and next_stage is not None:
            preparer.start(next_stage)
        first = False
        step += count
        if step % run.log_every_steps == 0 or step == stage.end_step:
            extra = (f"skipped images {state.counter.skipped}"
                     if state.counter and state.counter.skipped else "")
            progress.emit(step, float(state.schedule(step)), stage, extra)
            placement = run.placement
            if placement.num_workers > 1 and input_meter:  # a slow host's pipeline shows
                logging.info("worker %d/%d at step %d: %s", placement.worker + 1,
                             placement.num_workers, step, input_meter.line())
        if step % run.checkpoint_every_steps == 0 and step < run.total_steps:
            state.checkpoints.save(step)
        if run.eval_every_steps and step % run.eval_every_steps == 0 and step < run.total_steps:
            metrics = evaluate(state)
            logging.info("eval at step %d: %s, loss %.4f", step,
                         state.task.describe(metrics), metrics["loss"])
            if run.placement.chief:
                report.write_eval_summary(workdir, step, metrics)
    if progress.writer is not None:
        with progress.writer.as_default(step=step):
            tf.summary.scalar("stage", stage.index + 1)
        progress.writer.flush()
    logging.info(timing.line(run.global_batch))
    return timing


def log_plan(run, strategy):
    for decision in run.decisions:
        logging.info("decided from the data: %s", decision.line())
    logging.info("%s (%s): %s, %d classes, global batch %d, %d steps (%.1f epochs), precision "
                 "%s, XLA %s, seed %d", run.spec.name, run.task, distribute.describe(strategy),
                 run.num_classes, run.global_batch, run.total_steps,
                 run.total_steps / run.steps_per_epoch, run.precision,
                 distribute.describe_xla(run.jit_compile, strategy), run.seed)
    logging.info("%s; %s", run.bn_description, run.task_settings.describe())
    short = short_for_batch_norm(run)
    if short:
        logging.warning("%s", short)
    counts = class_counts(run)
    if counts:
        logging.info("classes (train/eval images): %s", report.class_count_line(counts))
    for line in progressive.table(run.stages):
        logging.info(line)


# What share of their initial values (mean 0, variance 1) the batch norms' moving statistics may
# keep at the end of a run from scratch without a warning. Features of variance near 1e-3 (a
# detector's BiFPN and heads early on) still feel that much; the detection demo settles them
# far sooner (momentum 0.9).
BN_LEFTOVER = 1e-3


def short_for_batch_norm(run):
    """A warning when a run from scratch is too short for its batch norms' moving statistics
    (what evaluation and exports use) to forget their initial values: momentum^steps of them
    is left. A detector of 300 steps at automl's 0.99 evaluated with moving variances 30 to 120
    times the real ones (COCO AP 1%, its training loss half its eval loss on the same
    images)."""
    if run.init_from or getattr(run.task_settings, "bn_recalibration_images", 0):
        return None  # trained statistics, or recomputed at the end
    momentum = run.model.batch_norm.resolved(run.spec).momentum
    if momentum ** run.total_steps <= BN_LEFTOVER:
        return None
    fitting = math.floor(BN_LEFTOVER ** (1.0 / run.total_steps) * 100) / 100
    return (f"batch norm momentum {momentum:g} over {run.total_steps} steps leaves "
            f"{momentum ** run.total_steps:.1%} of the moving statistics' initial values "
            f"(evaluation and exports use them): set model.bn_momentum={fitting:g} or lower, "
            "or train longer")


# The files the input pipelines skipped (undecodable, or above data.max_pixels): "KEY\tREASON"
# lines, each file once.
SKIPPED_FILE = "skipped_files.txt"


def previous_train_figures(workdir, headline):
    """The last train figures (loss, headline, images per second) of the results.json of an
    earlier run in `workdir`, or None."""
    path = f"{workdir}/results.json"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as stream:
        before = json.load(stream)
    return {"loss": before.get("train_loss"), headline: before.get(f"train_{headline}"),
            "images_per_second": before.get("images_per_second")}


def class_counts(run):
    """{split: {class: images}} of a source that lists its examples (an image folder), else
    None (TFRecords and TFDS are not read ahead of training)."""
    counts = getattr(run.source, "class_counts", None)
    return counts() if counts else None


def describe_plan(run):
    """What `train --dry_run` prints: the config the run would use (after what the recipe
    decides from the data), each decision and its reason, the steps and the stages."""
    lines = ["# the config this run would use (efficientnet_tf/train/config.py explains each key)",
             str(run.config).rstrip()]
    lines += [""] + [f"# decided from the data: {decision.line()}" for decision in run.decisions]
    lines += ["", f"# {run.spec.name} ({run.task}): {run.num_classes} classes, "
              f"{run.train_examples} training and {run.eval_examples} evaluation examples, "
              f"global batch {run.global_batch}, {run.total_steps} steps "
              f"({run.total_steps / run.steps_per_epoch:.1f} epochs)"]
    lines += [f"# {line}" for line in progressive.table(run.stages)]
    return "\n".join(lines)


def describe_results(results, workdir):
    """What `train` prints at the end: the final evaluation and where the run is."""
    return f"eval {results['eval_summary']}; workdir {workdir}"


def train_and_evaluate(config, workdir, strategy=None):
    """Trains and evaluates as `config` says, in `workdir` (local or gs://). Returns results."""
    strategy = strategy or tf.distribute.get_strategy()
    run = resolve_run(config, strategy, workdir)
    log_plan(run, strategy)
    scratch = None
    workdir_lib.check_continues(workdir, run)
    if run.placement.chief:
        tf.io.gfile.makedirs(workdir)
        checkpoints_lib.remove_leftovers(workdir)
        workdir_lib.write_config(workdir, run)
        counts = class_counts(run)
        if counts:
            files.write_json(f"{workdir}/{workdir_lib.CLASSES_FILE}", counts)
        checkpoint_dir = workdir
    else:  # other workers save too (collectives), into a scratch dir removed at the end
        scratch = tempfile.mkdtemp(prefix="efficientnet_tf_worker_")
        checkpoint_dir = scratch

    state = build_state(run, strategy, checkpoint_dir, restore_from=workdir)
    restored = state.checkpoints.restore_latest()
    if restored:
        logging.info("resuming at step %d of %d", state.step, run.total_steps)
    elif run.init_from:
        workdir_lib.initialize(state.task, state.model, run.init_from)
        if state.ema is not None:
            state.ema.reset()  # average from the loaded weights, not the random ones

    progress = report.Progress(workdir, run.total_steps, run.steps_per_epoch, run.global_batch,
                               write=run.placement.chief, summarize=state.task.summarize,
                               headline=state.task.HEADLINE)
    timer = report.Timer()
    start_step = state.step
    remaining = [stage for stage in run.stages if state.step < stage.end_step]
    preparer = NextStage(state) if NextStage.enabled(run) else None
    timings = [train_stage(state, stage, progress, workdir, following, preparer)
               for stage, following in zip(remaining, remaining[1:] + [None])]
    if state.step > start_step and state.step == run.total_steps:
        recalibrate_batch_norm(state)
    if state.step > start_step or not state.checkpoints.latest:
        state.checkpoints.save(state.step)
    eval_timer = report.Timer()
    metrics = evaluate(state)
    eval_seconds = eval_timer.elapsed()
    wall = timer.elapsed()
    if state.step == start_step:  # resumed after its last step: the train figures of before
        progress.last = previous_train_figures(workdir, state.task.HEADLINE) or progress.last
    results = {
        "model": run.spec.name, "task": run.task, "steps": state.step,
        "total_steps": run.total_steps, "stage_sizes": [stage.image_size for stage in run.stages],
        **{f"eval_{key}": value for key, value in metrics.items()},
        "eval_image_size": run.eval_size, "ema": run.eval_with_ema,
        "train_loss": progress.last.get("loss"),
        f"train_{state.task.HEADLINE}": progress.last.get(state.task.HEADLINE),
        "train_seconds": wall, "steps_this_run": state.step - start_step,
        "stage_timings": [timing.to_dict() for timing in timings],
        "eval_seconds": eval_seconds,
        "images_per_second": progress.last.get("images_per_second"),
        "skipped_images": state.counter.skipped if state.counter else None,
        "checkpoint": state.checkpoints.latest, "eval_summary": state.task.describe(metrics),
    }
    skipped_list = None
    if state.counter and state.counter.files and run.placement.chief:
        skipped_list = f"{workdir}/{SKIPPED_FILE}"
        with tf.io.gfile.GFile(skipped_list, "w") as stream:
            stream.write("".join(f"{key}\t{reason}\n"
                                 for key, reason in sorted(state.counter.files.items())))
    logging.info("done: %d steps in %s; eval %s%s; skipped files %s%s", state.step,
                 report.duration(wall), state.task.describe(metrics),
                 " (EMA weights)" if results["ema"] else "",
                 results["skipped_images"] if state.counter else "not counted on a TPU pod",
                 f" (list: {skipped_list})" if skipped_list else "")
    if run.placement.chief:
        report.write_eval_summary(workdir, state.step, metrics)
        files.write_json(f"{workdir}/results.json", results)
        results["plot"] = report.write_plot(workdir, state.task.HEADLINE,
                                             state.task.HEADLINE_TITLE)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)  # local: this worker's scratch dir
    return results


def evaluate_workdir(workdir, config=None, strategy=None, continuous=False, timeout=None):
    """`efficientnet-tf eval`: the task's metrics of the newest checkpoint (or of each new one),
    restored as export restores it (workdir_lib.restore_model). The recorded Run, or the Run of
    `config` when given (e.g. to evaluate at another size)."""
    strategy = strategy or tf.distribute.get_strategy()
    if config is None:
        run = workdir_lib.load_run(workdir, with_source=True)
    else:
        run = resolve_run(config, strategy, workdir)
    task = tasks.create(run)
    paths = (tf.train.checkpoints_iterator(workdir, timeout=timeout) if continuous
             else [workdir])
    results = None
    for path in paths:
        with strategy.scope():
            model, _, prefix = workdir_lib.restore_model(path, run, precision=run.precision,
                                                    use_ema=run.eval_with_ema)
        steps = loop.Steps(task, model, None, strategy,
                           loop.LossSettings(global_batch=run.global_batch),
                           jit_compile=run.jit_compile)
        dataset = strategy.distribute_datasets_from_function(
            lambda context: task.eval_dataset(context))
        metrics = steps.evaluate(dataset)
        step = int(prefix.rsplit("-", 1)[-1])
        logging.info("%s (step %d): %s, loss %.4f%s", prefix, step, task.describe(metrics),
                     metrics["loss"], " with EMA weights" if run.eval_with_ema else "")
        results = {"checkpoint": prefix, "step": step, **metrics,
                   "summary": task.describe(metrics)}
        if run.placement.chief:
            report.write_eval_summary(workdir, step, metrics)
            files.write_json(f"{workdir}/eval_results.json", results)
        if step >= run.total_steps and continuous:
            break
    return results
