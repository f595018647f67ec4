"""Train on your own images: a folder with one subfolder of pictures per class (ROOT/CLASS/IMAGE).

    efficientnet-tf train --config=experiments/folder.py --workdir=runs/mine \
        --config.data.root=/path/to/photos [--config.data.eval_root=/path/to/validation] \
        [--config.train.epochs=30] [--config.init_from=efficientnetv2-b0/imagenet21k-ft1k]

init_from: pretrained weights to fine-tune from (downloaded on first use): an official
checkpoint of the variant by name (`efficientnet-tf info --weights`; it sets the input scaling
the checkpoint was trained with), 'imagenet' (keras.applications'), a path, or a run of ours.

The argument picks the variant (":efficientnetv2-b0", the default). Hardware: any; a laptop CPU
trains efficientnetv2-b0 on a thousand 96-px images in a few minutes.
What the recipe decides from the data (logged at start as "decided from the data", each with
its reason; set a key to keep your own value): the image size (the images' own, at most the
variant's train size), progressive learning from 2/3 of it, the batch (32, or 16 for small
folders), the warmup and the EMA window (from the run's length), and, with init_from, the
fine-tuning path (whole images, a tenth of the learning rate, one size).
Decided too: random crops of at least half the image from 96 px up, the whole image below
(tasks/classification/adapt.py MIN_CROP_SIZE). Fixed here, from the ablation in the README
("Your own images"):
AdamW at 1e-3 (per 32 images) on an exponential schedule (x0.97 every 2.4 epochs: nearly flat
over a short run), no RandAugment (--config.augment.kind=randaugment turns on the size-relative
version; it cost 5-35 points in 15-epoch runs), EMA of the weights, whole-image evaluation,
no label smoothing (0.1 cost 1.6-4.5 points on each set over 3 seeds), dropout 0.2.
"""

from ml_collections.config_dict import placeholder

from efficientnet_tf.train.config import base_config, parse_argument


def get_config(arg="efficientnetv2-b0"):
    (variant,), _ = parse_argument(arg, ("efficientnetv2-b0",))
    config = base_config()
    config.adapt_to_data = True
    config.model.name = variant
    config.data.source = "folder"
    config.data.crop = placeholder(str)  # v1 random crops; whole images when fine-tuning
    config.data.crop_area_min = 0.5
    config.data.resize_method = "bilinear"
    config.data.cache = True  # a folder of this size fits in memory: decoded once per run
    config.augment.kind = "none"  # "randaugment": size-relative, 2 layers, magnitude 6
    config.augment.randaug_layers = 2
    config.augment.relative_to_size = True
    config.train.batch_size = placeholder(int)
    config.train.epochs = 30
    config.train.log_every_steps = 20
    config.train.checkpoint_every_steps = 200
    # 0.1 cost 1.6-4.5 points on every set in 3-seed runs of 10-15 epochs (the recipe
    # underfits these small sets; smoothing only holds the logits back further).
    config.train.label_smoothing = 0.0
    config.train.weight_decay = 0.05
    config.train.weight_decay_mode = "decoupled"
    config.train.ema_decay = placeholder(float)
    config.optimizer.name = "adamw"
    config.optimizer.lr_per_256 = placeholder(float)
    config.optimizer.epsilon = 1e-7
    config.optimizer.warmup_epochs = placeholder(float)
    config.optimizer.schedule = "exponential"  # x0.97 every 2.4 epochs: nearly flat in a short run
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 3
    config.progressive.randaug_min = config.progressive.randaug_max = 6.0
    config.progressive.mixup_min = config.progressive.mixup_max = 0.0
    config.progressive.dropout_min = config.progressive.dropout_max = 0.2
    config.eval.crop_fraction = 1.0  # the whole (square) picture: no 32-px border to spare
    config.eval.batch_size = 32
    return config
