"""EfficientNet V1 (B0-B7) on ImageNet ILSVRC2012: the recipe of the V1 paper and tensorflow/tpu.

    efficientnet-tf train --config=experiments/imagenet_v1.py:efficientnet-b0 --tpu=local \
        --workdir=gs://BUCKET/runs/b0 \
        --config.data.train_pattern=gs://BUCKET/imagenet/train-* \
        --config.data.eval_pattern=gs://BUCKET/imagenet/validation-*

Hardware: a v3-32 / v4-32 slice (global batch 4096 = 128 per core; use v3-8 with
--config.train.batch_size=1024, the learning rate follows batch / 256). 350 epochs.
Data: ImageNet TFRecords in the tensorflow/tpu imagenet_to_gcs format (1,024 train shards,
labels 1..1000). Top-1 the official README reports with AutoAugment (REFERENCE.md §2):
b0 77.1, b1 79.1, b2 80.1, b3 81.6, b4 82.9, b5 83.6, b6 84.0, b7 84.3.
b8 (85.5) and l2 (88.4) need AdvProp / NoisyStudent data that this recipe does not have.

Append ",runlocal" to the argument (":efficientnet-b0,runlocal") for a few-step smoke run of the
same recipe at batch 16 on a CPU.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, runlocal


def get_config(arg="efficientnet-b0"):
    variant, _, mode = arg.partition(",")
    spec = registry.get(variant)
    config = base_config()
    config.model.name = spec.name
    config.data.source = "tfrecord"
    config.data.crop = "v1"  # area 0.08-1, center-crop fallback (tensorflow/tpu preprocessing)
    config.data.resize_method = "bicubic"
    config.augment.kind = "autoaugment"  # policy v0: the README's AutoAugment column
    config.train.batch_size = 4096
    config.train.epochs = 350
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5  # L2 on kernels, as a loss term
    config.train.ema_decay = 0.9999
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 1000
    config.optimizer.name = "rmsprop"  # decay 0.9, momentum 0.9, eps 1e-3, slot at ones
    config.optimizer.lr_per_256 = 0.016  # 0.256 at 4096
    config.optimizer.warmup_epochs = 5
    config.optimizer.schedule = "exponential"  # x0.97 every 2.4 epochs
    config.progressive.schedule = "none"  # V1: one size, the row's (224 for b0 ... 600 for b7)
    config.eval.batch_size = 1024
    if mode == "runlocal":
        runlocal(config)
    return config
