"""`efficientnet-tf demo`: the embedded default run, on a fresh machine, in a few minutes on a CPU.

Writes scikit-learn's digits as image files, trains a small EfficientNetV2 (efficientnetv2-test)
on them through the image-folder source with progressive learning (4 stages, 16 -> 40 px, dropout
0.1 -> 0.3, RandAugment 1 -> 5, mixup 0 -> 0.2), evaluates the held-out 10% with the EMA weights,
exports the model, and prints the accuracy. experiments/digits.py is the same config for `train`.

`efficientnet-tf demo detection`: writes digit scenes (tasks/detection/digit_scenes.py: the
digits pasted at known boxes onto the bundled photos, as COCO JSON and PNGs), trains a small
EfficientDet on them through the COCO JSON source, evaluates COCO AP on scenes of digits from
other writers, and compares it with a predictor that knows where digits tend to be but not
which digit they are.
"""

from efficientnet_tf.train.config import base_config


def digits_config(root):
    """The demo's settings, for the digit images in `root` (see efficientnet_tf/data/digits.py)."""
    config = base_config()
    config.model.name = "efficientnetv2-test"
    config.data.source = "folder"
    config.data.root = root
    config.data.eval_percent = 10
    config.data.crop = "v1"
    config.data.crop_area_min = 0.5  # the digit fills the image: keep most of it
    config.data.random_flip = False  # a mirrored 2 is not a 2
    config.data.shuffle_buffer = 2048
    config.data.cache = True
    config.augment.kind = "randaugment"
    config.augment.randaug_layers = 1
    # The official constants are pixels of 224-px images (translate 100, cutout 2 x 40): on a
    # 40-px digit they erase it. Keep the ops that bend or recolour it.
    config.augment.randaug_ops = ("AutoContrast,Equalize,Rotate,Color,Contrast,Brightness,"
                                  "Sharpness,ShearX,ShearY")
    config.train.batch_size = 64
    config.train.epochs = 40
    config.train.log_every_steps = 50
    config.train.checkpoint_every_steps = 250
    config.train.label_smoothing = 0.1
    config.train.weight_decay = 1e-5
    config.train.ema_decay = 0.99  # a 1,000-step run: average over its last ~100 steps
    config.train.seed = 0
    config.optimizer.name = "rmsprop"
    config.optimizer.lr_per_256 = 0.016 * 4  # short run: a higher rate than ImageNet's
    config.optimizer.warmup_epochs = 2.0
    config.optimizer.schedule = "cosine"
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 4
    config.progressive.image_size_min = 16
    config.progressive.image_size_max = 40
    config.progressive.randaug_min = 1.0
    config.progressive.randaug_max = 5.0
    config.progressive.mixup_min = 0.0
    config.progressive.mixup_max = 0.2
    config.progressive.dropout_min = 0.1
    config.progressive.dropout_max = 0.3
    config.eval.batch_size = 64
    config.eval.image_size = 40
    config.eval.crop_fraction = 1.0  # the whole digit; 40/(40+32) would cut it
    return config


def served_accuracy(export_dir, examples, batch_size=64):
    """Top-1 of an exported SavedModel's serving_default on [(image path, label)]: the image
    files' bytes go in, as a TF Serving client would send them."""
    import tensorflow as tf  # see run()

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    correct = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        data = [tf.io.gfile.GFile(path, "rb").read() for path, _ in batch]
        predicted = serve(image_bytes=tf.constant(data))["classes"][:, 0].numpy()
        correct += int(sum(int(p) == label for p, (_, label) in zip(predicted, batch)))
    return correct / max(len(examples), 1)


def run_digits(workdir, strategy=None):
    """Writes the digits under WORKDIR/digits, trains and evaluates in WORKDIR, exports a
    SavedModel to WORKDIR/export and measures it on the held-out files; returns the results."""
    # Imported here: experiments/digits.py imports this module's digits_config while the flags
    # are parsed, before TensorFlow may load (main.py sets its environment first).
    from efficientnet_tf import export
    from efficientnet_tf.data import digits, sources
    from efficientnet_tf.train import trainer

    workdir = workdir.rstrip("/")
    root = f"{workdir}/digits"
    digits.write_digits(root)
    config = digits_config(root)
    results = trainer.train_and_evaluate(config, workdir, strategy)
    results["export_dir"] = export.export_workdir(workdir, f"{workdir}/export")
    held_out = sources.from_config(config.data).examples(sources.EVAL)
    results["served_top1"] = served_accuracy(results["export_dir"], held_out)
    return results


