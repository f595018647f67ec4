"""The resolved Run: every setting a run uses, decided once, recorded in config.json.

plan_run reads the config (experiment file and flags), the data (counts; with adapt_to_data, a
profile of the images) and the strategy (replicas, TPU or not) and resolves every rule once:
the model's row and options, batch sizes, steps, the stages of progressive learning, the
optimizer's numbers, precision and XLA, intervals, seed, batch-norm groups, and the task's own
settings (for classification: crops, resize, eval transform, augmentation). Everything after it
-- the trainer, the host loop, evaluation, export, predict -- reads the Run, or the one recorded
in WORKDIR/config.json under "resolved" (workdir.load_run), and never the raw config.

The path of one setting, --config.data.random_flip=false: the flag sets the ConfigDict key;
plan_run -> tasks/classification/task.py's resolve() copies it into the Run's
ClassificationSettings; the task's train_dataset passes it to tasks/classification/inputs.py's
TrainSettings; preprocess_train flips or not.
"""

import dataclasses
import secrets
from typing import Any, Optional, Tuple

import tensorflow as tf

from efficientnet_tf import tasks
from efficientnet_tf.data import sources  # the split names
from efficientnet_tf.models import weights
from efficientnet_tf.models.efficientnet import BatchNormSettings, ModelOptions
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks import base as tasks_base
from efficientnet_tf.train import distribute, progressive
from efficientnet_tf.train import config as config_lib


@dataclasses.dataclass(frozen=True)
class Optimization:
    """The optimizer, its schedule, weight decay, clipping and the EMA, in resolved numbers."""

    name: str
    peak_learning_rate: float
    warmup_steps: int
    schedule: str
    decay_rate: float
    decay_steps: float
    min_learning_rate: float
    momentum: float
    rmsprop_decay: float
    epsilon: float
    nesterov: bool
    weight_decay: float
    decoupled_weight_decay: bool
    weight_decay_exclude: Tuple[str, ...]
    grad_clip_norm: float
    ema_decay: float  # 0: no EMA
    grad_clip_mode: str = "global"  # (recorded runs from before it have "global")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where this process runs: replicas, hosts, which worker, whether it writes the workdir."""

    replicas: int = 1
    tpu: bool = False
    pod: bool = False  # a multi-host TPU slice: host 0's program feeds every host's pipeline
    chief: bool = True
    worker: int = 0
    num_workers: int = 1


@dataclasses.dataclass(frozen=True)
class Run:
    task: str
    spec: registry.ModelSpec
    model: ModelOptions  # num_classes, dropout of the first stage, survival, batch norm, dtype
    class_names: Optional[Tuple[str, ...]]
    train_examples: int
    eval_examples: int
    global_batch: int
    per_replica_batch: int
    eval_batch: int
    steps_per_epoch: float
    total_steps: int
    stages: Tuple[progressive.Stage, ...]
    optimization: Optimization
    precision: str
    image_dtype: str
    jit_compile: bool
    steps_per_loop: int
    log_every_steps: int
    checkpoint_every_steps: int
    eval_every_steps: int
    keep_checkpoints: int
    eval_with_ema: bool
    seed: int
    init_from: str
    bn_description: str
    task_settings: Any
    placement: Placement = Placement()
    decisions: Tuple[tasks_base.Decision, ...] = ()
    prepare_next_stage: bool = True  # trainer.NextStage, where it applies
    # Not recorded: the live objects a run works with.
    source: Any = dataclasses.field(default=None, compare=False, repr=False)
    config: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def num_classes(self):
        return self.model.num_classes

    @property
    def eval_size(self):
        return getattr(self.task_settings, "eval_size", None)

    def to_dict(self):
        """What config.json records under "resolved" (JSON values only)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                  if field.name not in ("source", "config", "task_settings", "spec")}
        values = {key: _plain(value) for key, value in values.items()}
        values["spec"] = _plain(self.spec)
        values["task_settings"] = self.task_settings.to_dict()
        return values

    @classmethod
    def from_dict(cls, values, source=None, config=None):
        """The Run a config.json recorded (the row rebuilt from its name and checked)."""
        spec = registry.get(values["spec"]["name"])
        recorded = dict(values["spec"])
        if "normalization" in recorded:  # earlier versions' names of the same scalings
            recorded["normalization"] = registry.LEGACY_SCALINGS.get(
                recorded["normalization"], recorded["normalization"])
        if _plain(spec) != recorded:
            raise ValueError(f"the recorded row of {spec.name!r} differs from this version's "
                             "registry; train again or use the version that trained it")
        task_class = tasks.get(values["task"])
        readers = {  # the structured fields; the others are JSON values as recorded
            "spec": lambda value: spec,
            "model": ModelOptions.from_dict,
            "class_names": lambda value: tuple(value) if value else None,
            "stages": lambda value: tuple(progressive.Stage(**stage) for stage in value),
            "optimization": lambda value: Optimization(**{
                **value, "weight_decay_exclude": tuple(value["weight_decay_exclude"])}),
            "task_settings": task_class.settings_from_dict,
            "placement": lambda value: Placement(**value),
            "decisions": lambda value: tuple(tasks_base.Decision(**d) for d in value)}
        # A field an older version did not record takes its default (prepare_next_stage).
        recorded_fields = {field.name: readers.get(field.name, lambda value: value)(
            values[field.name]) for field in dataclasses.fields(cls)
            if field.name in values and field.name not in ("source", "config")}
        return cls(**recorded_fields, source=source, config=config)


def _plain(value):
    """A JSON-able copy: dataclasses as dicts, tuples as lists, DTypes as names."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tf.DType):
        return value.name
    return value


