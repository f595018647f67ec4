"""A tiny, fast trainer config over a folder of photos."""

from efficientnet_tf.train import config as config_lib


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