# The scaling demo's search (scaling/plan.py's Settings): the V1 paper's factor 2 on a coarse grid,
# each network trained twice (two seeds) so the report shows how much the ranking moves.
SCALING_SEARCH = dict(base="efficientnetv2-test", factor=2.0, grid_step=0.1, tolerance=0.1,
                      seeds=(0, 1))


def scaling_config(root):
    """The scaling demo's recipe, for the digit images in `root`: the default run's, with each
    network at its own resolution throughout (no progressive learning: the resolution is what
    the search scales), RandAugment at the default run's last magnitude, a quarter of the
    digits held out (434 images: a finer top-1 than the default run's 161), a short budget,
    and data in a fixed order (the same seed, the same top-1)."""
    config = digits_config(root)
    config.progressive.schedule = "none"
    config.eval.image_size = None  # each network's own resolution
    config.augment.randaug_magnitude = 5.0
    config.data.eval_percent = 25
    config.data.deterministic = True
    config.train.epochs = 8
    config.train.checkpoint_every_steps = 100
    config.train.log_every_steps = 100
    return config


def run_scaling(workdir, strategy=None):
    """Writes the digits under WORKDIR/digits and runs the compound-scaling search on them in
    WORKDIR (SCALING_SEARCH, scaling_config); returns its report (scaling/report.py's Report)."""
    from efficientnet_tf.scaling import plan as scaling_plan
    from efficientnet_tf.scaling import search as scaling_search
    from efficientnet_tf.data import digits

    workdir = workdir.rstrip("/")
    root = f"{workdir}/digits"
    digits.write_digits(root)
    settings = scaling_plan.Settings(**SCALING_SEARCH)
    return scaling_search.search(scaling_config(root), workdir, settings, strategy)


DETECTION_SIZE = 256
# The score thresholds at which the demo compares its TFLite and SavedModel boxes: predict's
# default, and a lower one that holds some 6 times more of the demo detector's boxes (361 and
# 2,239 on the eval scenes). Lower still the two lists differ in their last half percent (at
# 0.1: 99.5% of the SavedModel's found again; README, Detection).
PARITY_SCORES = (0.3, 0.2)


def detection_config(root):
    """The detection demo's settings, for the digit scenes in `root`."""
    config = base_config()
    config.task = "detection"
    config.model.name = "efficientdet-demo"  # AP 9.2; efficientdet-test 1.75 (registry)
    config.data.source = "coco_json"
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{root}/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{root}/{split}/images"
    config.data.random_flip = False  # a mirrored 2 is not a 2
    config.data.cache = True
    config.data.shuffle_buffer = 1024
    config.data.deterministic = True  # the same AP on every run
    config.progressive.schedule = "none"
    config.detection.scale_min, config.detection.scale_max = 0.6, 1.6  # digits stay >= 14 px
    config.train.image_size = DETECTION_SIZE
    config.train.batch_size = 16
    config.train.epochs = 20
    config.train.log_every_steps = 50
    config.train.checkpoint_every_steps = 250
    # From scratch in 750 steps, AdamW at 1e-3 (the folder recipe's) reached AP 1.7 where
    # automl's SGD at 0.08 per 64 images reached 1.2 (one run each, efficientdet-test).
    config.train.weight_decay = 0.05
    config.train.weight_decay_mode = "decoupled"
    config.train.weight_decay_exclude = "bias,gamma,beta,fusion_weights"
    config.train.grad_clip_norm = 10.0
    config.train.ema_decay = 0.99  # a run of some 750 steps: average over its last ~100
    # automl's BN momentum 0.99 keeps 0.05% of the moving statistics' start (variance 1) after
    # 750 steps, half again the BiFPN's and heads' feature variances (near 1e-3); after 300
    # steps it kept 5%, 50 times them (AP 1% on the training scenes themselves, 14% at 0.9).
    # At 0.9 the statistics are the data's within 50 steps.
    config.model.bn_momentum = 0.9
    config.train.seed = 0
    config.optimizer.name = "adamw"
    config.optimizer.lr_per_256 = 1e-3 * 256 / 16
    config.optimizer.epsilon = 1e-7
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.schedule = "cosine"
    config.eval.batch_size = 16
    return config


