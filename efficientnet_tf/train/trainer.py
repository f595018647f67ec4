"""train_and_evaluate: the story of one run (V1 paper §5.2, V2 paper §4 and §5.1).

1. Plan: the variant, the data, batch sizes, steps, and the stages of progressive learning.
2. Build, under the strategy: model, optimizer, EMA of weights and BN statistics, checkpoints.
3. Resume, in this order: the newest good checkpoint of WORKDIR (model, optimizer, EMA, step);
   else `config.init_from` (fine-tuning); else the random initialisation.
4. Train stage by stage from that step: a stage sets its dropout, RandAugment magnitude and
   mixup/cutmix alphas, builds its dataset at its image size and its own step function (one
   trace per stage); the host loop logs, checkpoints, evaluates, and stops on a non-finite loss
   without saving, so the last good checkpoint stays the latest.
5. Finish: a last checkpoint, evaluation with the EMA weights, a summary, results.json and a plot.
"""

import dataclasses
import math
import secrets
import shutil
import tempfile
from typing import List, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

import efficientnet_tf
from efficientnet_tf.data import augment, mixing, pipeline, preprocess, sources
from efficientnet_tf.data import profile as profile_lib
from efficientnet_tf.specs import registry
from efficientnet_tf.train import checkpoints as checkpoints_lib
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import adapt, distribute, loop, optim, progressive, report


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite."""


@dataclasses.dataclass
class Plan:
    """Everything a run derives from its config before it builds anything."""

    config: object  # the config the run uses (with what adapt_to_data decided)
    decisions: list  # adapt.Decision: what was decided from the data, and why
    spec: registry.ModelSpec
    source: object
    num_classes: int
    class_names: Optional[List[str]]
    global_batch: int
    per_replica_batch: int
    steps_per_epoch: float
    total_steps: int
    stages: List[progressive.Stage]
    eval_transform: preprocess.EvalTransform
    eval_batch: int
    policy: str
    image_dtype: tf.DType
    jit_compile: bool
    steps_per_loop: int
    train_crop: str  # v1, v2 or whole
    crop: object  # CropSettings, PadCrop, or None: the whole image (train_crop "whole")
    resize_method: str
    seed: int
    bn_synchronized: bool
    bn_group_size: int  # 0: all replicas (when synchronized)
    bn_description: str
    weight_decay_exclude: Tuple[str, ...]
    chief: bool
    pod: bool  # a multi-host TPU slice: host 0's program feeds every host's pipeline
    worker: int = 0
    num_workers: int = 1

    @property
    def eval_size(self):
        return self.eval_transform.image_size

    def resolved(self):
        """What config.json records beside the config itself."""
        return {"num_classes": self.num_classes, "class_names": self.class_names,
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                "eval_size": self.eval_size, "precision": self.policy,
                "seed": self.seed, "train_crop": self.train_crop,
                "resize_method": self.resize_method,
                "bn_synchronized": self.bn_synchronized, "bn_group_size": self.bn_group_size,
                "weight_decay_exclude": list(self.weight_decay_exclude),
                "eval_transform": dataclasses.asdict(self.eval_transform),
                "stages": [dataclasses.asdict(stage) for stage in self.stages]}


def preprocessing(spec, config):
    """(train crop name, CropSettings or None, resize method, EvalTransform) of a run: the
    row's official path unless the config names another (data.crop, data.resize_method,
    data.crop_area_min, eval.image_size, eval.crop_fraction)."""
    train_crop = spec.preprocessing if config.data.crop == "auto" else config.data.crop
    if train_crop not in preprocess.TRAIN_CROPS:
        raise ValueError(f"config.data.crop is {config.data.crop!r}; use auto, "
                         f"{', '.join(sorted(preprocess.TRAIN_CROPS))}")
    crop = preprocess.TRAIN_CROPS[train_crop]
    if config.data.crop_area_min is not None and isinstance(crop, preprocess.CropSettings):
        crop = dataclasses.replace(crop, area_range=(config.data.crop_area_min, 1.0))
    resize_method = config.data.resize_method
    if resize_method == "auto":  # bicubic on the official v1 path, bilinear on v2
        resize_method = "bicubic" if spec.preprocessing == "v1" else "bilinear"
    eval_transform = preprocess.eval_transform(
        train_crop, config.eval.image_size or spec.eval_size, resize_method,
        config.eval.crop_fraction)
    return train_crop, crop, resize_method, eval_transform


def run_seed(config, workdir=None):
    """config.train.seed, else the seed a run in `workdir` recorded (a resumed run keeps its
    data order), else a new random one, which config.json records."""
    if config.train.seed is not None:
        return int(config.train.seed)
    if workdir and tf.io.gfile.exists(f"{workdir}/{checkpoints_lib.CONFIG_FILE}"):
        recorded = checkpoints_lib.run_config(workdir).get("resolved", {}).get("seed")
        if recorded is not None:
            return int(recorded)
    return secrets.randbits(31)


def plan_run(config, strategy, workdir=None):
    """Everything the run derives from `config` (and, for an unset seed, from the run already
    in `workdir`) before it builds anything. With config.adapt_to_data, the keys the config
    leaves open are decided from the data first (train/adapt.py); Plan.config is then the
    config the run really uses."""
    spec = registry.get(config.model.name)
    source = sources.from_config(config.data)
    decisions = []
    if config.adapt_to_data and adapt.open_keys(config):
        config, decisions = adapt.adapt(config, spec, profile_lib.profile(source))
    config_lib.validate(config)
    global_batch = config.train.batch_size
    per_replica = distribute.check_batch(global_batch, strategy)
    distribute.check_batch(config.eval.batch_size, strategy)
    steps_per_epoch = source.num_examples(sources.TRAIN) / global_batch
    total_steps = config.train.steps or max(1, math.ceil(config.train.epochs * steps_per_epoch))
    policy = distribute.precision_policy(config.train.precision, strategy)
    image_dtype = config.data.image_dtype
    if image_dtype == "auto":
        image_dtype = "bfloat16" if distribute.is_tpu(strategy) else "float32"
    train_crop, crop, resize_method, eval_transform = preprocessing(spec, config)
    steps_per_loop = config.train.steps_per_loop or (
        min(100, config.train.log_every_steps) if distribute.is_tpu(strategy) else 1)
    jit = str(config.train.jit_compile).lower()
    bn_synchronized, bn_group_size, bn_description = distribute.batch_norm_groups(
        config.model.bn_sync, strategy)
    return Plan(
        config=config, decisions=decisions, spec=spec, source=source,
        num_classes=source.num_classes,
        class_names=list(source.class_names) if source.class_names else None,
        global_batch=global_batch, per_replica_batch=per_replica,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        stages=progressive.stages(spec, config, total_steps),
        eval_transform=eval_transform, eval_batch=config.eval.batch_size,
        policy=policy, image_dtype=tf.as_dtype(image_dtype),
        jit_compile=distribute.use_xla({"auto": "auto", "true": True, "false": False}[jit],
                                       strategy),
        steps_per_loop=steps_per_loop, train_crop=train_crop, crop=crop,
        resize_method=resize_method,
        seed=run_seed(config, workdir),
        bn_synchronized=bn_synchronized, bn_group_size=bn_group_size,
        bn_description=bn_description,
        weight_decay_exclude=tuple(part.strip() for part in
                                   config.train.weight_decay_exclude.split(",") if part.strip()),
        chief=distribute.is_chief(strategy),
        pod=distribute.is_tpu(strategy) and distribute.num_hosts(strategy) > 1,
        worker=distribute.worker(strategy)[0],
        num_workers=distribute.worker(strategy)[1])


@dataclasses.dataclass
class State:
    """What a run builds: the model and everything that trains it."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: optim.WarmupSchedule
    ema: Optional[optim.ExponentialMovingAverage]
    steps: loop.Steps
    checkpoints: checkpoints_lib.Checkpoints
    counter: Optional[pipeline.DecodeCounter]  # None on TPU pods: see decode_skipping_bad

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())


