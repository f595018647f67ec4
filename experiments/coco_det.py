"""EfficientDet D0-D7x on COCO 2017 (EfficientDet paper §4.1; google/automl efficientdet).

    efficientnet-tf train --config=experiments/coco_det.py:efficientdet-d0 --workdir=gs://B/d0 \
        --config.data.train_pattern='gs://B/coco/train-*' \
        --config.data.eval_pattern='gs://B/coco/val-*' \
        --config.init_from=efficientnetb0.h5 --tpu=NAME

Hardware: the paper's recipe is a batch of 128 on 32 TPU v3 cores (a v3-32 slice); 300 epochs
(D7/D7x: 600). Records: automl's create_coco_tfrecord.py format (scripts/make_detection_tfrecords.py
writes it from a COCO JSON) or the COCO JSON files themselves (data.source=coco_json): either way
COCO category ids 1..90 -> classes 0..89 (label_offset 1, data.class_ids=category_id: 90 classes
with the 10 unused ids as classes that never occur, as automl's records, its checkpoints and
its 3,880,067 parameters of D0 have them). Published COCO val AP (automl README):
D0 34.3, D1 40.2, D2 43.5, D3 46.8, D4 49.3, D5 51.2, D6 52.1, D7 53.4, D7x 54.4.

The recipe (automl hparams_config.py, tf2/train_lib.py): SGD momentum 0.9, learning rate 0.08 per 64
images (scaled with the global batch), 1 epoch of linear warmup, cosine decay; L2 weight decay 4e-5
on kernels (not biases, BN or the BiFPN fusion weights); gradient clipping at global norm 10 as
automl's TF1 TPU path clips (each replica's share of the gradient, each tensor then all:
train.grad_clip_mode=automl, so on N replicas the mean gradient is clipped at about 10 x N; the
progress line shows how often it clips); EMA 0.9998; batch norm synchronized over all replicas
(momentum 0.99, epsilon 1e-3); scale jitter 0.1-2.0 with flips; focal loss alpha 0.25 gamma 1.5,
Huber delta 0.1 x 50, no label smoothing. Differences: the warmup ramps from 0 (automl: from 0.008),
the losses are normalized by the positives of the global batch (automl: of each replica's); the
evaluation's per-class soft-NMS runs on the host after the step (TensorFlow has no XLA kernel for
it).
The ",runlocal" option shrinks it to a CPU smoke run.
"""

from efficientnet_tf.train.config import base_config, parse_argument, runlocal

COCO_TRAIN_IMAGES, COCO_VAL_IMAGES = 118_287, 5_000


def get_config(arg="efficientdet-d0"):
    (model,), options = parse_argument(arg, ("efficientdet-d0",), flags=("runlocal",))
    config = base_config()
    config.task = "detection"
    config.model.name = model
    config.model.bn_sync = "all"
    config.data.source = "detection_tfrecord"
    config.data.label_offset = 1
    config.data.class_ids = "category_id"
    config.data.num_classes = 90
    config.data.num_train_examples = COCO_TRAIN_IMAGES
    config.data.num_eval_examples = COCO_VAL_IMAGES
    config.data.shuffle_buffer = 1000
    config.progressive.schedule = "none"
    config.train.batch_size = 128
    config.train.epochs = 600.0 if model in ("efficientdet-d7", "efficientdet-d7x") else 300.0
    config.train.weight_decay = 4e-5
    config.train.weight_decay_mode = "l2"
    config.train.weight_decay_exclude = "bias,gamma,beta,fusion_weights"
    config.train.grad_clip_norm = 10.0
    config.train.grad_clip_mode = "automl"
    config.train.ema_decay = 0.9998
    config.train.checkpoint_every_steps = 2000
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.9
    config.optimizer.lr_per_256 = 0.08 * 256 / 64
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.schedule = "cosine"
    config.eval.batch_size = 64
    if "runlocal" in options:
        runlocal(config)
    return config