def location_prior_ap(source):
    """COCO AP of a predictor that knows where objects tend to be, how large and how often each
    class occurs, but not what an image shows: in every eval image, square boxes of 3 sizes on
    a 4 x 4 grid for every class, scored by the class's share of the training boxes times the
    share of the size nearest to theirs."""
    import numpy as np

    from efficientnet_tf.data.sources import EVAL, TRAIN
    from efficientnet_tf.tasks.detection import metric as metric_lib

    sides = np.array([0.125, 0.25, 0.5])
    train = source.ground_truth(TRAIN)
    sizes = {image["id"]: (image["width"], image["height"]) for image in train["images"]}
    counts = np.bincount([a["category_id"] for a in train["annotations"]],
                         minlength=source.num_classes)
    nearest = [np.argmin(np.abs(np.log(sides) - np.log(
        np.sqrt(a["bbox"][2] * a["bbox"][3] / np.prod(sizes[a["image_id"]])))))
               for a in train["annotations"]]
    size_share = np.bincount(nearest, minlength=len(sides)) / max(len(nearest), 1)
    class_share = counts / max(counts.sum(), 1)
    truth = source.ground_truth(EVAL)
    rows = []
    for image in truth["images"]:
        width, height = image["width"], image["height"]
        for side, share in zip(sides, size_share):
            for cy in (0.125, 0.375, 0.625, 0.875):
                for cx in (0.125, 0.375, 0.625, 0.875):
                    x0, x1 = max(cx - side / 2, 0.0), min(cx + side / 2, 1.0)
                    y0, y1 = max(cy - side / 2, 0.0), min(cy + side / 2, 1.0)
                    box = [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]
                    rows += [[image["id"], *box, class_share[c] * share, c]
                             for c in range(source.num_classes)]
    evaluator = metric_lib.CocoEvaluator(truth, source.class_names)
    evaluator.update(np.asarray(rows, dtype=np.float64))
    return evaluator.finish()["AP"]


def served_detection_ap(export_dir, source, batch_size=16):
    """COCO AP of an exported detector's serving_default on the eval split's image files: the
    files' bytes go in as a TF Serving client would send them, boxes come out in the images'
    pixels, after the export's own NMS."""
    import numpy as np
    import tensorflow as tf  # see run()

    from efficientnet_tf.data.sources import EVAL
    from efficientnet_tf.tasks.detection import metric as metric_lib
    from efficientnet_tf.tasks.detection import postprocess

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    entries = source.entries(EVAL)
    evaluator = metric_lib.CocoEvaluator(source.ground_truth(EVAL), source.class_names)
    for start in range(0, len(entries), batch_size):
        batch = entries[start:start + batch_size]
        data = [tf.io.gfile.GFile(entry.path, "rb").read() for entry in batch]
        found = serve(image_bytes=tf.constant(data))
        evaluator.update(postprocess.to_coco(
            np.array([entry.image_id for entry in batch]), found["boxes"].numpy(),
            found["scores"].numpy(), found["classes"].numpy(), found["num_detections"].numpy()))
    return evaluator.finish()["AP"]


