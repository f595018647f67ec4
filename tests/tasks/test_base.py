"""The Task interface is the trainer's only view of what it trains (tasks/base.py): a task that
is not classification -- linear regression on synthetic vectors, with its own data, loss,
metric and settings -- trains, checkpoints, resumes, evaluates and is recorded through the real
trainer, with nothing of the trainer changed."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.train import workdir as workdir_lib
from efficientnet_tf import tasks
from efficientnet_tf.tasks import base
from efficientnet_tf.train import config as config_lib, trainer

FEATURES = 6
TRUE_WEIGHTS = np.linspace(-1.0, 1.0, FEATURES).astype("float32")
TRUE_BIAS = 0.5


class VectorSource:
    """Synthetic regression data: x ~ N(0, 1)^6, y = x . w + 0.5 + noise (std 0.01)."""

    num_classes = 1
    class_names = None

    def __init__(self, train_examples=256, eval_examples=64):
        self.sizes = {"train": train_examples, "eval": eval_examples}

    def num_examples(self, split):
        return self.sizes[split]

    def arrays(self, split):
        rng = np.random.RandomState(0 if split == "train" else 1)
        x = rng.normal(size=(self.sizes[split], FEATURES)).astype("float32")
        noise = 0.01 * rng.normal(size=self.sizes[split]).astype("float32")
        return x, (x @ TRUE_WEIGHTS + TRUE_BIAS + noise)[:, None]


@dataclasses.dataclass(frozen=True)
class RegressionSettings:
    loss_scale: float

    def to_dict(self):
        return dataclasses.asdict(self)

    def describe(self):
        return f"squared error x {self.loss_scale:g}"


class LinearRegressionTask(base.Task):
    NAME = "linear_regression"
    TRAIN_METRICS = ("squared_error",)
    EVAL_REDUCTIONS = {"squared_error": "sum", "examples": "sum", "loss": "sum"}
    HEADLINE = "mse"

    @classmethod
    def make_source(cls, data_config):
        return VectorSource()

    @classmethod
    def resolve(cls, config, spec, source, strategy):
        return RegressionSettings(loss_scale=0.5)

    @classmethod
    def settings_from_dict(cls, values):
        return RegressionSettings(**values)

    @property
    def settings(self):
        return self.run.task_settings

    def build_model(self, stage=None, for_serving=False):
        inputs = keras.Input((FEATURES,))
        return keras.Model(inputs, keras.layers.Dense(1, name="linear")(inputs))

    def _dataset(self, split, batch, shuffle, seed=None):
        x, y = self.source.arrays(split)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            dataset = dataset.shuffle(len(x), seed=seed).repeat()
        return dataset.batch(batch, drop_remainder=True)

    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        return self._dataset("train", self.run.per_replica_batch, True, seed)

    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        return self._dataset("eval", batch_size or self.run.eval_batch, False)

    def loss(self, targets, outputs):
        return self.settings.loss_scale * tf.reduce_sum(tf.square(outputs - targets), axis=-1)

    def train_metrics(self, targets, outputs):
        return {"squared_error": tf.reduce_sum(tf.square(outputs - targets))}

    def summarize(self, totals):
        return {"mse": float(totals["squared_error"]) / max(float(totals["examples"]), 1.0)}

    def eval_step(self, model, inputs, targets):
        outputs = model(inputs, training=False)
        squared = tf.reduce_sum(tf.square(outputs - targets))
        return {"squared_error": squared, "loss": self.settings.loss_scale * squared,
                "examples": tf.cast(tf.shape(outputs)[0], tf.float32)}

    def evaluator(self):
        return MeanSquaredError()


class MeanSquaredError:
    def __init__(self):
        self.totals = {"squared_error": 0.0, "loss": 0.0, "examples": 0.0}

    def update(self, results):
        for key in self.totals:
            self.totals[key] += float(results[key])

    def finish(self):
        examples = max(self.totals["examples"], 1.0)
        return {"mse": self.totals["squared_error"] / examples,
                "loss": self.totals["loss"] / examples, "examples": int(examples)}


@pytest.fixture
def linear_task(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, LinearRegressionTask.NAME, LinearRegressionTask)


def regression_config(steps):
    config = config_lib.base_config()
    config.task = LinearRegressionTask.NAME
    config.model.name = "efficientnetv2-test"  # the row only names the run (and its stages)
    config.train.batch_size = 32
    config.train.steps = steps
    config.train.seed = 0
    config.train.log_every_steps = 10
    config.train.checkpoint_every_steps = 20
    config.train.weight_decay = 0.0
    config.train.ema_decay = 0.9
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.9
    config.optimizer.lr_per_256 = 0.4
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.schedule = "constant"
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 2
    config.progressive.image_size_min, config.progressive.image_size_max = 16, 32
    config.eval.batch_size = 16
    config.eval.image_size = 32
    return config


def test_a_non_classification_task_trains_through_the_real_trainer(linear_task, tmp_path):
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(regression_config(60), workdir)
    assert results["task"] == "linear_regression" and results["steps"] == 60
    # The model found the weights: noise variance is 1e-4, a random Dense gives MSE ~ 3.
    assert results["eval_mse"] < 0.01 and results["eval_examples"] == 64
    assert results["train_mse"] is not None and results["eval_summary"].startswith("examples 64")
    model, run, prefix = workdir_lib.restore_model(workdir)
    kernel, bias = model.get_layer("linear").get_weights()
    np.testing.assert_allclose(kernel[:, 0], TRUE_WEIGHTS, atol=0.05)
    np.testing.assert_allclose(bias, [TRUE_BIAS], atol=0.05)
    # The task's own settings are part of the recorded Run, and come back as its dataclass.
    with open(os.path.join(workdir, "config.json")) as stream:
        recorded = json.load(stream)["resolved"]
    assert recorded["task"] == "linear_regression"
    assert recorded["task_settings"] == {"loss_scale": 0.5}
    assert run.task_settings == RegressionSettings(0.5) and prefix.endswith("ckpt-60")
    # eval restores the run as export does, through the task.
    evaluated = trainer.evaluate_workdir(workdir)
    assert evaluated["mse"] == pytest.approx(results["eval_mse"], rel=1e-5)


def test_the_fake_task_resumes_where_it_stopped(linear_task, tmp_path):
    workdir = str(tmp_path / "run")
    first = trainer.train_and_evaluate(regression_config(40), workdir)
    resumed = trainer.train_and_evaluate(regression_config(60), workdir)
    assert first["steps"] == 40 and resumed["steps_this_run"] == 20
    assert resumed["eval_mse"] < first["eval_mse"]


def test_an_unknown_task_is_one_clear_error(tmp_path):
    config = regression_config(4)
    config.task = "segmentation"
    with pytest.raises(ValueError, match="unknown task 'segmentation'; use one of"):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
