"""Batch norm folded into the preceding convolutions: the serving form of a trained model.

In inference BN is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta, so a
convolution followed by BN equals one convolution with kernel * scale and bias
beta - mean * scale, scale = gamma / sqrt(var + eps). The folded model has no BN layers at all:
fewer ops and memory passes at inference, nothing for a runtime to fold.
"""

import numpy as np

from efficientnet_tf.models import efficientnet
from efficientnet_tf.models.weights import weighted_layers


def partner_batch_norm(conv_name):
    """The BN layer that follows a convolution, by the builder's names (None for SE convs)."""
    if conv_name.endswith("_dwconv"):
        return conv_name[: -len("dwconv")] + "bn"
    if conv_name.endswith("_conv"):
        return conv_name[: -len("conv")] + "bn"
    return None


def folded_copy(model, spec, num_classes, **build_kwargs):
    """The serving form of `model` (built from `spec`): same function, BN folded into convs."""
    folded = efficientnet.build(spec, num_classes=num_classes, fold_batch_norm=True,
                                **build_kwargs)
    source = {layer.name: layer for layer in weighted_layers(model)}
    for layer in weighted_layers(folded):
        bn_name = partner_batch_norm(layer.name)
        if bn_name is None or bn_name not in source:
            layer.set_weights(source[layer.name].get_weights())
            continue
        batch_norm = source[bn_name]
        gamma, beta, mean, variance = [w.astype(np.float64) for w in batch_norm.get_weights()]
        scale = gamma / np.sqrt(variance + batch_norm.epsilon)
        kernel = source[layer.name].get_weights()[0].astype(np.float64)
        if layer.name.endswith("_dwconv"):  # (k, k, channels, 1): scale the channel axis
            kernel = kernel * scale[None, None, :, None]
        else:  # (k, k, in, out)
            kernel = kernel * scale
        layer.set_weights([kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)])
    return folded
