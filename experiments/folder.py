"""Train on an image folder (ROOT/CLASS/IMAGE) on a laptop or one machine.

    efficientnet-tf train --config=experiments/folder.py:efficientnetv2-b0 --workdir=/tmp/run \
        --config.data.root=/path/to/photos --config.train.epochs=30

Hardware: any; a CPU trains efficientnetv2-test/b0 at small sizes. Accuracy depends on the data.
"""

from efficientnet_tf.train.config import base_config


def get_config(arg="efficientnetv2-b0"):
    config = base_config()
    config.model.name = arg
    config.data.source = "folder"
    config.train.batch_size = 32
    config.train.epochs = 30
    config.train.log_every_steps = 10
    config.train.checkpoint_every_steps = 100
    config.optimizer.warmup_epochs = 1.0
    config.augment.randaug_magnitude = 10.0
    config.eval.batch_size = 32
    return config
