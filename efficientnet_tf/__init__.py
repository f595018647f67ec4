"""efficientnet_tf: train, fine-tune and serve EfficientNet V1/V2 with TensorFlow and Keras 3."""

import sys

from efficientnet_tf.specs import registry as _registry
from efficientnet_tf.specs.registry import DetectionSpec, ModelSpec, compound_scale
from efficientnet_tf.specs.registry import get as get_spec, scale

__version__ = "0.1.0"


def create_model(name_or_spec, weights=None, **options):
    """A keras.Model of an EfficientNet variant, taking RGB images in [0, 255]; for an
    EfficientDet row ('efficientdet-d0'), the detector (models/efficientdet.py: per-level class
    and box outputs; options num_classes=90, input_shape, input_scaling, name).

    name_or_spec: a registry name ('efficientnetv2-s', 'efficientnet_b0', ...), a scaled row by
    name ('efficientnet-b0:w=1.1,d=1.2,r=240', 'efficientnet-b0:phi=1.5'), or a ModelSpec (e.g.
    from `compound_scale` or `scale`).

    weights: None (random init); 'imagenet' (keras.applications' file); an official checkpoint
    by name, 'VARIANT/TAG' ('efficientnetv2-s/imagenet21k-ft1k', 'efficientnet-b4/noisy-student',
    'efficientdet-d0/coco'; `efficientnet-tf info --weights` lists them) or 'TAG' alone; a URL; or
    a path: a checkpoint prefix, its folder or .tar.gz, an official EfficientDet .h5, a
    keras.applications .h5 / .weights.h5, our own .weights.h5 (models/weights). Downloads go to
    a cache (~/.keras/efficientnet_tf) on first use. A checkpoint name sets the model's
    input_scaling and, unless given, num_classes (21843 for the ImageNet-21k ones); a detector
    takes a classifier checkpoint of its backbone for its backbone. A classifier head of
    another size is left freshly initialised (logged).

    options: the fields of efficientnet_tf.models.efficientnet.ModelOptions (num_classes=1000,
    include_top=True, input_shape, input_scaling ('mean_std', 'sym128', 'sym255'; default the
    row's), dropout_rate, survival_prob, pooling, features_only, classifier_activation,
    batch_norm, input_dtype, name, ...), or a ModelOptions as `options=`. keras.applications'
    names work too: classes= for num_classes, include_preprocessing=True (what our models
    always do: they take [0, 255] RGB and scale it inside, as input_scaling says).
    """
    # Imported here: `import efficientnet_tf` must not start TensorFlow (the CLI sets the TPU
    # runtime's environment first) nor Keras.
    import dataclasses

    from efficientnet_tf.models import efficientdet, efficientnet, weights as weights_lib

    spec = get_spec(name_or_spec)
    options = _from_keras_applications_names(options)
    built = options.pop("options", None)
    classes_given = built is not None or "num_classes" in options
    if isinstance(spec, DetectionSpec):
        if built is not None:
            raise TypeError("a detector takes keyword options (num_classes, input_shape, "
                            "input_scaling, name, ...), not options=")
        include_top = True
    else:
        built = built or efficientnet.ModelOptions.from_kwargs(**options)
        include_top = built.include_top
    resolved = weights
    if weights is not None and not isinstance(weights, weights_lib.Weights):
        resolved = weights_lib.resolve(spec, weights, include_top)
    scaling = weights_lib.choose_input_scaling(
        spec, built.input_scaling if built else options.get("input_scaling"),
        resolved.input_scaling if resolved else None,
        f"weights {resolved.source!r}" if resolved else "")
    # Unless told, a model takes the checkpoint's head whole (21843 classes for ImageNet-21k).
    classes = resolved.classes_for(spec) if resolved and not classes_given else None
    if built is None:
        options = {"num_classes": classes or 90, **options, "input_scaling": scaling}
        model = efficientdet.create(spec, **options)
    else:
        built = dataclasses.replace(built, input_scaling=scaling, **(
            {"num_classes": classes} if classes else {}))
        model = efficientnet.build(spec, built)
    if resolved is not None:
        weights_lib.load(model, spec, resolved)
    return model


def _from_keras_applications_names(options):
    """create_model's options with keras.applications' names (classes, include_preprocessing)
    put as ours."""
    options = dict(options)
    if "classes" in options:
        if "num_classes" in options:
            raise TypeError("give num_classes or classes (keras.applications' name), not both")
        options["num_classes"] = options.pop("classes")
    if "include_preprocessing" in options and not options.pop("include_preprocessing"):
        raise ValueError("include_preprocessing=False: these models always take RGB images in "
                         "[0, 255] and scale them inside (input_scaling='mean_std', 'sym128' "
                         "or 'sym255' says how); feed the images unscaled")
    return options


def list_models(family=None):
    """The registered models' names in table order: EfficientNet V1 ('efficientnet-b0' ..
    'efficientnet-l2'), V2 ('efficientnetv2-b0' .. 'efficientnetv2-xl') and EfficientDet
    ('efficientdet-d0' .. 'efficientdet-d7x'); `family` "efficientnet", "efficientnetv2" or
    "efficientdet" for one of them."""
    if family == "efficientdet":
        return _registry.detection_names()
    classifiers = _registry.names(family)
    if family is None:
        return classifiers + _registry.detection_names()
    if not classifiers:
        raise ValueError(f"unknown family {family!r}; use 'efficientnet', 'efficientnetv2' or "
                         "'efficientdet'")
    return classifiers


def detect(detector, images, min_score=0.3, class_names=None, nms=None, spec=None,
           anchor_scale=None):
    """Boxes, scores and classes in each image's own pixels from a detector
    (create_model('efficientdet-d0', ...)): a list of {"boxes" [N, 4] (ymin, xmin, ymax, xmax),
    "scores" [N], "classes" [N] (0-based), "labels" [N] with class_names}, one per image, for
    one image array, a list of them (any sizes) or encoded image bytes.
    See efficientnet_tf/tasks/detection/serving.py detect for the options."""
    from efficientnet_tf.tasks.detection import serving

    return serving.detect(detector, images, min_score, class_names, nms, spec, anchor_scale)


def load_model(path, **kwargs):
    """keras.models.load_model of a .keras file holding our layers (an export's, or
    model.save's), whatever was imported before; kwargs go to Keras."""
    _register_layers()
    import keras

    return keras.models.load_model(path, **kwargs)


def _register_layers():
    """Imports every module that registers Keras objects (layers, blocks, schedules), so that
    Keras finds them by name when it loads a .keras file."""
    from efficientnet_tf.models import bifpn, blocks, layers  # noqa: F401
    from efficientnet_tf.train import optim  # noqa: F401


def list_weights(model_name=None):
    """The official checkpoints' names ('efficientnetv2-s/imagenet21k-ft1k', ...), of one
    variant when `model_name` is given: what create_model(weights=...) takes by name."""
    from efficientnet_tf.models.weights import catalog

    names = [checkpoint.name for checkpoint in catalog.checkpoints()]
    if model_name is None:
        return names
    variant = get_spec(model_name).name
    return [name for name in names if name.split("/", 1)[0] == variant]


__all__ = ["DetectionSpec", "ModelSpec", "compound_scale", "create_model", "get_spec",
           "detect", "list_models", "list_weights", "load_model", "scale"]

# Keras (or TensorFlow, which loads it) is already imported: registering our layers costs
# nothing more, and `keras.models.load_model` then finds them. Otherwise importing the package
# starts neither (the CLI sets the TPU runtime's environment first): efficientnet_tf.load_model
# registers them when called.
if "keras" in sys.modules:
    _register_layers()
