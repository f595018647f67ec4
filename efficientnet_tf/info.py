"""`efficientnet-tf info`: parameters, GMACs and sizes of every variant, from built models."""

import keras

from efficientnet_tf.models import efficientnet, stats
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


def run(model_name=None, print_fn=print):
    if model_name:
        for line in stage_lines(registry.get(model_name)):
            print_fn(line)
        return
    print_fn(HEADER)
    for name in registry.names():
        print_fn(variant_line(registry.get(name)))
