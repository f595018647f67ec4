"""The official checkpoints' variable names, derived from our models, and loading by those names.

The official EfficientNet (tensorflow/tpu), EfficientNetV2 and EfficientDet (google/automl)
releases are TF1 name-based checkpoints; automl also publishes EfficientDet as tf_keras `.h5`
files with the same names. A name is a scope path, made by the official code's layer counters:

  classifier   <model>/stem/{conv2d, tpu_batch_normalization}
               <model>/blocks_<n>/...  n counts every block of every stage from 0
               <model>/head/{conv2d, tpu_batch_normalization, dense}
  in a block   convolutions conv2d, conv2d_1, ... and batch norms tpu_batch_normalization,
               tpu_batch_normalization_1, ... in creation order (MBConv: expand, project;
               without expansion only project), the depthwise conv depthwise_conv2d, and the
               squeeze-excite's two convolutions se/conv2d (reduce), se/conv2d_1 (expand)
  detector     <backbone>/... (no head), resample_p6/{conv2d, bn},
               fpn_cells/cell_<c>/fnode<n>/{WSM, WSM_1, ..} (one scalar per fusion input),
                 resample_<k>_<i>_<id>/{conv2d, bn} (input k, from feature i), and
                 op_after_combine<id>/{conv, bn} with id = number of levels + n,
               class_net/class-<i> (shared separable conv), class_net/class-<i>-bn-<level>,
               class_net/class-predict, and the same under box_net/box-...

Our layers create their sublayers in the official order, so the names are derived from our
model's structure (official_targets), not typed out: every checkpoint of every variant, scaled
or not, maps by the same rules. A load checks everything before it assigns anything: every
model variable found with its shape, every checkpoint variable used or deliberately skipped
(EMA shadows of used names, optimizer slots, global_step, a classifier head of another size).
EMA shadows (`<name>/ExponentialMovingAverage`) are read where present, as the official
evaluation does.
"""

import dataclasses
import json
import re
import tempfile
from typing import List, Tuple

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from efficientnet_tf.models import bifpn as bifpn_lib
from efficientnet_tf.models import efficientdet, efficientnet
from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry

SHADOW = "/ExponentialMovingAverage"
# Optimizer slots the official trainers leave beside each variable (RMSProp: V1/V2; Momentum:
# EfficientDet's SGD; Adam for fine-tuned files), and the step counter.
SLOT_SUFFIXES = ("/RMSProp", "/RMSProp_1", "/Momentum", "/Adam", "/Adam_1")
BOOKKEEPING = ("global_step",)
BATCH_NORM = "tpu_batch_normalization"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclasses.dataclass
class Target:
    """One of our variables and the official name(s) that fill it: one name, or several scalars
    stacked in order (a fusion node's weights)."""

    variable: object
    names: Tuple[str, ...]
    layer: str  # our layer's name, for messages
    head: bool = False  # the class predictor: left fresh when the checkpoint's size differs

    @property
    def stacked(self):
        return len(self.names) > 1 or not self.variable.shape


def _variables_of(layer):
    """[(official leaf name, variable)] of a leaf layer, in the official order."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [("gamma", layer.gamma), ("beta", layer.beta), ("moving_mean", layer.moving_mean),
                ("moving_variance", layer.moving_variance)]
    if isinstance(layer, keras.layers.SeparableConv2D):
        pairs = [("depthwise_kernel", layer.depthwise_kernel),
                 ("pointwise_kernel", layer.pointwise_kernel)]
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        pairs = [("depthwise_kernel", layer.kernel)]
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        pairs = [("kernel", layer.kernel)]
    else:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no official "
                         "counterpart; load official weights into an unfolded model")
    return pairs + ([("bias", layer.bias)] if layer.use_bias else [])


def _kind(layer):
    """The official layer counter a leaf layer advances."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise_conv2d"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv2d"
    if isinstance(layer, keras.layers.BatchNormalization):
        return BATCH_NORM
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no official name")


