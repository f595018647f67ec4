"""The official checkpoints' variable names, derived from our models' structure.

The official EfficientNet (tensorflow/tpu), EfficientNetV2 and EfficientDet (google/automl)
releases name each variable by a scope path that the official code's layer counters make:

  classifier   <model>/stem/{conv2d, tpu_batch_normalization}
               <model>/blocks_<n>/...  n counts every block of every stage from 0
               <model>/head/{conv2d, tpu_batch_normalization, dense}
  in a block   convolutions conv2d, conv2d_1, ... and batch norms tpu_batch_normalization,
               tpu_batch_normalization_1, ... in creation order (MBConv: expand, project;
               without expansion only project), the depthwise conv depthwise_conv2d, and the
               squeeze-excite's two convolutions se/conv2d (reduce), se/conv2d_1 (expand)
  detector     <backbone>/... (no head), resample_p6/{conv2d, bn},
               fpn_cells/cell_<c>/fnode<n>/{WSM, WSM_1, ..} (one scalar per fusion input),
                 resample_<k>_<i>_<id>/{conv2d, bn} (input k, from feature i), and
                 op_after_combine<id>/{conv, bn} with id = number of levels + n,
               class_net/class-<i> (shared separable conv), class_net/class-<i>-bn-<level>,
               class_net/class-predict, and the same under box_net/box-...

Our layers create their sublayers in the official order, so the names are derived from our
model's structure (targets_of: each block's layers counted by kind, the BiFPN's nodes from
bifpn_nodes), not typed out: every checkpoint of every variant, scaled or not, maps by the
same rules (tests/models/weights/test_official.py checks all 27 official name lists).
"""

import dataclasses
from typing import Tuple

import keras

from efficientnet_tf.models import bifpn as bifpn_lib
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry

BATCH_NORM = "tpu_batch_normalization"


@dataclasses.dataclass
class Target:
    """One of our variables and the official name(s) that fill it: one name, or several scalars
    stacked in order (a fusion node's weights)."""

    variable: object
    names: Tuple[str, ...]
    layer: str  # our layer's name, for messages
    head: bool = False  # the class predictor: left fresh when the checkpoint's size differs

    @property
    def stacked(self):
        return len(self.names) > 1 or not self.variable.shape


def _variables_of(layer):
    """[(official leaf name, variable)] of a leaf layer, in the official order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [("gamma", layer.gamma), ("beta", layer.beta), ("moving_mean", layer.moving_mean),
                ("moving_variance", layer.moving_variance)]
    if isinstance(layer, keras.layers.SeparableConv2D):
        pairs = [("depthwise_kernel", layer.depthwise_kernel),
                 ("pointwise_kernel", layer.pointwise_kernel)]
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        pairs = [("depthwise_kernel", layer.kernel)]
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        pairs = [("kernel", layer.kernel)]
    else:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no official "
                         "counterpart; load official weights into an unfolded model")
    return pairs + ([("bias", layer.bias)] if layer.use_bias else [])


def _kind(layer):
    """The official layer counter a leaf layer advances."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise_conv2d"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv2d"
    if isinstance(layer, keras.layers.BatchNormalization):
        return BATCH_NORM
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no official name")


