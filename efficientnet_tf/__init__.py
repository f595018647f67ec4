"""efficientnet_tf: train, fine-tune and serve EfficientNet V1/V2 with TensorFlow and Keras 3."""

from efficientnet_tf.specs.registry import ModelSpec, compound_scale, get as get_spec, scale
from efficientnet_tf.specs.registry import names as list_models

__version__ = "0.1.0"


def create_model(name_or_spec, num_classes=1000, include_top=True, weights=None, input_shape=None,
                 dropout_rate=None, survival_prob=None, pooling=None, features_only=False,
                 classifier_activation=None, synchronized_bn=False, name=None,
                 input_dtype="float32", bn_group_size=0, bn_momentum=None):
    """A keras.Model of an EfficientNet variant, taking RGB images in [0, 255].

    Args:
      name_or_spec: a registry name ('efficientnetv2-s', 'efficientnet_b0', ...) or a ModelSpec
        (e.g. from `compound_scale` or `scale`).
      num_classes: size of the classifier.
      include_top: add head conv, pooling, dropout and classifier. Without it the model ends at
        the head conv's activation (or its pooling, see `pooling`).
      weights: None (random init), 'imagenet' (the keras.applications file, from the Keras cache),
        or the path of a keras.applications .h5 / .weights.h5 file or of our own .weights.h5.
      input_shape: (height, width, 3); None dims (the default) accept any size.
      dropout_rate, survival_prob: override the row's dropout before the classifier and the
        stochastic-depth survival probability of the last block.
      pooling: None, 'avg' or 'max' when include_top is False.
      features_only: return a model whose output is {'stride_2': ..., ..., 'stride_32': ...}, the
        last block output at each stride, for detectors.
      classifier_activation: None gives logits (the default: losses take logits); 'softmax' gives
        probabilities as keras.applications does.
      synchronized_bn: batch-norm statistics averaged over all replicas (large TPU slices).
      bn_group_size: synchronized batch norm over groups of this many consecutive replicas
        (the official code's num_shards_per_group); 0 = all replicas. Implies synchronized_bn.
      bn_momentum: batch norm's moving-average momentum (TF convention); None: the family's
        (V1 0.99, V2 0.9).
      input_dtype: dtype of the image input; 'bfloat16' takes the TPU input pipeline's images
        as they come (integers up to 256 are exact in bfloat16), with no cast to float32.
    """
    from efficientnet_tf.models import efficientnet, weights as weights_lib

    spec = get_spec(name_or_spec)
    if weights is not None:
        weights = weights_lib.resolve(spec, weights, include_top)
    model = efficientnet.build(
        spec, num_classes=num_classes, include_top=include_top, input_shape=input_shape,
        dropout_rate=dropout_rate, survival_prob=survival_prob, pooling=pooling,
        features_only=features_only, classifier_activation=classifier_activation,
        synchronized_bn=synchronized_bn, name=name, input_dtype=input_dtype,
        bn_group_size=bn_group_size, bn_momentum=bn_momentum)
    if weights is not None:
        weights_lib.load_weights(model, spec, weights, include_top=include_top)
    return model


__all__ = ["ModelSpec", "compound_scale", "create_model", "get_spec", "list_models", "scale"]
