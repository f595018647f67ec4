"""Parameter and multiply-accumulate counts read off a built model (V1 paper Table 2, V2 Table 7).

MACs are counted from the traced inference graph by TensorFlow's profiler (float operations / 2),
never typed in, so they follow whatever the builder really builds.
"""

import collections
import dataclasses
import re

import tensorflow as tf

from efficientnet_tf.models import efficientnet

_BLOCK_SCOPE = re.compile(r"/block(\d+)([a-z]+)(?:_\d+)?/")


def _float_ops_by_op(model, image_size):
    """{op name: float ops} of the inference graph of one image of `image_size`."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    function = tf.function(lambda images: model(images, training=False))
    graph = function.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    verbosity = tf.compat.v1.logging.get_verbosity()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)  # profiler deprecation noise
    try:
        profile = tf.compat.v1.profiler.profile(graph=graph, cmd="scope", options=options)
    finally:
        tf.compat.v1.logging.set_verbosity(verbosity)
    return {node.name: node.total_float_ops for node in profile.children}, profile.total_float_ops


def count_macs(model, image_size):
    """Multiply-accumulates of one inference at `image_size` (int or (height, width))."""
    return _float_ops_by_op(model, image_size)[1] // 2


@dataclasses.dataclass(frozen=True)
class StageRow:
    """One line of the per-stage table of a variant."""

    stage: str
    operator: str
    kernel: int
    stride: int
    expand: int
    se_ratio: float
    filters_in: int
    filters_out: int
    repeats: int
    resolution: int
    params: int
    macs: int


def stage_table(spec, model, image_size=None):
    """Per-stage rows (stem, each stage, head) with params and MACs measured on `model`."""
    image_size = image_size or spec.eval_size
    float_ops, _ = _float_ops_by_op(model, image_size)
    ops_by_stage = collections.Counter()
    for op_name, flops in float_ops.items():
        match = _BLOCK_SCOPE.search(op_name)
        if match:
            ops_by_stage[int(match.group(1))] += flops
        else:
            ops_by_stage["stem" if re.search(r"/(stem_|normalize)", op_name) else "head"] += flops
    names = efficientnet.block_names(spec)
    params_by_stage = [sum(model.get_layer(name).count_params() for name in stage)
                       for stage in names]
    stem_params = (model.get_layer("stem_conv").count_params()
                   + model.get_layer("stem_bn").count_params())
    rows, resolution = [], -(-image_size // 2)
    rows.append(StageRow("stem", "Conv3x3", 3, 2, 1, 0.0, 3, spec.scaled_stem_filters, 1,
                         resolution, stem_params, ops_by_stage["stem"] // 2))
    for index, block in enumerate(spec.blocks):
        resolution = -(-resolution // block.stride)
        rows.append(StageRow(
            str(index + 1), "Fused-MBConv" if block.fused else "MBConv", block.kernel_size,
            block.stride, block.expand_ratio, block.se_ratio, block.input_filters,
            block.output_filters, block.repeats, resolution, params_by_stage[index],
            ops_by_stage[index + 1] // 2))
    head_params = model.count_params() - stem_params - sum(params_by_stage)
    rows.append(StageRow("head", "Conv1x1 & Pooling & FC", 1, 1, 1, 0.0,
                         spec.blocks[-1].output_filters, spec.scaled_head_filters, 1, resolution,
                         head_params, ops_by_stage["head"] // 2))
    return rows
