"""Builds a keras.Model from a registry row (V1 paper §4 and Table 1, V2 paper §3.3 and Table 4).

Layout: in-model normalization of [0, 255] images -> 3x3 stride-2 stem -> the scaled stages of
MBConv / Fused-MBConv blocks -> 1x1 head conv -> global average pool -> dropout -> classifier.
"""

import dataclasses
from typing import Optional, Tuple

import keras

from efficientnet_tf.models import blocks as blocks_lib
from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry


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


def normalization_layer(input_scaling):
    """The layer mapping images in [0, 255] as `input_scaling` says (registry.INPUT_SCALINGS:
    mean_std, sym128, sym255; docs/reference.md §2-3)."""
    if input_scaling == registry.SYM128:
        return keras.layers.Rescaling(1.0 / 128.0, offset=-1.0, name="normalize")
    if input_scaling == registry.SYM255:
        return keras.layers.Rescaling(2.0 / 255.0, offset=-1.0, name="normalize")
    if input_scaling != registry.MEAN_STD:
        raise ValueError(f"input_scaling {input_scaling!r}; use one of "
                         f"{', '.join(registry.INPUT_SCALINGS)}")
    return keras.layers.Normalization(
        mean=[255.0 * m for m in registry.IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in registry.IMAGENET_STDDEV], name="normalize")


def input_scaling_of(model):
    """The input scaling a built model applies (read from its `normalize` layer): what its
    exports keep and what a detector pads with."""
    layer = model.get_layer("normalize")
    if isinstance(layer, keras.layers.Normalization):
        return registry.MEAN_STD
    return registry.SYM128 if abs(float(layer.scale) - 1.0 / 128.0) < 1e-9 else registry.SYM255


@dataclasses.dataclass(frozen=True)
class BatchNormSettings:
    """Batch norm of every block: momentum and epsilon (TF convention; None: the family's,
    V1 0.99 / V2 0.9, epsilon 1e-3), and the replicas whose batches it normalizes over:
    synchronized over all of them, or over groups of `group_size` consecutive ones."""

    momentum: Optional[float] = None
    epsilon: Optional[float] = None
    synchronized: bool = False
    group_size: int = 0

    def resolved(self, spec):
        return dataclasses.replace(
            self, momentum=spec.bn_momentum if self.momentum is None else self.momentum,
            epsilon=spec.bn_epsilon if self.epsilon is None else self.epsilon,
            synchronized=bool(self.synchronized or self.group_size))


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """How to build a row: every option of create_model, in one serializable value.

    num_classes: size of the classifier. include_top: head conv, pooling, dropout and classifier
    (without: the model ends at the head conv's activation, or its `pooling`). input_shape:
    (height, width, 3); None dims (default) accept any size. dropout_rate, survival_prob: the
    row's dropout before the classifier and stochastic-depth survival of the last block, unless
    given. pooling: None, 'avg' or 'max' without the top. features_only: outputs
    {'stride_2': ..., 'stride_32': ...}, the last block output at each stride (detectors).
    classifier_activation: None gives logits, 'softmax' probabilities. batch_norm:
    BatchNormSettings. activation: 'swish', or 'inference_swish' (serving graphs).
    fold_batch_norm: the serving form, each BN folded into its convolution (models/fold.py).
    input_dtype: 'bfloat16' takes TPU input images as they come. input_scaling: how the
    [0, 255] images are mapped before the stem (registry.INPUT_SCALINGS; None: the row's, its
    family's; a checkpoint may need another, models/weights/catalog.py). name: the model's name.
    """

    num_classes: int = 1000
    include_top: bool = True
    input_shape: Optional[Tuple[Optional[int], Optional[int], int]] = None
    dropout_rate: Optional[float] = None
    survival_prob: Optional[float] = None
    pooling: Optional[str] = None
    features_only: bool = False
    classifier_activation: Optional[str] = None
    batch_norm: BatchNormSettings = BatchNormSettings()
    activation: str = "swish"
    fold_batch_norm: bool = False
    input_dtype: str = "float32"
    input_scaling: Optional[str] = None
    name: Optional[str] = None

    # Earlier keyword names of the batch-norm settings, still accepted by from_kwargs.
    _BATCH_NORM_ALIASES = {"synchronized_bn": "synchronized", "bn_group_size": "group_size",
                           "bn_momentum": "momentum", "bn_epsilon": "epsilon"}

    @classmethod
    def from_kwargs(cls, **kwargs):
        """ModelOptions from keyword arguments (create_model's), a clear error for unknown ones."""
        batch_norm = kwargs.pop("batch_norm", None) or BatchNormSettings()
        if isinstance(batch_norm, dict):
            batch_norm = BatchNormSettings(**batch_norm)
        aliases = {cls._BATCH_NORM_ALIASES[k]: kwargs.pop(k) for k in list(kwargs)
                   if k in cls._BATCH_NORM_ALIASES}
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown model option(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known | set(cls._BATCH_NORM_ALIASES)))}")
        if kwargs.get("input_shape") is not None:
            kwargs["input_shape"] = tuple(kwargs["input_shape"])
        return cls(batch_norm=dataclasses.replace(batch_norm, **aliases), **kwargs)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls.from_kwargs(**values)


