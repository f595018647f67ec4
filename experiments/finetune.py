"""Fine-tuning on CIFAR-10, CIFAR-100, Oxford Flowers-102 and Stanford Cars (V2 paper §5.3).

    efficientnet-tf train --config=experiments/finetune.py:cifar10,efficientnetv2-s \
        --workdir=gs://BUCKET/runs/v2-s-cifar10 --config.init_from=gs://BUCKET/runs/v2-s \
        --config.data.tfds_data_dir=gs://BUCKET/tensorflow_datasets

init_from: a workdir of ours trained on ImageNet (its EMA weights are taken) or the
keras.applications weight file (efficientnetv2-s.h5); the classifier is re-initialised for the
new classes. Data: the TFDS dataset, already prepared in data_dir (nothing is downloaded at run
time). Hardware: a v3-8 / v4-8 or one GPU; batch 512, 10,000 steps.
Settings (google/automl datasets.py ImagenetFt, Cifar10Ft, ...; docs/fidelity.md): the whole
image resized to the variant's eval size for training and evaluation, no random crop
(preprocess_for_finetune), a flip and one cutout square of half side size / 4 (automl fills it
with noise, we with gray); batch 512, lr 0.001 constant after one warmup epoch (the paper says
cosine), 10,000 steps, weight decay 1e-5, label smoothing 0.1, EMA 0.9996, dropout 1e-6.
Top-1 the paper reports (Table 8, ImageNet-1k pretrained, mean of 5 runs):
  CIFAR-10 S 98.7, M 99.0, L 99.1; CIFAR-100 S 91.5, M 92.2, L 92.3;
  Flowers S 97.9, M 98.5, L 98.8; Cars S 93.8, M 94.6, L 95.1.
"""

from efficientnet_tf.specs import registry
from efficientnet_tf.train.config import base_config, parse_argument

# TFDS name, train split, eval split.
DATASETS = {
    "cifar10": ("cifar10", "train", "test"),
    "cifar100": ("cifar100", "train", "test"),
    "oxford_flowers102": ("oxford_flowers102", "train+validation", "test"),
    "cars196": ("cars196", "train", "test"),
}


def get_config(arg="cifar10,efficientnetv2-s"):
    (dataset, variant), _ = parse_argument(arg, ("cifar10", "efficientnetv2-s"))
    if dataset not in DATASETS:
        raise ValueError(f"unknown fine-tuning dataset {dataset!r}; use one of {sorted(DATASETS)}")
    spec = registry.get(variant)
    name, train_split, eval_split = DATASETS[dataset]
    config = base_config()
    config.model.name = spec.name
    config.model.dropout_rate = 1e-6
    config.model.bn_sync = "v2"
    config.data.source = "tfds"
    config.data.tfds_name = name
    config.data.tfds_train_split = train_split
    config.data.tfds_eval_split = eval_split
    config.data.crop = "whole"  # train and eval: the whole image resized, as automl's 'ft'
    config.data.resize_method = "bilinear"
    config.augment.kind = "randaugment"
    config.augment.randaug_ops = "Cutout"  # one op, always applied: cutout only
    config.augment.randaug_layers = 1
    # Cutout of half side size / 4 (automl: pad_size = image_size // 4) = magnitude / 10 * 40.
    cutout = spec.eval_size // 4 / 40 * 10
    config.augment.randaug_magnitude = cutout
    config.train.batch_size = 512
    config.train.steps = 10_000
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5
    config.train.ema_decay = 0.9996
    config.optimizer.name = "rmsprop"
    config.optimizer.lr_per_256 = 0.0005  # 0.001 at batch 512
    config.optimizer.warmup_epochs = 1
    config.optimizer.schedule = "constant"
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 1
    # automl: train size = eval size floored to a multiple of 16 (isize 1.0).
    config.progressive.image_size_min = spec.eval_size // 16 * 16
    config.progressive.image_size_max = spec.eval_size // 16 * 16
    config.progressive.randaug_min = config.progressive.randaug_max = cutout
    config.progressive.mixup_min = config.progressive.mixup_max = 0.0
    config.eval.batch_size = 500
    return config
