"""Batch norm folded into the preceding convolutions: the serving form of a trained model.

In inference BN is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta, so a
convolution followed by BN equals one convolution with kernel * scale and bias
beta - mean * scale, scale = gamma / sqrt(var + eps). The folded model has no BN layers at all:
fewer ops and memory passes at inference, nothing for a runtime to fold.
"""

import re

import keras
import numpy as np

from efficientnet_tf.models import efficientdet, efficientnet
from efficientnet_tf.models.weights import weighted_layers


def partner_batch_norm(conv_name):
    """The BN layer that follows a convolution, by the builder's names (None for SE convs)."""
    if conv_name.endswith("_dwconv"):
        return conv_name[: -len("dwconv")] + "bn"
    if conv_name.endswith("_conv"):
        return conv_name[: -len("conv")] + "bn"
    return None


def _scale_and_shift(batch_norm):
    gamma, beta, mean, variance = [w.astype(np.float64) for w in batch_norm.get_weights()]
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    return scale, beta - mean * scale


def _folded_weights(target, weights, batch_norm):
    """The weights of `target` (a convolution of the folded model, with a bias) that compute
    its source convolution (`weights`, with or without a bias) followed by `batch_norm`."""
    scale, shift = _scale_and_shift(batch_norm)
    weights = [w.astype(np.float64) for w in weights]
    if isinstance(target, keras.layers.SeparableConv2D):  # depthwise, pointwise (1, 1, in, out)
        depthwise, pointwise = weights[0], weights[1] * scale
        bias = weights[2] if len(weights) > 2 else 0.0
        folded = [depthwise, pointwise, bias * scale + shift]
    elif isinstance(target, keras.layers.DepthwiseConv2D):  # (k, k, channels, 1)
        bias = weights[1] if len(weights) > 1 else 0.0
        folded = [weights[0] * scale[None, None, :, None], bias * scale + shift]
    else:  # Conv2D (k, k, in, out)
        bias = weights[1] if len(weights) > 1 else 0.0
        folded = [weights[0] * scale, bias * scale + shift]
    return [np.asarray(w, np.float32) for w in folded]


def _fill(folded, model, source_conv):
    """Sets every weighted layer of `folded` from `model`: a convolution whose BN partner
    exists carries it (source_conv(name) -> (source convolution name, BN name)); any other
    layer is copied."""
    source = {layer.name: layer for layer in weighted_layers(model)}
    for layer in weighted_layers(folded):
        conv_name, bn_name = source_conv(layer.name)
        if bn_name is None or bn_name not in source:
            layer.set_weights(source[layer.name].get_weights())
            continue
        layer.set_weights(_folded_weights(layer, source[conv_name].get_weights(),
                                          source[bn_name]))
    return folded


def folded_copy(model, spec, num_classes, **build_kwargs):
    """The serving form of `model` (built from `spec`): same function (its input scaling
    included), BN folded into convs."""
    folded = efficientnet.build(spec, num_classes=num_classes, fold_batch_norm=True,
                                input_scaling=efficientnet.input_scaling_of(model),
                                **build_kwargs)
    return _fill(folded, model, lambda name: (name, partner_batch_norm(name)))


_HEAD_CONV = re.compile(r"^((?:class|box)_net)_conv(\d+)_level(\d+)$")


def _detector_partner(name):
    """(source convolution, BN) of a folded detector's convolution: a head's per-level copy
    `class_net_conv{i}_level{L}` comes from the shared `class_net_conv{i}` with the level's
    `class_net_bn{i}_level{L}`; the backbone's and the BiFPN's by partner_batch_norm."""
    match = _HEAD_CONV.match(name)
    if match:
        head, repeat, level = match.groups()
        return f"{head}_conv{repeat}", f"{head}_bn{repeat}_level{level}"
    return name, partner_batch_norm(name)


def folded_detector(model, spec, num_classes, image_size, **build_kwargs):
    """The serving form of an EfficientDet `model` (efficientdet.build of `spec` at
    `image_size` (height, width)): no BN layers, each folded into the convolution before it;
    the heads' convolutions, shared across levels in training, become one copy per level so
    that each level's BN can be folded into its own."""
    folded = efficientdet.build(spec, num_classes, image_size, fold_batch_norm=True,
                                input_scaling=efficientnet.input_scaling_of(model),
                                **build_kwargs)
    return _fill(folded, model, _detector_partner)
