"""Train EfficientDet on your own boxes: a COCO JSON file and an image folder per split.

    efficientnet-tf train --config=experiments/detect_folder.py:efficientdet-d0 --workdir=runs/my \
        --config.data.train_annotations=DATA/train.json --config.data.train_images=DATA/train \
        --config.data.eval_annotations=DATA/val.json --config.data.eval_images=DATA/val \
        [--config.train.epochs=50] [--config.init_from=efficientdet-d0/coco]

The argument picks the detector (":efficientdet-d0", the default; a larger row for more data
and time). The recipe adapts to the data (tasks/detection/adapt.py): from the training
annotations it decides the input size (the images' own, enlarged when the objects are
smaller than the smallest anchor, at most the row's), the anchor scale (the smallest anchors
fit the small objects), the scale jitter (mild for small objects) and the unjittered last 40%
of the steps, the batch, AdamW's rate, the warmup, the EMA and the batch-norm momentum
(averaging over the run's last tenth / forgetting the start) and the batch-norm statistics
recomputed at the end, and logs each decision with its reason (`--dry_run` prints them). A
key you set is never changed. `init_from` takes the official COCO detector of the row
('efficientdet-d0/coco', downloaded on first use: everything but the class predictor, which
starts fresh for your classes; the rate is then a tenth), an official
classifier checkpoint of its backbone ('efficientnet-b0/noisy-student'), 'imagenet' (the
backbone's keras.applications weights), a path, or a workdir of ours. Classes come from the
file's categories in id order, 0-based.

Fixed here: 50 epochs on a cosine schedule, AdamW (decoupled weight decay 0.05, not on biases,
batch norms and fusion weights), gradients clipped at 10, flips on (set
--config.data.random_flip=false for text or digits), images cached in memory. Evaluated with
COCO AP (AP50, AP75, per class) at the end; --config.train.eval_every_steps=N evaluates during
training. The ",runlocal" option shrinks it to a CPU smoke run. experiments/coco_det.py is
automl's COCO recipe unchanged.
"""

from efficientnet_tf.train.config import base_config, parse_argument, runlocal


def get_config(arg="efficientdet-d0"):
    (model,), options = parse_argument(arg, ("efficientdet-d0",), flags=("runlocal",))
    config = base_config()
    config.task = "detection"
    config.adapt_to_data = True  # the keys of tasks/detection/adapt.py left None below
    config.model.name = model
    config.data.source = "coco_json"
    config.data.cache = True
    config.data.shuffle_buffer = 1000
    config.progressive.schedule = "none"
    config.detection.scale_min = config.detection.scale_max = None
    config.train.batch_size = None
    config.train.epochs = 50.0
    config.train.log_every_steps = 50
    config.train.checkpoint_every_steps = 500
    config.train.weight_decay = 0.05
    config.train.weight_decay_mode = "decoupled"
    config.train.weight_decay_exclude = "bias,gamma,beta,fusion_weights"
    config.train.grad_clip_norm = 10.0
    config.train.ema_decay = None
    config.optimizer.name = "adamw"
    config.optimizer.lr_per_256 = None
    config.optimizer.epsilon = 1e-7
    config.optimizer.warmup_epochs = None
    config.optimizer.schedule = "cosine"
    config.eval.batch_size = 16
    if "runlocal" in options:
        runlocal(config)
    return config