def run_seed(config, recorded=None):
    """config.train.seed, else the seed the run in the workdir recorded (workdir.recorded_seed:
    a resumed run keeps its data order), else a new random one, which config.json records."""
    if config.train.seed is not None:
        return int(config.train.seed)
    return int(recorded) if recorded is not None else secrets.randbits(31)


def optimization_settings(config, global_batch, steps_per_epoch):
    """The optimizer, schedule, decay, clipping and EMA numbers of a config at this batch."""
    optimizer = config.optimizer
    return Optimization(
        name=optimizer.name, peak_learning_rate=optimizer.lr_per_256 * global_batch / 256.0,
        warmup_steps=int(optimizer.warmup_epochs * steps_per_epoch),  # official: int()
        schedule=optimizer.schedule, decay_rate=optimizer.decay_rate,
        decay_steps=max(optimizer.decay_epochs * steps_per_epoch, 1e-9),
        min_learning_rate=optimizer.min_lr, momentum=optimizer.momentum,
        rmsprop_decay=optimizer.rmsprop_decay, epsilon=optimizer.epsilon,
        nesterov=optimizer.nesterov, weight_decay=config.train.weight_decay,
        decoupled_weight_decay=config.train.weight_decay_mode == "decoupled",
        weight_decay_exclude=tuple(part.strip() for part in
                                   config.train.weight_decay_exclude.split(",") if part.strip()),
        grad_clip_norm=config.train.grad_clip_norm, grad_clip_mode=config.train.grad_clip_mode,
        ema_decay=config.train.ema_decay)


def _placement(strategy):
    worker, num_workers = distribute.worker(strategy)
    tpu = distribute.is_tpu(strategy)
    return Placement(replicas=strategy.num_replicas_in_sync, tpu=tpu,
                     pod=tpu and distribute.num_hosts(strategy) > 1,
                     chief=distribute.is_chief(strategy), worker=worker,
                     num_workers=num_workers)


def plan_run(config, strategy, recorded_seed=None, init_scaling=None):
    """The Run of `config` on `strategy` (an unset seed: `recorded_seed`, else a new one;
    `init_scaling`: the input scaling config.init_from's weights were trained with, where
    known, workdir.init_input_scaling). With config.adapt_to_data, the keys the config leaves
    open are decided from the data first (the task's adapt_to_data); Run.config is then the
    config the run really uses."""
    config = config_lib.with_auto_as_none(config)
    spec = registry.get(config.model.name)
    task_class = tasks.get(config.task)
    config_lib.check_read(config, task_class.UNREAD_KEYS, config.task)
    source = task_class.make_source(config.data)
    decisions = []
    if config.adapt_to_data and tasks_base.open_keys(config, task_class.ADAPTED_KEYS):
        config, decisions = task_class.adapt_to_data(config, spec, source,
                                                     config_lib.total_steps)
    config_lib.validate(config)
    global_batch = config.train.batch_size
    per_replica = distribute.check_batch(global_batch, strategy)
    distribute.check_batch(config.eval.batch_size, strategy)
    for split in (sources.TRAIN, sources.EVAL):  # before training, not after it
        if source.num_examples(split) == 0:
            hint = getattr(source, "empty_split_hint", lambda: "")()
            raise ValueError(f"the {split} split of the data is empty{hint}")
    steps_per_epoch = source.num_examples(sources.TRAIN) / global_batch
    total_steps = config_lib.total_steps(config, steps_per_epoch)
    stages = tuple(task_class.plan_stages(progressive.stages(spec, config, total_steps),
                                          config))
    image_dtype = config.data.image_dtype
    if image_dtype is None:
        image_dtype = "bfloat16" if distribute.is_tpu(strategy) else "float32"
    jit = (None if config.train.jit_compile is None
           else str(config.train.jit_compile).lower() == "true")
    synchronized, group_size, bn_description = distribute.batch_norm_groups(
        config.model.bn_sync, strategy)
    model = ModelOptions(
        num_classes=source.num_classes, dropout_rate=stages[0].dropout_rate,
        survival_prob=config.model.survival_prob, input_dtype=image_dtype,
        input_scaling=weights.choose_input_scaling(
            spec, config.model.input_scaling, init_scaling, f"init_from {config.init_from!r}"),
        batch_norm=BatchNormSettings(momentum=config.model.bn_momentum,
                                     synchronized=synchronized, group_size=group_size))
    return Run(
        task=task_class.NAME, spec=spec, model=model,
        class_names=tuple(source.class_names) if source.class_names else None,
        train_examples=source.num_examples(sources.TRAIN),
        eval_examples=source.num_examples(sources.EVAL), global_batch=global_batch,
        per_replica_batch=per_replica, eval_batch=config.eval.batch_size,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, stages=stages,
        optimization=optimization_settings(config, global_batch, steps_per_epoch),
        precision=distribute.precision_policy(config.train.precision, strategy),
        image_dtype=image_dtype, jit_compile=distribute.use_xla(jit, strategy),
        steps_per_loop=config.train.steps_per_loop or (
            min(100, config.train.log_every_steps) if distribute.is_tpu(strategy) else 1),
        log_every_steps=config.train.log_every_steps,
        checkpoint_every_steps=config.train.checkpoint_every_steps,
        eval_every_steps=config.train.eval_every_steps,
        keep_checkpoints=config.train.keep_checkpoints,
        eval_with_ema=bool(config.eval.use_ema and config.train.ema_decay),
        seed=run_seed(config, recorded_seed), init_from=config.init_from,
        bn_description=bn_description,
        task_settings=task_class.resolve(config, spec, source, strategy),
        placement=_placement(strategy), decisions=tuple(decisions),
        prepare_next_stage=bool(config.train.prepare_next_stage), source=source,
        config=config)
