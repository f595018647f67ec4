"""`efficientnet-tf info`: parameters, GMACs and sizes of every variant and detector, from built
models; `info --weights`: the official checkpoints."""

import keras

from efficientnet_tf.models import efficientdet, efficientnet, stats
from efficientnet_tf.models.weights import catalog, download
from efficientnet_tf.specs import registry


def variant_line(spec):
    """One table line of `spec`: counted on a freshly built model (then freed)."""
    model = efficientnet.build(spec)
    params = model.count_params()
    gmacs = stats.count_macs(model, spec.eval_size) / 1e9
    del model
    keras.backend.clear_session()
    return (f"{spec.name:<20} {params:>13,} {gmacs:>8.2f} {spec.train_size:>6} {spec.eval_size:>5} "
            f"{spec.dropout_rate:>7.1f}")


HEADER = (f"{'model':<20} {'params':>13} {'GMACs':>8} {'train':>6} {'eval':>5} {'dropout':>7}\n"
          + "-" * 64)


def stage_lines(spec):
    """The per-stage table of `spec` at its eval size."""
    model = efficientnet.build(spec)
    rows = stats.stage_table(spec, model)
    lines = [f"{spec.name}: width {spec.width:g}, depth {spec.depth:g}, train {spec.train_size}, "
             f"eval {spec.eval_size}, dropout {spec.dropout_rate:g}, BN momentum "
             f"{spec.bn_momentum:g}, normalization {spec.normalization}",
             f"{'stage':<6} {'operator':<24} {'k':>2} {'s':>2} {'e':>2} {'SE':>5} {'in':>5} "
             f"{'out':>5} {'layers':>6} {'res':>4} {'params':>12} {'GMACs':>7}"]
    for row in rows:
        lines.append(f"{row.stage:<6} {row.operator:<24} {row.kernel:>2} {row.stride:>2} "
                     f"{row.expand:>2} {row.se_ratio:>5g} {row.filters_in:>5} {row.filters_out:>5} "
                     f"{row.repeats:>6} {row.resolution:>4} {row.params:>12,} "
                     f"{row.macs / 1e9:>7.3f}")
    total_macs = sum(row.macs for row in rows)
    lines.append(f"total: {model.count_params():,} parameters, {total_macs / 1e9:.2f} GMACs "
                 f"at {spec.eval_size}x{spec.eval_size}")
    for label, targets in (("official (automl)", spec.official_targets),
                           ("paper (Table 6)", spec.paper_targets)):
        if targets is not None:
            lines.append(f"progressive targets, {label}, (min, max): image size "
                         f"{targets.image_size}, RandAugment {targets.randaug_magnitude}, mixup "
                         f"{targets.mixup_alpha}, cutmix {targets.cutmix_alpha}, dropout "
                         f"{targets.dropout_rate}")
    return lines


DETECTION_HEADER = (f"{'detector':<20} {'params':>13} {'GMACs':>8} {'input':>6} {'backbone':>16} "
                    f"{'BiFPN WxD':>10} {'head':>5} {'levels':>7}\n" + "-" * 92)


def detector_line(spec, num_classes=90):
    """One table line of a detection row: trainable parameters at 90 classes (what automl's
    tables count) and GMACs at its input size, counted on a freshly built model."""
    model = efficientdet.build(spec, num_classes)
    params = efficientdet.trainable_parameters(model)
    gmacs = stats.count_macs(model, spec.image_size) / 1e9
    del model
    keras.backend.clear_session()
    return (f"{spec.name:<20} {params:>13,} {gmacs:>8.2f} {spec.image_size:>6} "
            f"{spec.backbone:>16} {f'{spec.fpn_width}x{spec.fpn_repeats}':>10} "
            f"{spec.head_repeats:>5} {f'{spec.min_level}-{spec.max_level}':>7}")


def show_models(model_name=None, print_fn=print):
    if model_name:
        spec = registry.get(model_name)
        if isinstance(spec, registry.DetectionSpec):
            print_fn(DETECTION_HEADER)
            print_fn(detector_line(spec))
            return
        for line in stage_lines(spec):
            print_fn(line)
        return
    print_fn(HEADER)
    for name in registry.names():
        print_fn(variant_line(registry.get(name)))
    print_fn("")
    print_fn(DETECTION_HEADER)
    for name in registry.detection_names():
        print_fn(detector_line(registry.get(name)))


def show_weights(model_name=None, print_fn=print):
    """`info --weights [--model=NAME]`: the official checkpoints (of one variant) and the
    cache (models/weights/catalog.py)."""
    for line in catalog.table_lines(model_name and registry.get(model_name).name):
        print_fn(line)
    print_fn(f"Downloaded on first use into {download.cache_dir()} ($EFFICIENTNET_TF_CACHE); "
             "load one with create_model(NAME, weights='VARIANT/TAG') or "
             "--config.init_from=VARIANT/TAG.")
