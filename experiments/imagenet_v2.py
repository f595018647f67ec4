"""EfficientNetV2 (B0-B3, S, M, L, XL) on ImageNet ILSVRC2012 with progressive learning (V2 paper).

    efficientnet-tf train --config=experiments/imagenet_v2.py:efficientnetv2-s --tpu=local \
        --workdir=gs://BUCKET/runs/v2-s \
        --config.data.train_pattern=gs://BUCKET/imagenet/train-* \
        --config.data.eval_pattern=gs://BUCKET/imagenet/validation-*

Hardware: the paper trains on 32 TPUv3 cores (v3-32), global batch 4096 (128 per core); on a
v3-8 / v4-8 set --config.train.batch_size=1024. 350 epochs in 4 stages of progressive learning:
image size, RandAugment magnitude, mixup and dropout from min to max (V2 paper Table 6, registry
rows; `--config.progressive.schedule=official` for google/automl's variant).
Top-1 the paper reports (REFERENCE.md §3): b0 78.7, b1 79.8, b2 80.5, b3 82.1, s 83.9, m 85.2,
l 85.7; xl 87.2 needs ImageNet-21k pretraining (experiments/imagenet21k_v2.py), then fine-tuning
here with --config.init_from.

Append ",runlocal" to the argument for a few-step smoke run on a CPU.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, runlocal


def get_config(arg="efficientnetv2-s"):
    variant, _, mode = arg.partition(",")
    spec = registry.get(variant)
    config = base_config()
    config.model.name = spec.name
    config.data.source = "tfrecord"
    config.data.crop = "v2"  # area 0.05-1 (google/automl preprocessing)
    small = spec.name in ("efficientnetv2-b0", "efficientnetv2-b1", "efficientnetv2-b2",
                          "efficientnetv2-b3")
    # B0-B3 follow V1's augmentation ("same scaling and preprocessing as V1", official README);
    # S/M/L/XL use RandAugment with the stage's magnitude.
    config.augment.kind = "autoaugment" if small else "randaugment"
    config.train.batch_size = 4096
    config.train.epochs = 350
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5
    config.train.ema_decay = 0.9999
    config.optimizer.name = "rmsprop"
    config.optimizer.lr_per_256 = 0.016
    config.optimizer.warmup_epochs = 5
    config.optimizer.schedule = "exponential"
    config.progressive.schedule = "paper"
    config.progressive.num_stages = 4
    config.eval.batch_size = 1024
    if mode == "runlocal":
        runlocal(config)
    return config
