"""The Task interface: what a kind of model learns and how it is judged and served.

The trainer (train/trainer.py), the host loop and step functions (train/loop.py), EMA,
checkpoints, progressive stages, strategies and reports know nothing of images and labels; a
Task does. A run's task is chosen by `config.task` (tasks.get) and made once per run from the
resolved Run and its data source. It owns:

  data source  make_source(config.data): what the run reads;
  settings     resolve(config, spec, source, strategy): its part of the Run (recorded in
               config.json under resolved.task_settings), decided once;
  model        build_model(stage): the keras.Model; enter_stage: a stage's regularization;
               REINITIALIZED_LAYERS: fine-tuning from a run (train/workdir.py's initialize);
  data         train_dataset(stage, input_context, seed, counter) and eval_dataset(...): per-host
               datasets of (inputs, targets) batches with static shapes;
  training     loss(targets, outputs): per-example loss; train_metrics(targets, outputs): sums
               per replica, which the loop adds up; summarize(totals): the progress line's values;
  evaluation   eval_step(model, inputs, targets): what one batch contributes, reduced across
               replicas as EVAL_REDUCTIONS says ("sum", or "gather" for per-example outputs);
               evaluator(): accumulates them (update) and gives the metrics (finish);
  serving      serving_module(model, top_k, nms): a tf.Module with the export's signatures
               (the task's serving.py, which also says how `predict` reads, shows and draws
               one image's outputs);
  reports      describe(metrics): the one-line summary of an evaluation.
"""

import abc
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Decision:
    """A setting a run decided from its data (adapt_to_data), and why."""

    key: str
    value: Any
    reason: str

    def line(self):
        return f"{self.key} = {self.value}: {self.reason}"


class Decisions(list):
    """The Decisions of one adapt_to_data call on a copy of `config`: decide() fills a key the
    config leaves open (None) and records why; a key the user set is never changed."""

    def __init__(self, config):
        super().__init__()
        self.config = config.copy_and_resolve_references()

    def decide(self, section, name, value, reason):
        if self.config[section][name] is None:
            self.config[section][name] = value
            self.append(Decision(f"{section}.{name}", value, reason))


def open_keys(config, keys):
    """The keys ("section.name") of `keys` that `config` leaves to the data (None)."""
    return [key for key in keys if config[key.split(".")[0]][key.split(".")[1]] is None]


class Task(abc.ABC):
    """One kind of model. Subclasses set NAME and implement the methods below."""

    NAME = ""
    # Keys of train_metrics' sums (fixed: the host loop adds them up in a tf.function).
    TRAIN_METRICS = ()
    # Keys of eval_step's outputs -> how the loop reduces them across replicas.
    EVAL_REDUCTIONS = {}
    # The key of summarize() that the progress line and results.json call the train accuracy.
    HEADLINE = ""
    HEADLINE_TITLE = "top-1 accuracy"  # the headline's plot title
    # Keys that adapt_to_data decides from the data when a recipe leaves them None.
    ADAPTED_KEYS = ()

    def __init__(self, run, source):
        self.run = run
        self.source = source

    @classmethod
    @abc.abstractmethod
    def make_source(cls, data_config):
        """The data source of a config's `data` section (num_examples(split), num_classes,
        class_names, and whatever the task's datasets read)."""

    @classmethod
    @abc.abstractmethod
    def resolve(cls, config, spec, source, strategy):
        """The task's settings for a run (a frozen dataclass with to_dict/from_dict)."""

    @classmethod
    @abc.abstractmethod
    def settings_from_dict(cls, values):
        """The inverse of resolve(...).to_dict(), for a recorded run."""

    @abc.abstractmethod
    def build_model(self, stage=None, for_serving=False):
        """The model of the run (under the current strategy scope and precision policy)."""

    # Layers that fine-tuning from one of our runs (train/workdir.py's initialize) re-initialises
    # when their shapes differ (pretrained weights: models/weights knows both kinds of model).
    REINITIALIZED_LAYERS = ()
    # {config key pattern: why}: keys this task's runs do not read; setting one is an error
    # (train/config.py check_read).
    UNREAD_KEYS = {}

    def enter_stage(self, model, stage):
        """Sets what the model regularizes with in `stage` (before its step is traced); by
        default nothing changes between stages."""
        return None

    @abc.abstractmethod
    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        """Batches of (inputs, targets) for one replica of the stage."""

    @abc.abstractmethod
    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        """Batches of (inputs, targets) covering the eval split once (padding marked)."""

    @classmethod
    def plan_stages(cls, stages, config):
        """The run's stages (train/progressive.py), as the task trains them: by default as
        they are."""
        return stages

    def recalibration_dataset(self, input_context=None):
        """(batches of (inputs, targets) for one replica, number of batches) on which batch
        norm's moving statistics are recomputed at the end of training, or None (the default:
        they stay the averages gathered while training)."""
        return None

    @abc.abstractmethod
    def loss(self, targets, outputs):
        """Per-example loss [batch] in float32."""

    def train_metrics(self, targets, outputs):
        """{name: sum over this replica's batch}, added up by the loop."""
        return {}

    def summarize(self, totals):
        """{name: value} of summed train totals (with 'loss' and 'examples')."""
        return {}

    @abc.abstractmethod
    def eval_step(self, model, inputs, targets):
        """{name: tensor} of one eval batch, reduced as EVAL_REDUCTIONS says."""

    @abc.abstractmethod
    def evaluator(self):
        """A fresh accumulator: update(results of one batch, as NumPy) and finish() -> metrics."""

    def serving_module(self, model, top_k=5, nms=None):
        raise ValueError(f"task {self.NAME!r} has no export yet; its checkpoints are in the "
                         "workdir")

    @classmethod
    def adapt_to_data(cls, config, spec, source, total_steps):
        """(config with the open ADAPTED_KEYS decided from `source`, [Decision]) for a recipe
        with adapt_to_data; `total_steps(config, steps_per_epoch)`: train/config.py's."""
        raise ValueError(f"task {cls.NAME!r} does not adapt its settings to the data; set "
                         "config.adapt_to_data=False")

    def describe(self, metrics):
        """One line for the log and results.json: the evaluation's metrics."""
        return ", ".join(f"{key} {value:.4g}" for key, value in sorted(metrics.items()))