def _children(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _scope_targets(layers, scope, head_layer=None):
    """Targets of `layers` (in creation order) under the official `scope`: each kind counted
    (conv2d, conv2d_1, ...); a squeeze-excite is the sub-scope `se` with counters of its own."""
    targets, counts = [], {}
    for layer in layers:
        if isinstance(layer, layers_lib.SqueezeExcite):
            targets += _scope_targets(_children(layer), f"{scope}/se")
            continue
        if not layer.weights:
            continue
        kind = _kind(layer)
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        name = f"{scope}/{kind}" + (f"_{index}" if index else "")
        targets += [Target(variable, (f"{name}/{leaf}",), layer.name,
                           head=layer.name == head_layer)
                    for leaf, variable in _variables_of(layer)]
    return targets


def _optional(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def backbone_targets(model, spec, scope):
    """Targets of a classifier's stem and blocks (a detector's backbone) under `scope`."""
    blocks = [name for stage in efficientnet.block_names(spec) for name in stage]
    targets = _scope_targets([model.get_layer("stem_conv"), model.get_layer("stem_bn")],
                             f"{scope}/stem")
    for index, name in enumerate(blocks):
        targets += _scope_targets(_children(model.get_layer(name)), f"{scope}/blocks_{index}")
    return targets


def classifier_targets(model, spec, scope):
    """Targets of every variable of a classifier (efficientnet.build of `spec`)."""
    head = [layer for layer in (_optional(model, name) for name in
                                ("top_conv", "top_bn", "predictions")) if layer is not None]
    return (backbone_targets(model, spec, scope)
            + _scope_targets(head, f"{scope}/head", head_layer="predictions"))


def detector_targets(model, spec, scope):
    """Targets of every variable of an EfficientDet (efficientdet.build of `spec`)."""
    targets = backbone_targets(model, registry.get(spec.backbone), scope)
    for level in range(6, spec.max_level + 1):  # P6 from C5 by a 1x1 conv + BN; the rest pool
        layers = [_optional(model, f"p{level}_{part}") for part in ("conv", "bn")]
        targets += _rename(_scope_targets([x for x in layers if x], f"resample_p{level}"),
                           {BATCH_NORM: "bn"})
    levels = spec.max_level - spec.min_level + 1
    nodes = bifpn_lib.bifpn_nodes(spec.min_level, spec.max_level)
    for cell in range(spec.fpn_repeats):
        for index, (_, inputs) in enumerate(nodes):
            ours = bifpn_lib.node_name(f"fpn_cell{cell}", index)
            theirs = f"fpn_cells/cell_{cell}/fnode{index}"
            node_id = levels + index
            for position, feature in enumerate(inputs):
                resample = bifpn_lib.resample_name(ours, position, feature)
                layers = [_optional(model, f"{resample}_{part}") for part in ("conv", "bn")]
                targets += _rename(_scope_targets(
                    [x for x in layers if x], f"{theirs}/resample_{position}_{feature}_{node_id}"),
                    {BATCH_NORM: "bn"})
            fusion = model.get_layer(f"{ours}_fusion")
            if fusion.weights:  # fast / softmax fusion: one scalar WSM per input
                targets.append(Target(fusion.fusion_weights, tuple(
                    f"{theirs}/WSM" + (f"_{k}" if k else "") for k in range(len(inputs))),
                    fusion.name))
            for part, official in (("conv", "conv"), ("bn", "bn")):
                layer = model.get_layer(f"{ours}_{part}")
                targets += [Target(variable, (f"{theirs}/op_after_combine{node_id}/{official}/"
                                              f"{leaf}",), layer.name)
                            for leaf, variable in _variables_of(layer)]
    for head, short in (("class_net", "class"), ("box_net", "box")):
        targets += _head_targets(model, spec, head, short)
    return targets


def _head_targets(model, spec, head, short):
    targets = []
    for repeat in range(spec.head_repeats):
        layer = model.get_layer(f"{head}_conv{repeat}")
        targets += [Target(v, (f"{head}/{short}-{repeat}/{leaf}",), layer.name)
                    for leaf, v in _variables_of(layer)]
        for level in range(spec.min_level, spec.max_level + 1):
            layer = model.get_layer(f"{head}_bn{repeat}_level{level}")
            targets += [Target(v, (f"{head}/{short}-{repeat}-bn-{level}/{leaf}",), layer.name)
                        for leaf, v in _variables_of(layer)]
    layer = model.get_layer(f"{head}_predict")
    return targets + [Target(v, (f"{head}/{short}-predict/{leaf}",), layer.name,
                             head=head == "class_net") for leaf, v in _variables_of(layer)]


def _rename(targets, parts):
    """The targets with each name's layer part renamed (the BiFPN calls its BNs `bn`)."""
    for target in targets:
        target.names = tuple(re.sub(r"/([^/]+)/(?=[^/]+$)",
                                    lambda m: f"/{parts.get(m.group(1), m.group(1))}/", name)
                             for name in target.names)
    return targets


class Store:
    """The variables of an official checkpoint: their shapes by name, values read on demand."""

    def __init__(self, shapes, read, description):
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self.read = read
        self.description = description

    def plain_names(self):
        """The model variables it holds: EMA shadows count as their variable, optimizer slots
        and the step counter do not."""
        names = set()
        for name in self.shapes:
            if name in BOOKKEEPING or name.endswith(SLOT_SUFFIXES):
                continue
            names.add(name[: -len(SHADOW)] if name.endswith(SHADOW) else name)
        return names

    def key_of(self, name):
        """The key holding `name`'s value: its EMA shadow where there is one."""
        return name + SHADOW if name + SHADOW in self.shapes else name


def open_checkpoint(prefix):
    """The Store of a TF1 name-based checkpoint (`prefix`.index + data files; any filesystem)."""
    # The reader of the prefix itself: tf.train.load_checkpoint first asks whether the path is
    # a folder, which object stores answer yes for a prefix of files.
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    shapes = reader.get_variable_to_shape_map()
    if _OBJECT_GRAPH_KEY in shapes:
        raise ValueError(f"{prefix!r} is an object-based TF2 checkpoint, not an official TF1 "
                         "one: pass the workdir of the run that wrote it (init_from) instead")
    return Store(shapes, reader.get_tensor, prefix)


def is_official_h5(h5file):
    """Whether an open HDF5 file is an official EfficientDet .h5 (tf_keras save_weights of
    automl's EfficientDetNet): its weight names are the checkpoint's scope paths."""
    group = h5file["model_weights"] if "model_weights" in h5file else h5file
    for layer_name in group.attrs.get("layer_names", []):
        layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
        for weight in group[layer_name].attrs.get("weight_names", []):
            weight = weight.decode() if isinstance(weight, bytes) else weight
            if "/stem/conv2d/kernel" in weight or weight.startswith("fpn_cells/"):
                return True
    return False


def open_h5(path):
    """The Store of an official EfficientDet .h5 (names without the ':0' suffix)."""
    arrays = {}
    with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as h5file:
        group = h5file["model_weights"] if "model_weights" in h5file else h5file
        for layer_name in group.attrs["layer_names"]:
            layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
            for weight in group[layer_name].attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                arrays[re.sub(r":\d+$", "", weight)] = group[layer_name][weight][()]
    return Store({name: value.shape for name, value in arrays.items()}, arrays.__getitem__,
                 path)


def checkpoint_scope(store):
    """The scope of the EfficientNet in `store` ('efficientnet-b0', 'efficientnetv2-s': a
    classifier's, or a detector's backbone)."""
    scopes = sorted({name[: -len("/stem/conv2d/kernel")] for name in store.plain_names()
                     if name.endswith("/stem/conv2d/kernel")})
    if len(scopes) != 1:
        sample = ", ".join(sorted(store.plain_names())[:3])
        raise ValueError(f"{store.description!r} holds {len(scopes) or 'no'} EfficientNet stem"
                         f"{'s' if len(scopes) != 1 else ''} ({', '.join(scopes) or sample}): "
                         "it is not an official EfficientNet or EfficientDet checkpoint")
    return scopes[0]


def _head_alias(name):
    # automl's V2 built in graph mode names the classifier head_1/dense (a re-entered scope).
    return name.replace("/head/dense/", "/head_1/dense/") if "/head/dense/" in name else None


@dataclasses.dataclass
class Plan:
    """What a load will do, decided before any variable is assigned."""

    assignments: List[Tuple[Target, Tuple[str, ...]]]  # (target, the store keys it reads)
    skipped: List[str]  # our layers left as they are, and why
    ignored: List[str]  # checkpoint variables deliberately not read, and why
    problems: List[str]  # what makes the load impossible
    shadows: int = 0  # values read from EMA shadows
    names: int = 0  # official names read


def plan(model, spec, store):
    """The Plan of loading `store` into `model` (built from `spec`)."""
    scope = checkpoint_scope(store)
    detector = isinstance(spec, registry.DetectionSpec)
    targets = (detector_targets(model, spec, scope) if detector
               else classifier_targets(model, spec, scope))
    available = store.plain_names()
    backbone_only = detector and not any(name.startswith("fpn_cells/") for name in available)
    result = Plan([], [], [], [])
    used, missing, shapes = set(), [], []
    reinitialised = {}
    for target in targets:
        if backbone_only and not target.names[0].startswith(f"{scope}/"):
            reinitialised.setdefault(target.layer, "the checkpoint is a classifier's: only the "
                                     "backbone is loaded")
            continue
        names = []
        for name in target.names:
            alias = _head_alias(name)
            names.append(name if name in available else alias if alias in available else None)
        if None in names:
            if target.head:  # a headless file (a converted backbone): a fresh classifier
                reinitialised.setdefault(target.layer,
                                         "not in the file: left freshly initialised")
            else:
                missing.extend(name for name, found in zip(target.names, names) if not found)
            continue
        used.update(names)
        expected = ((),) * len(names) if target.stacked else (tuple(target.variable.shape),)
        found_shapes = tuple(store.shapes[store.key_of(name)] for name in names)
        if found_shapes != expected:
            if target.head:
                reinitialised.setdefault(target.layer, (
                    f"{names[0]} is {found_shapes[0]} in the file, {expected[0]} here: another "
                    "number of classes; left freshly initialised"))
                continue
            shapes.append(f"{names[0]}: {found_shapes[0]} in the file, {expected[0]} in "
                          f"{target.layer}")
            continue
        result.assignments.append((target, tuple(store.key_of(name) for name in names)))
    # A layer that is partly re-initialised is entirely re-initialised.
    result.assignments = [(t, keys) for t, keys in result.assignments
                          if t.layer not in reinitialised]
    result.skipped = [f"{layer} ({why})" for layer, why in reinitialised.items()]
    unexpected = []
    for name in sorted(available - used):
        if name.startswith(f"{scope}/head/") or name.startswith(f"{scope}/head_1/"):
            if backbone_only or not _optional(model, "predictions"):
                continue  # a classifier's head, which this model does not have
        unexpected.append(name)
    if missing:
        result.problems.append(f"{len(missing)} variables of the model are not in it (first: "
                               f"{', '.join(missing[:3])})")
    if unexpected:
        result.problems.append(f"{len(unexpected)} of its variables have no place in the "
                               f"model (first: {', '.join(unexpected[:3])})")
    if shapes:
        result.problems.append(f"{len(shapes)} shapes differ (first: {'; '.join(shapes[:2])})")
    covered = {id(target.variable) for target in targets}
    unfilled = [w.path for w in model.weights if id(w) not in covered]
    if unfilled:
        result.problems.append(f"{len(unfilled)} model variables have no official name "
                               f"(first: {', '.join(unfilled[:3])})")
    result.ignored = sorted(set(store.shapes) - {key for _, keys in result.assignments
                                                 for key in keys})
    result.names = sum(len(keys) for _, keys in result.assignments)
    result.shadows = sum(key.endswith(SHADOW) for _, keys in result.assignments for key in keys)
    return result


def load(model, spec, store):
    """Loads `store` (an official checkpoint or .h5) into `model`, built from `spec`, after
    checking everything; returns (layers loaded, layers skipped with why, EMA note)."""
    result = plan(model, spec, store)
    if result.problems:
        raise ValueError(f"{store.description!r} does not fit {spec.name} (checkpoint scope "
                         f"{checkpoint_scope(store)!r}): {'; '.join(result.problems)}")
    for target, keys in result.assignments:
        values = [np.asarray(store.read(key)) for key in keys]
        value = np.stack([v.reshape(()) for v in values]) if target.stacked else values[0]
        target.variable.assign(value.astype(np.float32))
    ema = (f"EMA shadows for {result.shadows} of {result.names} values" if result.shadows
           else "no EMA shadows in the file: its plain values")
    loaded = sorted({target.layer for target, _ in result.assignments})
    logging.info("%s: %d layers of %s loaded (%s); skipped: %s", store.description,
                 len(loaded), model.name, ema, "; ".join(result.skipped) or "nothing")
    return loaded, result.skipped, ema



def targets_of(model, spec, scope=None):
    """Every target of `model` (built from `spec`) under the official `scope` (default: the
    variant's own name, a detector's backbone's)."""
    if isinstance(spec, registry.DetectionSpec):
        return detector_targets(model, spec, scope or spec.backbone)
    return classifier_targets(model, spec, scope or spec.name)


def checkpoint_classes(store, spec):
    """The number of classes of the checkpoint's classifier or class predictor (None: it has
    none), so that a model can be built to hold it whole."""
    names = store.plain_names()
    if isinstance(spec, registry.DetectionSpec):
        name = "class_net/class-predict/bias"
        if name not in names:
            return None
        anchors = efficientdet.anchor_settings(spec).per_location
        return store.shapes[store.key_of(name)][-1] // anchors
    scope = checkpoint_scope(store)
    for name in (f"{scope}/head/dense/bias", f"{scope}/head_1/dense/bias"):
        if name in names:
            return store.shapes[store.key_of(name)][-1]
    return None


def save_h5(model, spec, path, attributes):
    """Writes `model`'s variables under their official names as an .h5 of automl's EfficientDet
    layout (one group per top scope, `weight_names` with ':0'), which open_h5 reads back (and
    tf_keras loads into automl's EfficientDetNet). `attributes` (JSON values) describe it: the
    model, its input scaling, classes, where the weights came from."""
    values = {}
    for target in targets_of(model, spec):
        value = np.asarray(target.variable, np.float32)
        if target.stacked:
            values.update(zip(target.names, value.reshape(-1)))
        else:
            values[target.names[0]] = value
    groups = {}
    for name in values:
        groups.setdefault(name.split("/", 1)[0], []).append(name)
    with tempfile.TemporaryDirectory() as scratch:  # h5py writes local files; copied after
        local = f"{scratch}/weights.h5"
        with h5py.File(local, "w") as h5file:  # local: a scratch file
            h5file.attrs["layer_names"] = [group.encode() for group in groups]
            h5file.attrs["efficientnet_tf"] = json.dumps(attributes)
            for group_name, names in groups.items():
                group = h5file.create_group(group_name)
                group.attrs["weight_names"] = [f"{name}:0".encode() for name in names]
                for name in names:
                    group.create_dataset(f"{name}:0", data=np.asarray(values[name], np.float32))
        tf.io.gfile.copy(local, path, overwrite=True)
    return path


def h5_attributes(path):
    """What save_h5 recorded in a file ({} for automl's own .h5 files)."""
    with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as h5file:
        text = h5file.attrs.get("efficientnet_tf")
    return json.loads(text) if text else {}
