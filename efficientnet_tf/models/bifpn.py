"""BiFPN: the bidirectional weighted feature pyramid of EfficientDet (Tan et al. 2020, §3).

A cell takes features P3..P7 (all `width` channels but the backbone's, in the first cell) and
adds nodes, each fusing two or three earlier features resampled to its level; the last node of
each level is the cell's output there. The node list is google/automl efficientdet's
(fpn_configs.py, bifpn): for levels 3-7, as (level, indices of the inputs among P3..P7 and the
nodes made so far),

    P6'[3,4]  P5'[2,5]  P4'[1,6]  P3''[0,7]  P4''[1,7,8]  P5''[2,6,9]  P6''[3,5,10]  P7''[4,11]

a top-down path followed by a bottom-up one, with the same-level input skipping to the output
node. For other level ranges the list comes from the same rule (bifpn_nodes).

Resampling an input to a node's level: a 1x1 convolution + BN where its width differs from the
pyramid's (only backbone features, so only in the first cell), then a 3x3 stride-2 SAME max pool
per level down, or nearest-neighbour resizing to the target's actual shape up (TF1's rule, as
automl; odd and non-square inputs build). Fusion (§3.3, "fast normalized fusion"):
O = sum_i relu(w_i) I_i / (sum_j relu(w_j) + 1e-4), one scalar weight per input initialised to
1; softmax fusion and a plain sum are the alternatives. After fusion: swish -> 3x3 separable
convolution with bias -> BN (no activation after it).
"""

import math
from typing import Dict, List, Sequence, Tuple

import keras
from keras import ops

from efficientnet_tf.models import layers as layers_lib

FUSIONS = ("fast", "softmax", "sum")
FAST_FUSION_EPSILON = 1e-4


def bifpn_nodes(min_level, max_level) -> List[Tuple[int, Tuple[int, ...]]]:
    """[(level, input indices)] of one cell: indices count the cell's inputs (levels min..max,
    0-based) and then its nodes in order. automl's list for levels 3-7, and the same rule for
    other ranges (D7x: levels 3-8)."""
    levels = list(range(min_level, max_level + 1))
    latest = {level: index for index, level in enumerate(levels)}  # newest feature per level
    nodes, count = [], len(levels)
    for level in reversed(levels[:-1]):  # top-down: each level from the one above
        nodes.append((level, (latest[level], latest[level + 1])))
        latest[level] = count
        count += 1
    for level in levels[1:]:  # bottom-up: the input, the top-down node (if any), the one below
        inputs = [levels.index(level)]
        if level != max_level:
            inputs.append(latest[level])
        inputs.append(latest[level - 1])
        nodes.append((level, tuple(inputs)))
        latest[level] = count
        count += 1
    return nodes


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class WeightedFusion(keras.layers.Layer):
    """Fuses same-shaped features: "fast" normalized, "softmax" normalized, or "sum"."""

    def __init__(self, method="fast", **kwargs):
        super().__init__(**kwargs)
        if method not in FUSIONS:
            raise ValueError(f"fusion {method!r}; use one of {', '.join(FUSIONS)}")
        self.method = method

    def build(self, input_shapes):
        self.fusion_weights = (None if self.method == "sum" else self.add_weight(
            name="fusion_weights", shape=(len(input_shapes),), initializer="ones"))

    def call(self, inputs):
        if self.method == "sum":
            return ops.sum(ops.stack(inputs, axis=0), axis=0)
        weights = ops.cast(self.fusion_weights, inputs[0].dtype)
        if self.method == "fast":
            weights = ops.relu(weights)
            weights = weights / (ops.sum(weights) + FAST_FUSION_EPSILON)
        else:
            weights = ops.softmax(weights)
        return ops.sum(ops.stack([x * weights[i] for i, x in enumerate(inputs)], axis=0), axis=0)

    def get_config(self):
        return {**super().get_config(), "method": self.method}


def _level_shape(tensor):
    return tuple(tensor.shape[1:3])


