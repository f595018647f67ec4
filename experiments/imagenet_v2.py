"""EfficientNetV2 (B0-B3, S, M, L, XL) on ImageNet ILSVRC2012: google/automl's recipe.

    efficientnet-tf train --config=experiments/imagenet_v2.py:efficientnetv2-s --tpu=local \
        --workdir=gs://BUCKET/runs/v2-s \
        --config.data.train_pattern=gs://BUCKET/imagenet/train-* \
        --config.data.eval_pattern=gs://BUCKET/imagenet/validation-*

Hardware: the paper trains on 32 TPUv3 cores (v3-32), global batch 4096 (128 per core); on a
v3-8 / v4-8 set --config.train.batch_size=1024. 350 epochs in 4 stages of progressive learning
as automl computes them (schedule "official": V2-S at 171/214/257/300 px, RandAugment 5 -> 10,
dropout fixed; M and L add mixup and cutmix); ":efficientnetv2-s,paper" follows the paper's
Table 6 instead (128 -> 300 px, RandAugment 5 -> 15, dropout 0.1 -> 0.3). B0-B3 are trained as
automl trains them: V1's preprocessing (area 0.08, bicubic, AutoAugment, center crop at eval),
fixed dropout. Every setting and its source: docs/fidelity.md.
Top-1 the paper reports (docs/reference.md): b0 78.7, b1 79.8, b2 80.5, b3 82.1, s 83.9, m 85.2,
l 85.7; xl 87.2 needs ImageNet-21k pretraining (experiments/imagenet21k_v2.py), then fine-tuning
here with --config.init_from.

Append ",runlocal" to the argument for a few-step smoke run on a CPU.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, parse_argument, runlocal


def get_config(arg="efficientnetv2-s"):
    (variant,), options = parse_argument(arg, ("efficientnetv2-s",), flags=("runlocal", "paper"))
    spec = registry.get(variant)
    config = base_config()
    config.model.name = spec.name
    config.model.bn_sync = "v2"  # TPU: groups of min(8, replicas)
    config.data.source = "tfrecord"
    # The row's official path: automl's 'effnetv1_autoaug' for B0-B3, 'randaug' for S/M/L/XL.
    if spec.preprocessing == "v1":
        config.data.crop = "v1"  # area 0.08, bicubic; eval center crop, padding 32, any size
        config.data.resize_method = "bicubic"
        config.augment.kind = "autoaugment"
    else:
        config.data.crop = "v2"  # area 0.05, bilinear; eval: whole image from 320 px on
        config.data.resize_method = "bilinear"
        config.augment.kind = "randaugment"  # 2 layers; magnitude, mixup, cutmix per stage
    config.train.batch_size = 4096
    config.train.epochs = 350
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5  # L2 as a loss term; not biases, BN gamma or beta
    config.train.weight_decay_exclude = "bias,gamma,beta"
    config.train.ema_decay = 0.9999
    config.optimizer.name = "rmsprop"
    config.optimizer.lr_per_256 = 0.016  # 0.256 at 4096
    config.optimizer.warmup_epochs = 5
    config.optimizer.schedule = "exponential"  # x0.97 every 2.4 epochs, counted from step 0
    config.progressive.schedule = "paper" if "paper" in options else "official"
    config.progressive.num_stages = 4
    config.eval.batch_size = 1024
    if "runlocal" in options:
        runlocal(config)
    return config