def build(spec, options=None, **kwargs):
    """The keras.Model of `spec` (a registry row) as `options` (ModelOptions, or its fields as
    keyword arguments) say. See efficientnet_tf.create_model."""
    options = options or ModelOptions.from_kwargs(**kwargs)
    dropout_rate = spec.dropout_rate if options.dropout_rate is None else options.dropout_rate
    survival_prob = (spec.survival_prob if options.survival_prob is None
                     else options.survival_prob)
    input_shape = options.input_shape if options.input_shape is not None else (None, None, 3)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) with RGB channels last, "
                         f"got {input_shape!r}")
    if options.pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {options.pooling!r}")
    norm = options.batch_norm.resolved(spec)
    bn = dict(momentum=norm.momentum, epsilon=norm.epsilon, synchronized=norm.synchronized,
              group_size=norm.group_size)
    fold_batch_norm, activation = options.fold_batch_norm, options.activation

    def batch_norm(inputs, layer_name):
        # The serving form (fold_batch_norm) carries each BN in its convolution's kernel and bias.
        return inputs if fold_batch_norm else layers_lib.BatchNorm(**bn, name=layer_name)(inputs)

    images = keras.Input(shape=input_shape, name="images", dtype=options.input_dtype)
    x = normalization_layer(options.input_scaling or spec.normalization)(images)
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
                activation=activation, bn_momentum=norm.momentum,
                bn_epsilon=norm.epsilon, synchronized_bn=norm.synchronized,
                bn_group_size=norm.group_size, fold_batch_norm=fold_batch_norm,
                name=block_name)(x)
            outputs_by_name[block_name] = x
            block_index += 1

    model_name = options.name or spec.name.replace("-", "_").replace(":", "_").replace(
        ",", "_").replace("=", "")
    if options.features_only:
        outputs = {f"stride_{stride}": outputs_by_name[layer]
                   for stride, layer in endpoint_layers(spec).items()}
        return keras.Model(images, outputs, name=model_name)

    x = keras.layers.Conv2D(spec.scaled_head_filters, 1, padding="same",
                            use_bias=fold_batch_norm,
                            kernel_initializer=layers_lib.ConvKernelInitializer(),
                            name="top_conv")(x)
    x = batch_norm(x, "top_bn")
    x = keras.layers.Activation(layers_lib.get_activation(activation), name="top_activation")(x)
    if options.include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        # Kept at rate 0 too: progressive learning changes the rate stage by stage.
        x = layers_lib.Dropout(dropout_rate, name="top_dropout")(x)
        # float32 logits under mixed precision: the softmax and loss need the range.
        x = keras.layers.Dense(options.num_classes, activation=options.classifier_activation,
                               kernel_initializer=layers_lib.DenseKernelInitializer(),
                               bias_initializer="zeros", dtype="float32", name="predictions")(x)
    elif options.pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif options.pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(images, x, name=model_name)