def run_detection(workdir, strategy=None, drawings=4):
    """Writes digit scenes under WORKDIR/scenes, trains and evaluates in WORKDIR, exports a
    SavedModel to WORKDIR/export, measures its COCO AP on the eval scenes' files, draws its
    boxes on the first `drawings` of them (WORKDIR/drawn), exports TFLite
    (WORKDIR/detector.tflite) and compares its boxes with the SavedModel's on every eval scene;
    returns the results with the location prior's AP ("baseline_AP") and the TFLite parity
    (detection_tflite.detection_parity) by score threshold ("tflite_parity")."""
    import tensorflow as tf  # see run()

    from efficientnet_tf import export, predict, serving
    from efficientnet_tf.data.sources import EVAL
    from efficientnet_tf.tasks.detection import digit_scenes, sources
    from efficientnet_tf.tasks.detection import tflite as detection_tflite
    from efficientnet_tf.train import trainer

    workdir = workdir.rstrip("/")
    root = f"{workdir}/scenes"
    digit_scenes.write_digit_scenes(root, image_size=DETECTION_SIZE)
    config = detection_config(root)
    results = trainer.train_and_evaluate(config, workdir, strategy)
    source = sources.from_config(config.data)
    results["baseline_AP"] = location_prior_ap(source)
    results["export_dir"] = export.export_workdir(workdir, f"{workdir}/export")
    results["served_AP"] = served_detection_ap(results["export_dir"], source)
    files = [entry.path for entry in source.entries(EVAL)]
    _, predictions = predict.predict_files(results["export_dir"], files[:drawings],
                                           draw_dir=f"{workdir}/drawn")
    results["drawings"] = [p.result["drawing"] for p in predictions if not p.error]
    # The TFLite export (TFLite's own detection op) against the SavedModel, scene by scene:
    # at predict's score threshold, and at a low one that holds many more boxes.
    results["tflite_path"] = export.export_workdir(workdir, f"{workdir}/detector.tflite",
                                                   "tflite")
    flatbuffer = tf.io.gfile.GFile(results["tflite_path"], "rb").read()
    results["tflite_parity"] = detection_tflite.detection_parity(
        results["export_dir"], flatbuffer, files, DETECTION_SIZE, PARITY_SCORES,
        pad_colour=tuple(serving.read_metadata(results["export_dir"])["pad_colour"]))
    return results


def describe_digits(results, workdir):
    """The digits demo's summary line."""
    return (f"digits: held-out top-1 {100 * results['eval_top1']:.2f}% on "
            f"{results['eval_examples']} images (chance 10%) after {results['steps']} steps in "
            f"{results['train_seconds']:.0f} s; the exported SavedModel gets "
            f"{100 * results['served_top1']:.2f}% from the image files; export: "
            f"{results['export_dir']}")


def describe_detection(results, workdir):
    """The detection demo's summary: its AP against the location prior's, the export's, and
    how TFLite's boxes agree with the SavedModel's."""
    lines = [f"digit scenes: COCO AP {100 * results['eval_AP']:.1f} (AP50 "
             f"{100 * results['eval_AP50']:.1f}) on {results['eval_examples']} scenes of "
             f"unseen writers after {results['steps']} steps in "
             f"{results['train_seconds']:.0f} s; a predictor that knows only where digits "
             f"tend to be: AP {100 * results['baseline_AP']:.1f}; the exported SavedModel "
             f"gets AP {100 * results['served_AP']:.1f} from the image files (hard NMS); "
             f"export: {results['export_dir']}; boxes drawn: {workdir}/drawn"]
    for min_score, parity in results["tflite_parity"].items():
        lines.append(f"TFLite ({results['tflite_path']}) vs SavedModel, detections scoring >= "
                     f"{min_score:g} on {parity['images']} scenes: {parity['matched']} of "
                     f"{parity['detections']} found again (same class, IoU >= 0.9), "
                     f"{parity['tflite_matched']} of TFLite's {parity['tflite_detections']}; "
                     f"largest score difference {parity['max_score_diff']:.4f}")
    return "\n".join(lines)


def describe_scaling(result, workdir):
    """The scaling demo's summary: the search's report (scaling/report.py describe)."""
    from efficientnet_tf.scaling import report

    return report.describe(result, workdir)


# `efficientnet-tf demo [NAME]`: NAME -> (run(workdir, strategy), describe(results, workdir)).
DEMOS = {"digits": (run_digits, describe_digits), "detection": (run_detection, describe_detection),
         "scaling": (run_scaling, describe_scaling)}