def build_state(plan, config, strategy, checkpoint_dir, restore_from=None):
    keras.mixed_precision.set_global_policy(plan.policy)
    keras.utils.set_random_seed(plan.seed)  # the seed fixes the initial weights too
    with strategy.scope():
        model = efficientnet_tf.create_model(
            plan.spec, num_classes=plan.num_classes, dropout_rate=plan.stages[0].dropout_rate,
            survival_prob=config.model.survival_prob,
            synchronized_bn=plan.bn_synchronized, input_dtype=plan.image_dtype.name,
            bn_group_size=plan.bn_group_size, bn_momentum=config.model.bn_momentum)
        schedule = optim.schedule_from_config(config.optimizer, plan.global_batch,
                                              plan.steps_per_epoch, plan.total_steps)
        decoupled = config.train.weight_decay_mode == "decoupled"
        optimizer = optim.optimizer_from_config(config.optimizer, schedule,
                                                config.train.weight_decay, decoupled,
                                                plan.weight_decay_exclude)
        if plan.policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = (optim.ExponentialMovingAverage(model, config.train.ema_decay)
               if config.train.ema_decay else None)
    loss_settings = loop.LossSettings(
        global_batch=plan.global_batch, num_classes=plan.num_classes,
        label_smoothing=config.train.label_smoothing,
        l2_weight_decay=0.0 if decoupled else config.train.weight_decay,
        weight_decay_exclude=plan.weight_decay_exclude,
        grad_clip_norm=config.train.grad_clip_norm)
    trackables = dict(model=model, optimizer=optimizer)
    if ema is not None:
        trackables["ema"] = ema
    return State(model=model, optimizer=optimizer, schedule=schedule, ema=ema,
                 steps=loop.Steps(model, optimizer, strategy, loss_settings, ema,
                                  jit_compile=plan.jit_compile),
                 checkpoints=checkpoints_lib.Checkpoints(
                     checkpoint_dir, config.train.keep_checkpoints, restore_from, **trackables),
                 counter=None if plan.pod else pipeline.DecodeCounter())


