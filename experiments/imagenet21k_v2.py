"""EfficientNetV2 pretraining on ImageNet-21k (V2 paper §5.2 and google/automl's config).

    efficientnet-tf train --config=experiments/imagenet21k_v2.py:efficientnetv2-l --tpu=local \
        --workdir=gs://BUCKET/runs/v2-l-21k \
        --config.data.train_pattern=gs://BUCKET/imagenet21k/train-* \
        --config.data.eval_pattern=gs://BUCKET/imagenet21k/validation-*

Then fine-tune on ImageNet-1k: experiments/imagenet_v2.py with --config.init_from=THIS_WORKDIR.
Hardware: TPU pods (the paper: 32 TPUv3 cores and more). 60 epochs at 224 px, cosine
schedule from 0.008 x batch / 256 after one warmup epoch, no label smoothing, no augmentation,
no dropout or stochastic depth (google/automl ImageNet21k config). ImageNet-21k has about 13M
images of 21,841 classes and no official split: hold out your own validation shards and set
data.num_train_examples / num_eval_examples. After 21k pretraining and 1k fine-tuning the paper
reports 86.2 (S) ... 87.3 (XL) top-1 on ILSVRC2012.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, parse_argument


def get_config(arg="efficientnetv2-l"):
    (variant,), _ = parse_argument(arg, ("efficientnetv2-l",))
    spec = registry.get(variant)
    config = base_config()
    config.model.name = spec.name
    config.model.bn_sync = "v2"
    config.model.dropout_rate = 1e-6
    config.model.survival_prob = 1.0
    config.data.source = "tfrecord"
    config.data.num_classes = 21841
    config.data.num_train_examples = 13_000_000
    config.data.num_eval_examples = 100_000
    config.data.crop = "v2"
    config.augment.kind = "none"
    config.train.batch_size = 4096
    config.train.epochs = 60
    config.train.label_smoothing = 0.0
    config.train.weight_decay = 1e-5
    config.train.ema_decay = 0.9999
    config.optimizer.name = "rmsprop"
    config.optimizer.lr_per_256 = 0.008
    config.optimizer.warmup_epochs = 1
    config.optimizer.schedule = "cosine"
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 1
    config.progressive.image_size_min = 224
    config.progressive.image_size_max = 224
    config.eval.image_size = 224
    config.eval.batch_size = 1024
    return config
