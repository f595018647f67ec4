"""Builds an EfficientDet detector from its registry row (EfficientDet paper §3-4, Figure 3).

EfficientNet backbone (features C3-C5: the last block at strides 8, 16, 32; the 1x1 head conv
is not used) -> BiFPN (models/bifpn.py) over levels min..max -> a class net and a box net, each
`head_repeats` x (3x3 separable conv shared by every level -> batch norm of its own per level
-> swish) and a separable 3x3 predictor: num_classes x anchors logits (bias -log((1 - 0.01) /
0.01), so every anchor starts at a 1% foreground probability, RetinaNet §4.1) and 4 x anchors
box codes (boxes.encode's order: ty, tx, th, tw). As google/automl efficientdet
(tf2/efficientdet_keras.py): separable convolutions with bias, variance-scaling initializers
in the heads, BN momentum 0.99 and epsilon 1e-3 everywhere, no drop-connect in the heads unless
asked (head_survival_prob: automl's survival_prob, None by default).

Outputs: {"classes_L": [batch, H_L, W_L, anchors * num_classes], "boxes_L": [batch, H_L, W_L,
anchors * 4]} per level L, channel a * num_classes + c for anchor a and class c (0-based, no
background class), in float32.
"""

import math

import keras

from efficientnet_tf.models import bifpn as bifpn_lib
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry

PRIOR_PROBABILITY = 0.01


def _batch_norm_function(settings):
    """(inputs, name) -> batch-normalized inputs, as the resolved `settings`
    (efficientnet.BatchNormSettings.resolved: automl's momentum 0.99 and epsilon 1e-3 unless
    given; synchronized across replicas or groups of them)."""

    def batch_norm(x, name):
        return layers_lib.BatchNorm(momentum=settings.momentum, epsilon=settings.epsilon,
                                    synchronized=settings.synchronized,
                                    group_size=settings.group_size, name=name)(x)

    return batch_norm


def _head(features, name, outputs_per_anchor, num_anchors, width, repeats, bias_initializer,
          activation, batch_norm, survival_prob=None, fold_batch_norm=False):
    """One head over every level: convolutions shared, batch norms per level; with
    `survival_prob`, each repeat after the first is a residual whose branch drop-connect drops
    (automl's option, off by default there and here). Folded (the serving form), each level
    has its own copy of the convolutions, `{name}_conv{i}_level{L}`, carrying its own BN."""
    def conv(i, level=None):
        suffix = "" if level is None else f"_level{level}"
        return keras.layers.SeparableConv2D(
            width, 3, padding="same", use_bias=True, depthwise_initializer="variance_scaling",
            pointwise_initializer="variance_scaling", name=f"{name}_conv{i}{suffix}")

    shared = [conv(i) for i in range(repeats)]
    convs_of = ({level: [conv(i, level) for i in range(repeats)] for level in features}
                if fold_batch_norm else {level: shared for level in features})
    predict = keras.layers.SeparableConv2D(
        outputs_per_anchor * num_anchors, 3, padding="same", use_bias=True,
        depthwise_initializer="variance_scaling", pointwise_initializer="variance_scaling",
        bias_initializer=bias_initializer, dtype="float32", name=f"{name}_predict")
    results = {}
    for level, x in features.items():
        for i, layer in enumerate(convs_of[level]):
            branch = batch_norm(layer(x), f"{name}_bn{i}_level{level}")
            branch = keras.layers.Activation(layers_lib.get_activation(activation),
                                             name=f"{name}_activation{i}_level{level}")(branch)
            if i > 0 and survival_prob:
                branch = layers_lib.StochasticDepth(
                    survival_prob, name=f"{name}_drop{i}_level{level}")(branch)
                branch = keras.layers.Add(name=f"{name}_residual{i}_level{level}")([branch, x])
            x = branch
        results[level] = predict(x)
    return results


def create(spec, num_classes=90, input_shape=None, activation="swish", name=None,
           head_survival_prob=None, input_scaling=None):
    """create_model's detector (efficientnet_tf.create_model loads its weights): `input_shape`
    (height, width, 3), default the row's square size; `input_scaling` of the images (default
    the backbone row's)."""
    spec = registry.get(spec)
    if input_shape is not None and (len(input_shape) != 3 or input_shape[-1] != 3):
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}")
    return build(spec, num_classes, input_shape[:2] if input_shape else None, activation, name,
                 head_survival_prob=head_survival_prob, input_scaling=input_scaling)


def build(spec, num_classes, image_size=None, activation="swish", name=None,
          head_survival_prob=None, batch_norm=None, input_dtype="float32",
          fold_batch_norm=False, input_scaling=None):
    """The keras.Model of a detection row (registry.DetectionSpec or its name) for
    `num_classes` classes at `image_size` ((height, width); default the row's square size).
    `batch_norm`: efficientnet.BatchNormSettings of every BN (default automl's, per replica);
    `input_dtype`: of the images ('bfloat16' on TPU); `input_scaling`: how the backbone maps
    them (registry.INPUT_SCALINGS; default its row's). `fold_batch_norm`: the serving form,
    without BN layers (models/fold.py folded_detector fills its weights)."""
    spec = registry.get(spec)
    if not isinstance(spec, registry.DetectionSpec):
        raise ValueError(f"{spec.name!r} is not an EfficientDet row; use one of "
                         f"{', '.join(registry.detection_names())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
    height, width = image_size or (spec.image_size, spec.image_size)
    batch_norm = (batch_norm or efficientnet.BatchNormSettings()).resolved(spec)
    backbone = efficientnet.build(registry.get(spec.backbone), efficientnet.ModelOptions(
        features_only=True, input_shape=(height, width, 3),
        survival_prob=spec.backbone_survival_prob, activation=activation,
        batch_norm=batch_norm, input_dtype=input_dtype, fold_batch_norm=fold_batch_norm,
        input_scaling=input_scaling))
    normalize = (lambda x, name: x) if fold_batch_norm else _batch_norm_function(batch_norm)
    strides = {3: "stride_8", 4: "stride_16", 5: "stride_32"}
    features = {level: backbone.output[strides[level]] for level in range(spec.min_level, 6)}
    pyramid = bifpn_lib.bifpn(features, spec.min_level, spec.max_level, spec.fpn_width,
                              spec.fpn_repeats, spec.fusion, normalize, activation)
    num_anchors = spec.anchors_per_location
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    classes = _head(pyramid, "class_net", num_classes, num_anchors, spec.fpn_width,
                    spec.head_repeats, keras.initializers.Constant(prior), activation,
                    normalize, head_survival_prob, fold_batch_norm)
    boxes = _head(pyramid, "box_net", 4, num_anchors, spec.fpn_width, spec.head_repeats,
                  "zeros", activation, normalize, head_survival_prob, fold_batch_norm)
    outputs = {**{f"classes_{level}": x for level, x in classes.items()},
               **{f"boxes_{level}": x for level, x in boxes.items()}}
    # The backbone's layers become the detector's own (stem_conv, block1a, ...): its weights
    # load by name from a classification run or a keras.applications file.
    return keras.Model(backbone.input, outputs,
                       name=name or spec.name.replace("-", "_").replace(":", "_"))


def trainable_parameters(model):
    """Trainable parameters: what google/automl's tables count (no BN moving statistics)."""
    return sum(math.prod(variable.shape) for variable in model.trainable_variables)


def num_classes_of(model, min_level, anchors_per_location):
    """The number of classes of a detector `model` (its class outputs hold anchors x classes
    channels at each level; `min_level` and `anchors_per_location` are its row's)."""
    return int(model.output[f"classes_{min_level}"].shape[-1]) // anchors_per_location