def enter_stage(state, stage):
    """Sets the model's regularization of the stage: its classifier dropout, traced into the
    step function built after it. (The stage's data settings go into its new dataset.)"""
    loop.set_dropout(state.model, stage.dropout_rate)


def augmenter(config, stage):
    """The per-image augmentation of a stage (None without one)."""
    if config.augment.kind == "randaugment":
        ops = [op.strip() for op in config.augment.randaug_ops.split(",") if op.strip()]
        return augment.RandAugment(config.augment.randaug_layers, stage.randaug_magnitude,
                                   ops=ops or augment.RANDAUGMENT_OPS,
                                   relative_to_size=config.augment.relative_to_size,
                                   corrected=config.augment.corrected_ops)
    if config.augment.kind == "autoaugment":
        return augment.AutoAugment(corrected=config.augment.corrected_ops)
    return None


def train_settings(plan, config, stage, start_step):
    """How the stage's training images are made: every stage value is a constant of its
    dataset, so the dataset functions capture no variable and run on every host of a pod."""
    return pipeline.TrainSettings(
        image_size=stage.image_size, batch_size=plan.per_replica_batch,
        num_classes=plan.num_classes, crop=plan.crop, resize_method=plan.resize_method,
        random_flip=config.data.random_flip, augmenter=augmenter(config, stage),
        mixing=mixing.Mixing(stage.mixup_alpha, stage.cutmix_alpha),
        dtype=plan.image_dtype,
        shuffle_buffer=config.data.shuffle_buffer, cache=config.data.cache,
        # A resumed stage draws new examples rather than repeating the ones before the crash.
        seed=(plan.seed * 1_000_003 + start_step) % (2 ** 31),
        deterministic=config.data.deterministic)


def train_iterator(plan, state, config, strategy, stage, start_step):
    settings = train_settings(plan, config, stage, start_step)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.train_dataset(plan.source, settings, context, state.counter))
    return iter(dataset)


