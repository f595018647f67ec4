"""MBConv and Fused-MBConv blocks (V1 paper §4 / MobileNetV2 §3, V2 paper §3.2 and Figure 2).

Sublayer names follow keras.applications (`block2a_expand_conv`, `block2a_dwconv`, `block2a_bn`,
`block2a_se_reduce`, `block2a_project_conv`, ...), so weights map between the two by name.
"""

import keras

from efficientnet_tf.models import layers as layers_lib

_PACKAGE = "efficientnet_tf"


class _Block(keras.layers.Layer):
    """What MBConv and Fused-MBConv share: arguments, conv/BN factories and the residual."""

    def __init__(self, input_filters, output_filters, kernel_size=3, strides=1, expand_ratio=1,
                 se_ratio=0.0, id_skip=True, survival_prob=1.0, activation="swish",
                 bn_momentum=0.99, bn_epsilon=1e-3, synchronized_bn=False, fold_batch_norm=False,
                 bn_group_size=0, **kwargs):
        super().__init__(**kwargs)
        if strides not in (1, 2):
            raise ValueError(f"{self.name}: strides must be 1 or 2, got {strides!r}")
        self.input_filters = input_filters
        self.output_filters = output_filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.expand_ratio = expand_ratio
        self.se_ratio = se_ratio
        self.id_skip = id_skip
        self.survival_prob = survival_prob
        self.activation = activation
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.bn_group_size = bn_group_size  # synchronized BN over groups of this many replicas
        # Serving form: each BN folded into its convolution's kernel and bias (models/fold.py).
        self.fold_batch_norm = fold_batch_norm
        self.expanded_filters = input_filters * expand_ratio
        self.has_residual = id_skip and strides == 1 and input_filters == output_filters

    def _conv(self, filters, kernel_size, strides, suffix):
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same",
            use_bias=self.fold_batch_norm, kernel_initializer=layers_lib.ConvKernelInitializer(),
            name=f"{self.name}_{suffix}", dtype=self.dtype_policy)

    def _batch_norm(self, suffix):
        if self.fold_batch_norm:
            return None
        return layers_lib.BatchNorm(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, synchronized=self.synchronized_bn,
            group_size=self.bn_group_size, name=f"{self.name}_{suffix}", dtype=self.dtype_policy)

    def _activate(self, inputs):
        return layers_lib.get_activation(self.activation)(inputs)

    @staticmethod
    def _normalize(batch_norm, inputs, training):
        return inputs if batch_norm is None else batch_norm(inputs, training=training)

    def _squeeze_excite(self):
        if not 0 < self.se_ratio <= 1:
            return None
        return layers_lib.SqueezeExcite(
            self.expanded_filters, max(1, int(self.input_filters * self.se_ratio)),
            activation=self.activation, name=f"{self.name}_se", dtype=self.dtype_policy)

    def _stochastic_depth(self):
        if not self.has_residual:
            return None
        return layers_lib.StochasticDepth(self.survival_prob, name=f"{self.name}_drop",
                                          dtype=self.dtype_policy)

    def _residual(self, inputs, outputs, training):
        if not self.has_residual:
            return outputs
        return inputs + self.drop(outputs, training=training)

    @staticmethod
    def _build_chain(layers, input_shape):
        shape = input_shape
        for layer in layers:
            if layer is not None:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        return shape

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1:3]
        if self.strides == 2:
            height = None if height is None else -(-height // 2)
            width = None if width is None else -(-width // 2)
        return (input_shape[0], height, width, self.output_filters)

    def get_config(self):
        return {**super().get_config(), "input_filters": self.input_filters,
                "output_filters": self.output_filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "expand_ratio": self.expand_ratio,
                "se_ratio": self.se_ratio, "id_skip": self.id_skip,
                "survival_prob": self.survival_prob, "activation": self.activation,
                "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
                "synchronized_bn": self.synchronized_bn, "bn_group_size": self.bn_group_size,
                "fold_batch_norm": self.fold_batch_norm}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MBConv(_Block):
    """Inverted bottleneck: 1x1 expand, kxk depthwise, squeeze-excite, 1x1 linear projection."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.expand_ratio != 1:
            self.expand_conv = self._conv(self.expanded_filters, 1, 1, "expand_conv")
            self.expand_bn = self._batch_norm("expand_bn")
        else:
            self.expand_conv = self.expand_bn = None
        self.dwconv = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", use_bias=self.fold_batch_norm,
            depthwise_initializer=layers_lib.ConvKernelInitializer(), name=f"{self.name}_dwconv",
            dtype=self.dtype_policy)
        self.bn = self._batch_norm("bn")
        self.se = self._squeeze_excite()
        self.project_conv = self._conv(self.output_filters, 1, 1, "project_conv")
        self.project_bn = self._batch_norm("project_bn")
        self.drop = self._stochastic_depth()

    def build(self, input_shape):
        self._build_chain([self.expand_conv, self.expand_bn, self.dwconv, self.bn, self.se,
                           self.project_conv, self.project_bn, self.drop], input_shape)

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self._activate(self._normalize(self.expand_bn, self.expand_conv(x), training))
        x = self._activate(self._normalize(self.bn, self.dwconv(x), training))
        if self.se is not None:
            x = self.se(x)
        x = self._normalize(self.project_bn, self.project_conv(x), training)
        return self._residual(inputs, x, training)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedMBConv(_Block):
    """Fused-MBConv: the 1x1 expand and kxk depthwise of MBConv replaced by one kxk conv.

    With expand ratio 1 the block is that single kxk conv + BN + activation.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.expand_ratio != 1:
            self.expand_conv = self._conv(self.expanded_filters, self.kernel_size, self.strides,
                                          "expand_conv")
            self.expand_bn = self._batch_norm("expand_bn")
            self.se = self._squeeze_excite()
            self.project_conv = self._conv(self.output_filters, 1, 1, "project_conv")
        else:
            self.expand_conv = self.expand_bn = None
            self.se = self._squeeze_excite()
            self.project_conv = self._conv(self.output_filters, self.kernel_size, self.strides,
                                           "project_conv")
        self.project_bn = self._batch_norm("project_bn")
        self.drop = self._stochastic_depth()

    def build(self, input_shape):
        self._build_chain([self.expand_conv, self.expand_bn, self.se, self.project_conv,
                           self.project_bn, self.drop], input_shape)

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self._activate(self._normalize(self.expand_bn, self.expand_conv(x), training))
        if self.se is not None:
            x = self.se(x)
        x = self._normalize(self.project_bn, self.project_conv(x), training)
        if self.expand_conv is None:
            x = self._activate(x)
        return self._residual(inputs, x, training)
