"""Builds a keras.Model from a registry row (V1 paper §4 and Table 1, V2 paper §3.3 and Table 4).

Layout: in-model normalization of [0, 255] images -> 3x3 stride-2 stem -> the scaled stages of
MBConv / Fused-MBConv blocks -> 1x1 head conv -> global average pool -> dropout -> classifier.
"""

import keras

from efficientnet_tf.models import blocks as blocks_lib
from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry

# ImageNet statistics of images in [0, 1] (docs/reference.md §2).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STDDEV = (0.229, 0.224, 0.225)

ENDPOINT_STRIDES = (2, 4, 8, 16, 32)


def block_names(spec):
    """keras.applications-style names of every scaled block: block1a, block1b, block2a, ..."""
    return [[f"block{stage + 1}{_letters(repeat)}" for repeat in range(block.repeats)]
            for stage, block in enumerate(spec.blocks)]


def _letters(index):
    # a..z, then aa, ab, ... for the deep stages of l2 and xl.
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("a") + remainder) + letters
    return letters


def endpoint_layers(spec):
    """{stride: name of the last block whose output has that stride}, for strides 2..32."""
    endpoints, stride = {}, 2  # the stem has stride 2
    for block, names in zip(spec.blocks, block_names(spec)):
        stride *= block.stride
        endpoints[stride] = names[-1]
    return {s: endpoints[s] for s in ENDPOINT_STRIDES}


def normalization_layer(spec):
    """The input normalization of the family, for images in [0, 255] (docs/reference.md §2-3)."""
    if spec.normalization == registry.SYMMETRIC:
        return keras.layers.Rescaling(1.0 / 128.0, offset=-1.0, name="normalize")
    return keras.layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STDDEV], name="normalize")


def build(spec, num_classes=1000, include_top=True, input_shape=None, dropout_rate=None,
          survival_prob=None, pooling=None, features_only=False, classifier_activation=None,
          synchronized_bn=False, activation="swish", name=None, fold_batch_norm=False,
          input_dtype="float32", bn_group_size=0, bn_momentum=None):
    """The keras.Model of `spec` (a registry row). See efficientnet_tf.create_model."""
    dropout_rate = spec.dropout_rate if dropout_rate is None else dropout_rate
    survival_prob = spec.survival_prob if survival_prob is None else survival_prob
    input_shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) with RGB channels last, "
                         f"got {input_shape!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    synchronized_bn = bool(synchronized_bn or bn_group_size)
    bn_momentum = spec.bn_momentum if bn_momentum is None else bn_momentum
    bn = dict(momentum=bn_momentum, epsilon=spec.bn_epsilon, synchronized=synchronized_bn,
              group_size=bn_group_size)

    def batch_norm(inputs, layer_name):
        # The serving form (fold_batch_norm) carries each BN in its convolution's kernel and bias.
        return inputs if fold_batch_norm else layers_lib.BatchNorm(**bn, name=layer_name)(inputs)

    images = keras.Input(shape=input_shape, name="images", dtype=input_dtype)
    x = normalization_layer(spec)(images)
    x = keras.layers.Conv2D(spec.scaled_stem_filters, 3, strides=2, padding="same",
                            use_bias=fold_batch_norm,
                            kernel_initializer=layers_lib.ConvKernelInitializer(),
                            name="stem_conv")(x)
    x = batch_norm(x, "stem_bn")
    x = keras.layers.Activation(layers_lib.get_activation(activation), name="stem_activation")(x)

    outputs_by_name = {}
    block_index, total_blocks = 0, spec.num_blocks
    for block, names in zip(spec.blocks, block_names(spec)):
        block_class = blocks_lib.FusedMBConv if block.fused else blocks_lib.MBConv
        for repeat, block_name in enumerate(names):
            x = block_class(
                input_filters=block.input_filters if repeat == 0 else block.output_filters,
                output_filters=block.output_filters, kernel_size=block.kernel_size,
                strides=block.stride if repeat == 0 else 1, expand_ratio=block.expand_ratio,
                se_ratio=block.se_ratio, id_skip=block.id_skip,
                survival_prob=1.0 - (1.0 - survival_prob) * block_index / total_blocks,
                activation=activation, bn_momentum=bn_momentum,
                bn_epsilon=spec.bn_epsilon, synchronized_bn=synchronized_bn,
                bn_group_size=bn_group_size, fold_batch_norm=fold_batch_norm,
                name=block_name)(x)
            outputs_by_name[block_name] = x
            block_index += 1

    model_name = name or spec.name.replace("-", "_")
    if features_only:
        outputs = {f"stride_{stride}": outputs_by_name[layer]
                   for stride, layer in endpoint_layers(spec).items()}
        return keras.Model(images, outputs, name=model_name)

    x = keras.layers.Conv2D(spec.scaled_head_filters, 1, padding="same",
                            use_bias=fold_batch_norm,
                            kernel_initializer=layers_lib.ConvKernelInitializer(),
                            name="top_conv")(x)
    x = batch_norm(x, "top_bn")
    x = keras.layers.Activation(layers_lib.get_activation(activation), name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        # Kept at rate 0 too: progressive learning changes the rate stage by stage.
        x = layers_lib.Dropout(dropout_rate, name="top_dropout")(x)
        # float32 logits under mixed precision: the softmax and loss need the range.
        x = keras.layers.Dense(num_classes, activation=classifier_activation,
                               kernel_initializer=layers_lib.DenseKernelInitializer(),
                               bias_initializer="zeros", dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(images, x, name=model_name)
