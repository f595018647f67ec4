"""Official checkpoints read and written by name: TF1 bundles, automl's EfficientDet .h5.

The official releases are TF1 name-based checkpoints (a tf.compat.v1 Saver's bundle); automl also
publishes EfficientDet as tf_keras `.h5` files with the same names. A Store holds a file's
names and shapes; plan() matches them with our model's (names.py: derived from its structure)
and checks everything before load() assigns anything: every model variable found with its
shape, every checkpoint variable used or deliberately left (the plain values beside EMA
shadows, optimizer slots, global_step, a classifier head the model lacks or of another size).
EMA shadows (`<name>/ExponentialMovingAverage`) are read where present, as the official
evaluation does. save_h5 writes a model back under the official names (`convert`).
"""

import dataclasses
import json
import re
import tempfile
from typing import List, Tuple

import h5py
import numpy as np
import tensorflow as tf
from absl import logging

from efficientnet_tf.models.weights.names import Target, optional_layer, targets_of
from efficientnet_tf.specs import registry

SHADOW = "/ExponentialMovingAverage"
# Optimizer slots the official trainers leave beside each variable (RMSProp: V1/V2; Momentum:
# EfficientDet's SGD; Adam for fine-tuned files), and the step counter.
SLOT_SUFFIXES = ("/RMSProp", "/RMSProp_1", "/Momentum", "/Adam", "/Adam_1")
BOOKKEEPING = ("global_step",)
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


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
    problems: List[str]  # what makes the load impossible
    unused_head: bool = False  # the file's classifier head, which the model does not have

    @property
    def keys(self):
        return [key for _, keys in self.assignments for key in keys]


def _match(target, store, available):
    """("assign", store keys) for a target, ("fresh", why) for a class predictor that stays
    fresh, ("missing", names) or ("shape", what differs)."""
    names = []
    for name in target.names:
        alias = _head_alias(name)
        names.append(name if name in available else alias if alias in available else None)
    if None in names:
        if target.head:  # a headless file (a converted backbone): a fresh classifier
            return "fresh", "not in the file: left freshly initialised"
        return "missing", [name for name, found in zip(target.names, names) if not found]
    expected = ((),) * len(names) if target.stacked else (tuple(target.variable.shape),)
    found = tuple(store.shapes[store.key_of(name)] for name in names)
    if found == expected:
        return "assign", tuple(store.key_of(name) for name in names)
    if target.head:
        return "fresh", (f"{names[0]} is {found[0]} in the file, {expected[0]} here: another "
                         "number of classes; left freshly initialised")
    return "shape", f"{names[0]}: {found[0]} in the file, {expected[0]} in {target.layer}"


def plan(model, spec, store):
    """The Plan of loading `store` into `model` (built from `spec`): every model variable found
    with its shape, every checkpoint variable used or deliberately left (EMA decoys, slots,
    global_step, a classifier head the model lacks)."""
    scope = checkpoint_scope(store)
    targets = targets_of(model, spec, scope)
    available = store.plain_names()
    # A detector from a classifier checkpoint: the backbone only.
    backbone_only = (isinstance(spec, registry.DetectionSpec)
                     and not any(name.startswith("fpn_cells/") for name in available))
    result, fresh, missing, shapes = Plan([], [], []), {}, [], []
    for target in targets:
        if backbone_only and not target.names[0].startswith(f"{scope}/"):
            fresh.setdefault(target.layer, "the checkpoint is a classifier's: only the "
                             "backbone is loaded")
            continue
        outcome, detail = _match(target, store, available)
        if outcome == "assign":
            result.assignments.append((target, detail))
        elif outcome == "fresh":
            fresh.setdefault(target.layer, detail)
        elif outcome == "missing":
            missing += detail
        else:
            shapes.append(detail)
    # A layer partly left fresh is left fresh whole (a predictor's kernel and bias).
    result.assignments = [(t, keys) for t, keys in result.assignments if t.layer not in fresh]
    result.skipped = [f"{layer} ({why})" for layer, why in fresh.items()]
    # Read, or deliberately left: the names of the layers left fresh.
    used = {key[: -len(SHADOW)] if key.endswith(SHADOW) else key for key in result.keys}
    used |= {name for target in targets if target.layer in fresh for name in target.names}
    used |= {name.replace("/head/dense/", "/head_1/dense/") for name in used}
    unexpected = []
    for name in sorted(available - used):
        head = name.startswith((f"{scope}/head/", f"{scope}/head_1/"))
        if head and (backbone_only or not optional_layer(model, "predictions")):
            result.unused_head = True  # a classifier's head, which this model does not have
        else:
            unexpected.append(name)
    covered = {id(target.variable) for target in targets}
    unfilled = [w.path for w in model.weights if id(w) not in covered]
    for count, text, examples in (
            (len(missing), "variables of the model are not in it", missing),
            (len(unexpected), "of its variables have no place in the model", unexpected),
            (len(shapes), "shapes differ", shapes),
            (len(unfilled), "model variables have no official name", unfilled)):
        if count:
            result.problems.append(f"{count} {text} (first: {'; '.join(examples[:3])})")
    return result


def load(model, spec, store):
    """Loads `store` (an official checkpoint or .h5) into `model`, built from `spec`, after
    checking everything; returns (layers loaded, layers skipped with why, a note on what was
    read)."""
    result = plan(model, spec, store)
    if result.problems:
        raise ValueError(f"{store.description!r} does not fit {spec.name} (checkpoint scope "
                         f"{checkpoint_scope(store)!r}): {'; '.join(result.problems)}")
    for target, keys in result.assignments:
        values = [np.asarray(store.read(key)) for key in keys]
        value = np.stack([v.reshape(()) for v in values]) if target.stacked else values[0]
        target.variable.assign(value.astype(np.float32))
    keys = result.keys
    shadows = sum(key.endswith(SHADOW) for key in keys)
    note = (f"EMA shadows for {shadows} of {len(keys)} values" if shadows
            else "no EMA shadows in the file: its plain values")
    if result.unused_head:
        note += "; the file's classifier head is not used (the model has none)"
    loaded = sorted({target.layer for target, _ in result.assignments})
    ignored = len(store.shapes) - len(keys)
    logging.info("%s: %d layers of %s loaded (%s); %d other variables of the file (plain "
                 "values beside their shadows, optimizer slots, global_step) not read; "
                 "skipped: %s", store.description, len(loaded), model.name, note, ignored,
                 "; ".join(result.skipped) or "nothing")
    return loaded, result.skipped, note


def checkpoint_classes(store, spec):
    """The number of classes of the checkpoint's classifier or class predictor (None: it has
    none), so that a model can be built to hold it whole."""
    names = store.plain_names()
    if isinstance(spec, registry.DetectionSpec):
        name = "class_net/class-predict/bias"
        if name not in names:
            return None
        return store.shapes[store.key_of(name)][-1] // spec.anchors_per_location
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
    with tempfile.TemporaryDirectory() as scratch:  # local: h5py writes local files
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
