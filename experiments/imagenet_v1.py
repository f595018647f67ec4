"""EfficientNet V1 (B0-B7) on ImageNet ILSVRC2012: the recipe of tensorflow/tpu's efficientnet code.

    efficientnet-tf train --config=experiments/imagenet_v1.py:efficientnet-b0 --tpu=local \
        --workdir=gs://BUCKET/runs/b0 \
        --config.data.train_pattern=gs://BUCKET/imagenet/train-* \
        --config.data.eval_pattern=gs://BUCKET/imagenet/validation-*

Hardware: a v3-32 / v4-32 slice; the official default global batch is 2048 (64 per core on 32
cores); on a v3-8 use --config.train.batch_size=1024 (the learning rate follows batch / 256).
350 epochs. Data: ImageNet TFRecords in the tensorflow/tpu imagenet_to_gcs format (1,024 train
shards, labels 1..1000). Top-1 the official README reports with AutoAugment (docs/reference.md):
b0 77.1, b1 79.1, b2 80.1, b3 81.6, b4 82.9, b5 83.6, b6 84.0, b7 84.3.
b8 (85.5) and l2 (88.4) need AdvProp / NoisyStudent data that this recipe does not have.
Every setting and its source: docs/fidelity.md.

Append ",runlocal" to the argument (":efficientnet-b0,runlocal") for a few-step smoke run of the
same recipe at batch 16 on a CPU.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, parse_argument, runlocal


def get_config(arg="efficientnet-b0"):
    (variant,), options = parse_argument(arg, ("efficientnet-b0",), flags=("runlocal",))
    spec = registry.get(variant)
    config = base_config()
    config.model.name = spec.name
    config.model.bn_sync = "v1"  # TPU: groups of max(8, replicas // 8) above 8 replicas
    config.data.source = "tfrecord"
    config.data.crop = "v1"  # area 0.08-1, center-crop fallback; eval center crop, padding 32
    config.data.resize_method = "bicubic"
    config.augment.kind = "autoaugment"  # policy v0: the README's AutoAugment column
    config.train.batch_size = 2048  # main.py train_batch_size
    config.train.epochs = 350  # 218,949 steps at 2048
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5  # L2 as a loss term, on every variable but batch norm
    config.train.weight_decay_exclude = "gamma,beta"
    config.train.ema_decay = 0.9999
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 1000
    config.optimizer.name = "rmsprop"  # decay 0.9, momentum 0.9, eps 1e-3, slot at ones
    config.optimizer.lr_per_256 = 0.016  # 0.128 at 2048
    config.optimizer.warmup_epochs = 5
    config.optimizer.schedule = "exponential"  # x0.97 every 2.4 epochs, counted from step 0
    config.progressive.schedule = "none"  # V1: one size, the row's (224 for b0 ... 600 for b7)
    config.eval.batch_size = 1024
    if "runlocal" in options:
        runlocal(config)
    return config
