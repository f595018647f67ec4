"""Fine-tune EfficientDet on your own boxes: a COCO JSON file and an image folder per split.

    efficientnet-tf train --config=experiments/detect_folder.py:efficientdet-d0 --workdir=runs/my \
        --config.data.train_annotations=DATA/train.json --config.data.train_images=DATA/train \
        --config.data.eval_annotations=DATA/val.json --config.data.eval_images=DATA/val \
        --config.init_from=efficientdet-d0/coco [--config.train.epochs=50]

The argument picks the detector (":efficientdet-d0", the default; D0 for a few thousand images,
a larger row for more data and time). Hardware: a GPU or a TPU; on a laptop CPU D0 trains some
6 images/s at 512 px. `init_from` takes the official COCO detector of the row
('efficientdet-d0/coco', downloaded on first use: everything but the class predictor, which
starts fresh for your classes), an official classifier checkpoint of its backbone
('efficientnet-b0/noisy-student': the backbone only), 'imagenet' (the backbone's
keras.applications weights), a path, or a workdir of ours (a detector trained before: its class
predictor is re-initialised when the classes differ). Classes come from the file's categories
in id order, 0-based.

The recipe is coco_det.py's (automl's), shortened: 50 epochs with a 1-epoch warmup, a cosine
decay and an EMA over about the last 1,000 steps (0.999); SGD at automl's 0.08 per 64 images;
flips on (set --config.data.random_flip=false for text or digits), scale jitter 0.1-2.0, batch
16 with per-replica batch norm (set model.bn_sync=all on 8+ replicas). Evaluated with COCO AP
(AP50, AP75, per class) at the end; --config.train.eval_every_steps=N evaluates during training.
The ",runlocal" option shrinks it to a CPU smoke run.
"""

from efficientnet_tf.train.config import base_config, parse_argument, runlocal


def get_config(arg="efficientdet-d0"):
    (model,), options = parse_argument(arg, ("efficientdet-d0",), flags=("runlocal",))
    config = base_config()
    config.task = "detection"
    config.model.name = model
    config.data.source = "coco_json"
    config.data.shuffle_buffer = 1000
    config.progressive.schedule = "none"
    config.train.batch_size = 16
    config.train.epochs = 50.0
    config.train.log_every_steps = 50
    config.train.checkpoint_every_steps = 500
    config.train.weight_decay = 4e-5
    config.train.weight_decay_mode = "l2"
    config.train.weight_decay_exclude = "bias,gamma,beta,fusion_weights"
    config.train.grad_clip_norm = 10.0
    config.train.ema_decay = 0.999
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.9
    config.optimizer.lr_per_256 = 0.08 * 256 / 64
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.schedule = "cosine"
    config.eval.batch_size = 16
    if "runlocal" in options:
        runlocal(config)
    return config