def evaluate(plan, state, config, strategy):
    """Top-1/top-5 on the eval split at the eval size, with the EMA weights if configured."""
    per_replica = plan.eval_batch // strategy.num_replicas_in_sync
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.eval_dataset(
            plan.source, plan.eval_transform, per_replica, plan.num_classes, context,
            plan.image_dtype, counter=state.counter))
    if config.eval.use_ema and state.ema is not None:
        with state.ema.swapped():
            return state.steps.evaluate(dataset)
    return state.steps.evaluate(dataset)


def _next_boundary(step, every):
    return (step // every + 1) * every if every else math.inf


def train_stage(plan, state, config, strategy, stage, progress, workdir):
    """Trains `stage` from the current step to its end; the host loop of the docstring."""
    enter_stage(state, stage)
    start = state.step
    iterator = train_iterator(plan, state, config, strategy, stage, start)
    train_loop = state.steps.make_train_loop()
    logging.info("stage %d/%d: steps %d-%d, image size %d, dropout %.3f, RandAugment %.2f, "
                 "mixup %.3f, cutmix %.3f", stage.index + 1, len(plan.stages), start,
                 stage.end_step, stage.image_size, stage.dropout_rate, stage.randaug_magnitude,
                 stage.mixup_alpha, stage.cutmix_alpha)
    step, first = start, True
    train_cfg = config.train
    input_meter = report.InputMeter(state.counter) if state.counter else None
    while step < stage.end_step:
        count = int(min(plan.steps_per_loop, stage.end_step - step,
                        _next_boundary(step, train_cfg.log_every_steps) - step,
                        _next_boundary(step, train_cfg.checkpoint_every_steps) - step,
                        _next_boundary(step, train_cfg.eval_every_steps) - step))
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
        first = False
        step += count
        if step % train_cfg.log_every_steps == 0 or step == stage.end_step:
            extra = (f"skipped images {state.counter.skipped}"
                     if state.counter and state.counter.skipped else "")
            progress.emit(step, float(state.schedule(step)), stage, extra)
            if plan.num_workers > 1 and input_meter:  # each host's pipeline: a slow one shows
                logging.info("worker %d/%d at step %d: %s", plan.worker + 1, plan.num_workers,
                             step, input_meter.line())
        if step % train_cfg.checkpoint_every_steps == 0 and step < plan.total_steps:
            state.checkpoints.save(step)
        if train_cfg.eval_every_steps and step % train_cfg.eval_every_steps == 0 and (
                step < plan.total_steps):
            metrics = evaluate(plan, state, config, strategy)
            logging.info("eval at step %d: top1 %.2f%% top5 %.2f%% loss %.4f (%d images)", step,
                         100 * metrics["top1"], 100 * metrics["top5"], metrics["loss"],
                         metrics["examples"])
            if plan.chief:
                report.write_eval_summary(workdir, step, metrics)
    if progress.writer is not None:
        with progress.writer.as_default(step=step):
            tf.summary.scalar("stage", stage.index + 1)
        progress.writer.flush()


def train_and_evaluate(config, workdir, strategy=None):
    """Trains and evaluates as `config` says, in `workdir` (local or gs://). Returns results."""
    strategy = strategy or tf.distribute.get_strategy()
    plan = plan_run(config, strategy, workdir)
    config = plan.config
    for decision in plan.decisions:
        logging.info("decided from the data: %s", decision.line())
    logging.info("%s: %s, %d classes, global batch %d, %d steps (%.1f epochs), precision %s, "
                 "XLA %s, seed %d", plan.spec.name, distribute.describe(strategy),
                 plan.num_classes, plan.global_batch, plan.total_steps,
                 plan.total_steps / plan.steps_per_epoch, plan.policy,
                 distribute.describe_xla(plan.jit_compile, strategy), plan.seed)
    logging.info("%s; train crop %s (%s resize); eval: %s", plan.bn_description, plan.train_crop,
                 plan.resize_method, plan.eval_transform.describe())
    for line in progressive.table(plan.stages):
        logging.info(line)
    scratch = None
    if plan.chief:
        tf.io.gfile.makedirs(workdir)
        checkpoints_lib.save_config(config, workdir, plan.resolved())
        checkpoint_dir = workdir
    else:  # other workers save too (collectives), into a scratch dir removed at the end
        scratch = tempfile.mkdtemp(prefix="efficientnet_tf_worker_")
        checkpoint_dir = scratch

    state = build_state(plan, config, strategy, checkpoint_dir, restore_from=workdir)
    restored = state.checkpoints.restore_latest()
    if restored:
        logging.info("resuming at step %d of %d", state.step, plan.total_steps)
    elif config.init_from:
        checkpoints_lib.initialize(state.model, plan.spec, config.init_from)
        if state.ema is not None:
            state.ema.reset()  # average from the loaded weights, not the random ones

    progress = report.Progress(workdir, plan.total_steps, plan.steps_per_epoch, plan.global_batch,
                               write=plan.chief)
    timer = report.Timer()
    start_step = state.step
    for stage in plan.stages:
        if state.step < stage.end_step:
            train_stage(plan, state, config, strategy, stage, progress, workdir)
    if state.step > start_step or not state.checkpoints.latest:
        state.checkpoints.save(state.step)
    metrics = evaluate(plan, state, config, strategy)
    wall = timer.elapsed()
    results = {
        "model": plan.spec.name, "steps": state.step, "total_steps": plan.total_steps,
        "stage_sizes": [stage.image_size for stage in plan.stages],
        "eval_top1": metrics["top1"], "eval_top5": metrics["top5"], "eval_loss": metrics["loss"],
        "eval_examples": metrics["examples"], "eval_image_size": plan.eval_size,
        "ema": bool(config.eval.use_ema and state.ema is not None),
        "train_loss": progress.last.get("loss"), "train_top1": progress.last.get("top1"),
        "train_seconds": wall, "steps_this_run": state.step - start_step,
        "images_per_second": progress.last.get("images_per_second"),
        "skipped_images": state.counter.skipped if state.counter else None,
        "checkpoint": state.checkpoints.latest,
    }
    logging.info("done: %d steps in %s; eval top1 %.2f%% top5 %.2f%% on %d images at %d px%s; "
                 "skipped images %s", state.step, report.duration(wall), 100 * metrics["top1"],
                 100 * metrics["top5"], metrics["examples"], plan.eval_size,
                 " (EMA weights)" if results["ema"] else "",
                 results["skipped_images"] if state.counter else "not counted on a TPU pod")
    if plan.chief:
        report.write_eval_summary(workdir, state.step, metrics)
        report.write_json(f"{workdir}/results.json", results)
        results["plot"] = report.write_plot(workdir)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)  # local: this worker's scratch dir
    return results