def resample(x, target_shape, width, name, batch_norm):
    """`x` at the spatial `target_shape` with `width` channels (see the module docstring)."""
    if x.shape[-1] != width:
        x = keras.layers.Conv2D(width, 1, padding="same", name=f"{name}_conv")(x)
        x = batch_norm(x, f"{name}_bn")
    height, target_height = x.shape[1], target_shape[0]
    if height > target_height:
        steps = max(1, round(math.log2(height / target_height)))
        for step in range(steps):
            x = keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{name}_pool{step}")(x)
    elif height < target_height:
        x = NearestUpsample(target_shape, name=f"{name}_upsample")(x)
    return x


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class NearestUpsample(keras.layers.Layer):
    """Nearest-neighbour resizing to `target_shape` as TF1's resize_nearest_neighbor (automl's
    upsampling): output pixel i takes input pixel floor(i * in / out), no half-pixel offset.
    For exact 2x it repeats each pixel twice; for odd sizes (63 from 32) it is what the
    published weights were trained with, where half-pixel nearest would shift some rows."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(size) for size in target_shape)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        rows = [i * height // self.target_shape[0] for i in range(self.target_shape[0])]
        columns = [j * width // self.target_shape[1] for j in range(self.target_shape[1])]
        return ops.take(ops.take(inputs, rows, axis=1), columns, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target_shape, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


def node_name(cell_name, node_index):
    """The name stem of a BiFPN node's layers (`fpn_cell0_node3_conv`, ..._fusion, ..._bn)."""
    return f"{cell_name}_node{node_index}"


def resample_name(node, position, feature):
    """The name stem of the layers resampling input `position` of `node` (feature `feature`
    among the cell's inputs and nodes) to the node's level: `..._conv`, `..._bn`, ..."""
    return f"{node}_input{position}_from{feature}"


def bifpn_cell(features: Sequence, width, fusion, name, batch_norm, activation="swish"):
    """One BiFPN cell on `features` (P_min..P_max, finest first); returns its outputs, finest
    first."""
    levels = len(features)
    min_level = 0  # indices, not pyramid levels, from here on
    feats = list(features)
    shapes = [_level_shape(f) for f in features]
    last_of_level = {index: index for index in range(levels)}
    for node_index, (level, inputs) in enumerate(bifpn_nodes(min_level, levels - 1)):
        node = node_name(name, node_index)
        resampled = [resample(feats[i], shapes[level], width, resample_name(node, k, i),
                              batch_norm) for k, i in enumerate(inputs)]
        x = WeightedFusion(fusion, name=f"{node}_fusion")(resampled)
        x = keras.layers.Activation(layers_lib.get_activation(activation),
                                    name=f"{node}_activation")(x)
        x = keras.layers.SeparableConv2D(width, 3, padding="same", use_bias=True,
                                         name=f"{node}_conv")(x)
        x = batch_norm(x, f"{node}_bn")
        feats.append(x)
        last_of_level[level] = len(feats) - 1
    return [feats[last_of_level[index]] for index in range(levels)]


def bifpn(backbone_features: Dict[int, object], min_level, max_level, width, repeats, fusion,
          batch_norm, activation="swish"):
    """The pyramid: backbone features {level: tensor} for levels min..5 (C3-C5), the extra
    levels made from the coarsest (1x1 conv + BN to `width` then a 3x3/2 max pool, then max
    pools), and `repeats` BiFPN cells. Returns {level: tensor} for min..max_level."""
    coarsest = max(backbone_features)
    feats = [backbone_features[level] for level in range(min_level, coarsest + 1)]
    for level in range(coarsest + 1, max_level + 1):
        previous = feats[-1]
        shape = ((previous.shape[1] - 1) // 2 + 1, (previous.shape[2] - 1) // 2 + 1)
        feats.append(resample(previous, shape, width, f"p{level}", batch_norm))
    for cell in range(repeats):
        feats = bifpn_cell(feats, width, fusion, f"fpn_cell{cell}", batch_norm, activation)
    return {level: feats[level - min_level] for level in range(min_level, max_level + 1)}
