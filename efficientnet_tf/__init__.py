"""efficientnet_tf: train, fine-tune and serve EfficientNet V1/V2 with TensorFlow and Keras 3."""

from efficientnet_tf.specs.registry import DetectionSpec, ModelSpec, compound_scale
from efficientnet_tf.specs.registry import get as get_spec, scale
from efficientnet_tf.specs.registry import names as list_models

__version__ = "0.1.0"


def create_model(name_or_spec, weights=None, **options):
    """A keras.Model of an EfficientNet variant, taking RGB images in [0, 255]; for an
    EfficientDet row ('efficientdet-d0'), the detector (models/efficientdet.py: per-level class
    and box outputs; options num_classes=90, input_shape, name; weights for its backbone).

    name_or_spec: a registry name ('efficientnetv2-s', 'efficientnet_b0', ...), a scaled row by
    name ('efficientnet-b0:w=1.1,d=1.2,r=240', 'efficientnet-b0:phi=1.5'), or a ModelSpec (e.g.
    from `compound_scale` or `scale`). weights: None (random init), 'imagenet' (the
    keras.applications file, from the Keras cache), or the path of a keras.applications .h5 /
    .weights.h5 file or of our own .weights.h5. options: the fields of
    efficientnet_tf.models.efficientnet.ModelOptions (num_classes=1000, include_top=True,
    input_shape, dropout_rate, survival_prob, pooling, features_only, classifier_activation,
    batch_norm, input_dtype, name, ...), or a ModelOptions as `options=`.
    """
    # Imported here: `import efficientnet_tf` must not start TensorFlow (the CLI sets the TPU
    # runtime's environment first) nor Keras.
    from efficientnet_tf.models import efficientdet, efficientnet, weights as weights_lib

    spec = get_spec(name_or_spec)
    if isinstance(spec, DetectionSpec):  # options: num_classes (90), input_shape, name
        return efficientdet.create(spec, weights, **options)
    built = options.pop("options", None) or efficientnet.ModelOptions.from_kwargs(**options)
    if weights is not None:
        weights = weights_lib.resolve(spec, weights, built.include_top)
    model = efficientnet.build(spec, built)
    if weights is not None:
        weights_lib.load_weights(model, spec, weights, include_top=built.include_top)
    return model


__all__ = ["DetectionSpec", "ModelSpec", "compound_scale", "create_model", "get_spec",
           "list_models", "scale"]