def evaluate_workdir(config, workdir, strategy=None, continuous=False, timeout=None):
    """`efficientnet-tf eval`: top-1/top-5 of the latest checkpoint (or of each new one)."""
    strategy = strategy or tf.distribute.get_strategy()
    plan = plan_run(config, strategy, workdir)
    config = plan.config
    state = build_state(plan, config, strategy, workdir)  # restores only: nothing is saved
    trackables = {"model": state.model, "ema": state.ema} if state.ema else {"model": state.model}
    checkpoint = tf.train.Checkpoint(**trackables)
    paths = (tf.train.checkpoints_iterator(workdir, timeout=timeout) if continuous
             else [tf.train.latest_checkpoint(workdir)])
    results = None
    for path in paths:
        if path is None:
            raise ValueError(f"no checkpoint in {workdir!r}")
        checkpoint.restore(path).expect_partial()
        step = int(path.rsplit("-", 1)[-1])
        metrics = evaluate(plan, state, config, strategy)
        logging.info("%s (step %d): top1 %.2f%% top5 %.2f%% loss %.4f on %d images at %d px%s",
                     path, step, 100 * metrics["top1"], 100 * metrics["top5"], metrics["loss"],
                     metrics["examples"], plan.eval_size,
                     " with EMA weights" if config.eval.use_ema and state.ema else "")
        results = {"checkpoint": path, "step": step, **metrics}
        if plan.chief:
            report.write_eval_summary(workdir, step, metrics)
            report.write_json(f"{workdir}/eval_results.json", results)
        if step >= plan.total_steps and continuous:
            break
    return results
