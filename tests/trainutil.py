"""A tiny, fast trainer config over a folder of photos; a bare task for step-level tests."""

import importlib.util
import os

import tensorflow as tf

from efficientnet_tf.tasks import base
from efficientnet_tf.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe(name, argument):
    """experiments/NAME.py's get_config(argument), loaded as the CLI's --config does."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments",
                                                                      f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument)


def tiny_config(root, **overrides):
    """efficientnetv2-test at 32 px, batch 8: a real run in seconds."""
    config = config_lib.base_config()
    config.model.name = "efficientnetv2-test"
    config.data.source = "folder"
    config.data.root = root
    config.data.eval_percent = 25
    config.data.shuffle_buffer = 64
    config.data.deterministic = True
    config.augment.kind = "none"
    config.train.batch_size = 8
    config.train.steps = 12
    config.train.log_every_steps = 3
    config.train.checkpoint_every_steps = 6
    config.train.seed = 0
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.lr_per_256 = 0.5
    config.optimizer.schedule = "constant"
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 1
    config.progressive.image_size_min = 32
    config.progressive.image_size_max = 32
    config.eval.batch_size = 8
    config.eval.image_size = 32
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


class SoftmaxTask(base.Task):
    """Softmax cross-entropy on one-hot targets, nothing else: for tests of the step functions
    on hand-made models and batches (no data source, no run)."""

    NAME = "softmax"
    EVAL_REDUCTIONS = {"loss": "sum", "examples": "sum"}

    def __init__(self):
        super().__init__(None, None)

    @classmethod
    def make_source(cls, data_config):
        raise NotImplementedError

    @classmethod
    def resolve(cls, config, spec, source, strategy):
        raise NotImplementedError

    @classmethod
    def settings_from_dict(cls, values):
        raise NotImplementedError

    def build_model(self, stage=None, for_serving=False):
        raise NotImplementedError

    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        raise NotImplementedError

    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        raise NotImplementedError

    def loss(self, targets, outputs):
        return tf.nn.softmax_cross_entropy_with_logits(tf.cast(targets, tf.float32),
                                                       tf.cast(outputs, tf.float32))

    def eval_step(self, model, inputs, targets):
        outputs = model(inputs, training=False)
        return {"loss": tf.reduce_sum(self.loss(targets, outputs)),
                "examples": tf.cast(tf.shape(outputs)[0], tf.float32)}

    def evaluator(self):
        raise NotImplementedError