def _children(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _scope_targets(layers, scope, head_layer=None, batch_norm=BATCH_NORM):
    """Targets of `layers` (in creation order) under the official `scope`: each kind counted
    (conv2d, conv2d_1, ...); a squeeze-excite is the sub-scope `se` with counters of its own.
    `batch_norm`: what the scope calls its batch norms (the BiFPN: `bn`)."""
    targets, counts = [], {}
    for layer in layers:
        if isinstance(layer, layers_lib.SqueezeExcite):
            targets += _scope_targets(_children(layer), f"{scope}/se")
            continue
        if not layer.weights:
            continue
        kind = _kind(layer)
        kind = batch_norm if kind == BATCH_NORM else kind
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        name = f"{scope}/{kind}" + (f"_{index}" if index else "")
        targets += [Target(variable, (f"{name}/{leaf}",), layer.name,
                           head=layer.name == head_layer)
                    for leaf, variable in _variables_of(layer)]
    return targets


def optional_layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def backbone_targets(model, spec, scope):
    """Targets of a classifier's stem and blocks (a detector's backbone) under `scope`."""
    blocks = [name for stage in efficientnet.block_names(spec) for name in stage]
    targets = _scope_targets([model.get_layer("stem_conv"), model.get_layer("stem_bn")],
                             f"{scope}/stem")
    for index, name in enumerate(blocks):
        targets += _scope_targets(_children(model.get_layer(name)), f"{scope}/blocks_{index}")
    return targets


def classifier_targets(model, spec, scope):
    """Targets of every variable of a classifier (efficientnet.build of `spec`)."""
    head = [layer for layer in (optional_layer(model, name) for name in
                                ("top_conv", "top_bn", "predictions")) if layer is not None]
    return (backbone_targets(model, spec, scope)
            + _scope_targets(head, f"{scope}/head", head_layer="predictions"))


def detector_targets(model, spec, scope):
    """Targets of every variable of an EfficientDet (efficientdet.build of `spec`)."""
    targets = backbone_targets(model, registry.get(spec.backbone), scope)
    for level in range(6, spec.max_level + 1):  # P6 from C5 by a 1x1 conv + BN; the rest pool
        layers = [optional_layer(model, f"p{level}_{part}") for part in ("conv", "bn")]
        targets += _scope_targets([x for x in layers if x], f"resample_p{level}",
                                  batch_norm="bn")
    levels = spec.max_level - spec.min_level + 1
    nodes = bifpn_lib.bifpn_nodes(spec.min_level, spec.max_level)
    for cell in range(spec.fpn_repeats):
        for index, (_, inputs) in enumerate(nodes):
            ours = bifpn_lib.node_name(f"fpn_cell{cell}", index)
            theirs = f"fpn_cells/cell_{cell}/fnode{index}"
            node_id = levels + index
            for position, feature in enumerate(inputs):
                resample = bifpn_lib.resample_name(ours, position, feature)
                layers = [optional_layer(model, f"{resample}_{part}") for part in ("conv", "bn")]
                targets += _scope_targets(
                    [x for x in layers if x], f"{theirs}/resample_{position}_{feature}_{node_id}",
                    batch_norm="bn")
            fusion = model.get_layer(f"{ours}_fusion")
            if fusion.weights:  # fast / softmax fusion: one scalar WSM per input
                targets.append(Target(fusion.fusion_weights, tuple(
                    f"{theirs}/WSM" + (f"_{k}" if k else "") for k in range(len(inputs))),
                    fusion.name))
            for part, official in (("conv", "conv"), ("bn", "bn")):
                layer = model.get_layer(f"{ours}_{part}")
                targets += [Target(variable, (f"{theirs}/op_after_combine{node_id}/{official}/"
                                              f"{leaf}",), layer.name)
                            for leaf, variable in _variables_of(layer)]
    for head, short in (("class_net", "class"), ("box_net", "box")):
        targets += _head_targets(model, spec, head, short)
    return targets


def _head_targets(model, spec, head, short):
    targets = []
    for repeat in range(spec.head_repeats):
        layer = model.get_layer(f"{head}_conv{repeat}")
        targets += [Target(v, (f"{head}/{short}-{repeat}/{leaf}",), layer.name)
                    for leaf, v in _variables_of(layer)]
        for level in range(spec.min_level, spec.max_level + 1):
            layer = model.get_layer(f"{head}_bn{repeat}_level{level}")
            targets += [Target(v, (f"{head}/{short}-{repeat}-bn-{level}/{leaf}",), layer.name)
                        for leaf, v in _variables_of(layer)]
    layer = model.get_layer(f"{head}_predict")
    return targets + [Target(v, (f"{head}/{short}-predict/{leaf}",), layer.name,
                             head=head == "class_net") for leaf, v in _variables_of(layer)]


def targets_of(model, spec, scope=None):
    """Every target of `model` (built from `spec`) under the official `scope` (default: the
    variant's own name, a detector's backbone's)."""
    if isinstance(spec, registry.DetectionSpec):
        return detector_targets(model, spec, scope or spec.backbone)
    return classifier_targets(model, spec, scope or spec.name)
