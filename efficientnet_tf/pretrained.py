"""Pretrained weights without a training run: `efficientnet-tf convert`, and `export` / `predict`
with --weights (an official checkpoint by name, a URL or a path; models/weights).

convert writes a model's variables under the official names (models/weights/official.py
save_h5), with what the weights imply (variant, input scaling, classes, class names) in the
file: a machine without network loads it like the original, checks included.
"""

from efficientnet_tf import export, tasks
from efficientnet_tf.models import efficientdet, efficientnet
from efficientnet_tf.models import weights as weights_lib
from efficientnet_tf.specs import registry


def variant_of(weights, model_name=None):
    """The registry row of `weights`: `model_name`, else the variant its name or file names."""
    if model_name:
        return registry.get(model_name)
    checkpoint = weights_lib.catalog.find(weights) or weights_lib.catalog.find_url(weights)
    if checkpoint is not None and not weights_lib.exists(weights):
        return registry.get(checkpoint.variant)
    if weights_lib.mistyped_name(weights):  # resolve says which tags there are
        return registry.get(weights.split("/", 1)[0])
    if weights.endswith(".h5") and weights_lib.exists(weights):
        recorded = weights_lib.resolve("efficientnet-b0", weights).model_name
        if recorded:
            return registry.get(recorded)
    raise ValueError(f"--weights={weights} does not say which variant it holds: add "
                     "--model=NAME (e.g. --model=efficientnet-b4)")


def build(weights, model_name=None, input_scaling=None, image_size=None):
    """(row, model, Weights, evaluation size) of pretrained `weights`: the model built to take
    them whole (their classes, their input scaling) at their evaluation size. Weights that
    leave part of it untrained (a classifier's into a detector) are refused: serving or
    converting them would pass random layers off as pretrained ones."""
    import efficientnet_tf

    spec = variant_of(weights, model_name)
    resolved = weights_lib.resolve(spec, weights)
    checkpoint = resolved.checkpoint
    size = image_size or (checkpoint.eval_size if checkpoint and checkpoint.variant == spec.name
                          else resolved.attributes.get("eval_size")
                          or getattr(spec, "eval_size", None) or spec.image_size)
    options = {"num_classes": _classes_or_default(resolved, spec),
               "input_scaling": weights_lib.choose_input_scaling(
                   spec, input_scaling, resolved.input_scaling, f"weights {weights!r}")}
    if isinstance(spec, registry.DetectionSpec):
        options["input_shape"] = (size, size, 3)
    model = efficientnet_tf.create_model(spec, **options)
    report = weights_lib.load(model, spec, resolved)
    if report.skipped:
        raise ValueError(f"weights {weights!r} leave {len(report.skipped)} layers of {spec.name} "
                         f"untrained (first: {report.skipped[0]}); export, predict and convert "
                         "take whole models: fine-tune from them with --config.init_from")
    return spec, model, resolved, size


def _classes_or_default(resolved, spec):
    return resolved.classes_for(spec) or (90 if isinstance(spec, registry.DetectionSpec)
                                          else 1000)


def task_of(spec):
    return tasks.get("detection" if isinstance(spec, registry.DetectionSpec)
                     else "classification")


class PretrainedTask:
    """What export.export asks of a task, for a model with pretrained weights and no run."""

    def __init__(self, spec, image_size, weights):
        self.spec, self.image_size, self.weights = spec, image_size, weights
        self.task_class = task_of(spec)

    def serving_module(self, model, top_k=5, nms=None):
        return self.task_class.pretrained_serving_module(
            model, self.spec, self.image_size, self.weights.class_names, top_k, nms,
            self.weights.probabilities)

    def eval_dataset(self, *args, **kwargs):
        raise ValueError("--quantize=int8 calibrates on a run's eval images; pretrained "
                         "weights have none: use --quantize=dynamic or none")


def export_pretrained(weights, export_path, export_format="saved_model", model_name=None,
                      input_scaling=None, quantize="none", top_k=5, nms=None, image_size=None):
    """Exports the model of pretrained `weights` as `export_format` (export.export), serving
    at `image_size` (default the checkpoint's evaluation size)."""
    spec, model, resolved, size = build(weights, model_name, input_scaling, image_size)
    task = PretrainedTask(spec, size, resolved)
    return export.export(task, model, export_path, export_format, quantize, top_k, nms=nms)


def serving(weights, model_name=None, input_scaling=None, top_k=5, image_size=None):
    """(task class, serving module) of pretrained `weights`, for predict."""
    spec, model, resolved, size = build(weights, model_name, input_scaling, image_size)
    task = PretrainedTask(spec, size, resolved)
    return task.task_class, task.serving_module(model, top_k)


def convert(weights, output, model_name=None, input_scaling=None):
    """Writes pretrained `weights` (a name, URL or path) to `output` (an .h5, e.g.
    FILE.weights.h5) under the official names; returns (path, what the file records)."""
    if not output.endswith(".h5"):
        raise ValueError(f"--output={output}: the converted file is an .h5 (FILE.weights.h5)")
    spec, model, resolved, size = build(weights, model_name, input_scaling)
    attributes = {
        "model": spec.name, "input_scaling": efficientnet.input_scaling_of(model),
        "num_classes": _classes(model, spec), "class_names": list(resolved.class_names or []),
        "probabilities": resolved.probabilities, "eval_size": size, "source": weights,
        "url": resolved.checkpoint.url if resolved.checkpoint else None}
    weights_lib.official.save_h5(model, spec, output, attributes)
    return output, attributes


def describe_conversion(weights, path, attributes):
    """What `convert` prints: what the file holds and how to load it."""
    return (f"converted {weights} to {path}: {attributes['model']}, "
            f"{attributes['num_classes']} classes, input scaling {attributes['input_scaling']}; "
            f"load it with efficientnet_tf.create_model({attributes['model']!r}, "
            f"weights={path!r}) or --config.init_from={path}")


def _classes(model, spec):
    if isinstance(spec, registry.DetectionSpec):
        return efficientdet.num_classes_of(model, spec.min_level, spec.anchors_per_location)
    return int(model.output_shape[-1])
