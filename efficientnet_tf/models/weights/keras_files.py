"""Loads the weight files that keras.applications publishes (and our own) into our models.

Two formats are read, both through tf.io.gfile (so `gs://` paths work):
- legacy Keras 2 HDF5 (`efficientnetb0.h5`, `efficientnetv2-s_notop.h5`): groups named by layer;
- Keras 3 `.weights.h5` saved from a keras.applications model: groups named by layer CLASS and
  creation order (`layers/conv2d_7/vars/0`), not by layer name. Our blocks create their sublayers
  in keras.applications' order, so the i-th Conv2D of our model is the i-th of theirs.

A file that does not fit the model is an error before any variable is touched: a model is never
left half loaded. Only the classifier may be missing from the file or differ in size (fine-tuning
on another number of classes); that is reported, not hidden.
"""

import collections
import dataclasses
import os
import re
from typing import List

import h5py
import tensorflow as tf
from absl import logging

CLASSIFIER = "predictions"
HEAD_LAYERS = {"conv2d": "top_conv", "batch_normalization": "top_bn", "dense": CLASSIFIER}
# keras.applications' input Normalization layer (auto-named, so `normalization_3` in a session
# that built several models): our model folds it into its constant `normalize` layer.
_IGNORED = re.compile(r"normalization(_\d+)?")


@dataclasses.dataclass
class LoadReport:
    """What a load did: layers assigned, model layers left alone (and why), and notes (which
    values were read: EMA shadows or plain ones)."""

    loaded: List[str]
    skipped: List[str]
    notes: List[str] = dataclasses.field(default_factory=list)

    def __str__(self):
        text = f"loaded {len(self.loaded)} layers"
        if self.notes:
            text += f" ({'; '.join(self.notes)})"
        return text + (f"; skipped: {'; '.join(self.skipped)}" if self.skipped else "")


# Where keras.applications publishes its ImageNet files (keras/src/applications/efficientnet.py
# and efficientnet_v2.py, BASE_WEIGHTS_PATH).
V1_URL = "https://storage.googleapis.com/keras-applications/"
V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"


def keras_file_name(spec, include_top=True):
    """File name keras.applications gives the ImageNet weights of `spec` (None if it has none)."""
    v1 = {f"efficientnet-b{i}": f"efficientnetb{i}" for i in range(8)}
    v2 = {f"efficientnetv2-{s}": f"efficientnetv2-{s}"
          for s in ("b0", "b1", "b2", "b3", "s", "m", "l")}
    stem = v1.get(spec.name) or v2.get(spec.name)
    if stem is None:
        return None
    return f"{stem}.h5" if include_top else f"{stem}_notop.h5"


def keras_file_url(spec, include_top=True):
    """(URL, file name) of keras.applications' ImageNet weights of `spec`, or a clear error."""
    file_name = keras_file_name(spec, include_top)
    if file_name is None:
        raise ValueError(f"keras.applications publishes no ImageNet weights for {spec.name!r}; "
                         "pass an official checkpoint (efficientnet-tf info --weights lists "
                         "them), the path of a weights file, or None")
    base = V1_URL if spec.family == "efficientnet" else V2_URL
    return base + file_name, file_name


def keras_cache_dir():
    """Keras's own cache of downloaded files ($KERAS_HOME/models, ~/.keras/models)."""
    home = (os.environ.get("KERAS_HOME")
            or os.path.join(os.path.expanduser("~"), ".keras"))  # local: the user's home
    return f"{home.rstrip('/')}/models"


def _keras_class_name(layer):
    """Keras 3's group name stem for `layer`: its Keras base class in snake case (our BatchNorm
    subclass is saved by keras.applications as a `batch_normalization`)."""
    keras_class = next(c for c in type(layer).__mro__ if c.__module__.startswith("keras."))
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", keras_class.__name__)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def weighted_layers(layer):
    """The leaf layers holding weights under `layer`, in creation order (depth first)."""
    for sublayer in layer._flatten_layers(include_self=False, recursive=False):
        children = sublayer._flatten_layers(include_self=False, recursive=False)
        if children:
            yield from weighted_layers(sublayer)
        elif sublayer.weights:
            yield sublayer


def _our_name(keras_name):
    # keras.applications V2 calls the depthwise conv `dwconv2`; we call it `dwconv` in both.
    return re.sub(r"_dwconv2$", "_dwconv", keras_name)


def _read_legacy(h5file):
    group = h5file["model_weights"] if "model_weights" in h5file else h5file
    arrays = collections.OrderedDict()
    for raw_name in group.attrs["layer_names"]:
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        weight_names = [w.decode() if isinstance(w, bytes) else w
                        for w in group[name].attrs.get("weight_names", [])]
        if weight_names:
            arrays[name] = [group[name][w][()] for w in weight_names]
    return arrays


def _read_keras3(h5file, model):
    """Keras 3 files name groups by class and order; name them after our model's layers."""
    names_by_class = collections.defaultdict(list)
    for layer in weighted_layers(model):
        names_by_class[_keras_class_name(layer)].append(layer.name)
    for class_name, head_name in HEAD_LAYERS.items():
        if head_name not in names_by_class[class_name]:
            names_by_class[class_name].append(head_name)
    entries = collections.defaultdict(list)
    for group_name, group in h5file["layers"].items():
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", group_name)
        variables = group.get("vars")
        if variables is None or not len(variables):
            continue
        values = [variables[str(i)][()] for i in range(len(variables))]
        entries[match.group(1)].append((int(match.group(2) or 0), values))
    arrays = collections.OrderedDict()
    for class_name, indexed in entries.items():
        indexed.sort(key=lambda item: item[0])
        if _IGNORED.fullmatch(class_name):
            continue
        names = names_by_class.get(class_name, [])
        if len(indexed) > len(names):
            raise ValueError(f"the file has {len(indexed)} {class_name} layers and "
                             f"{model.name} has {len(names)}: it holds another variant")
        for name, (_, values) in zip(names, indexed):
            arrays[name] = values
    return arrays


def read_keras_applications_file(path, model):
    """{keras.applications layer name: [arrays]} from a legacy .h5 or a Keras 3 .weights.h5."""
    try:
        with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as h5file:
            if "layers" in h5file and "layer_names" not in h5file.attrs:
                return _read_keras3(h5file, model)
            if "layer_names" in h5file.attrs or "model_weights" in h5file:
                return _read_legacy(h5file)
            raise ValueError(f"{path!r} is an HDF5 file but not a Keras weights file "
                             "(no 'layer_names' attribute and no 'layers' group)")
    except (OSError, KeyError) as error:
        raise ValueError(f"cannot read weights file {path!r}: {error}; it is truncated, "
                         "damaged or not a Keras .h5 / .weights.h5 file") from error


def load_keras_applications_weights(model, path):
    """Assigns the weights in `path` to `model`; returns a LoadReport. Checks everything first."""
    arrays = read_keras_applications_file(path, model)
    ours = {layer.name: layer for layer in weighted_layers(model)}
    assignments, skipped = [], []
    for keras_name, values in arrays.items():
        if _IGNORED.fullmatch(keras_name):
            continue  # our normalization is a constant of the family, not a weight
        name = _our_name(keras_name)
        layer = ours.get(name)
        if layer is None:
            if name in HEAD_LAYERS.values():
                skipped.append(f"{name} (not in this headless model)")
                continue
            raise ValueError(f"weights file {path!r} has layer {keras_name!r} that {model.name} "
                             "does not have: the file holds another variant")
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(v.shape) for v in values]
        if expected != found:
            if name == CLASSIFIER and len(expected) == len(found):
                skipped.append(f"{name} (file shapes {found}, model {expected}: "
                               "classifier left freshly initialised)")
                continue
            raise ValueError(f"weights file {path!r}, layer {keras_name!r}: shapes {found} do not "
                             f"fit {model.name}'s {expected}: the file holds another variant")
        assignments.append((layer, values))
    assigned = {layer.name for layer, _ in assignments}
    missing = [name for name in ours if name not in assigned]
    if CLASSIFIER in missing:
        missing.remove(CLASSIFIER)
        if not any(s.startswith(CLASSIFIER) for s in skipped):
            skipped.append(f"{CLASSIFIER} (not in the file: classifier left freshly initialised)")
    if missing:
        raise ValueError(f"weights file {path!r} lacks {len(missing)} layers of {model.name} "
                         f"(first: {missing[:3]}): it holds another variant or is incomplete")
    for layer, values in assignments:
        layer.set_weights(values)
    report = LoadReport(loaded=sorted(assigned), skipped=skipped)
    logging.info("weights from %s: %s", path, report)
    return report


def load_weights(model, path):
    """Loads a keras.applications file or our own .weights.h5 at `path` into `model`."""
    if _is_our_keras3_file(path):
        model.load_weights(path)
        return LoadReport(loaded=[layer.name for layer in weighted_layers(model)], skipped=[])
    return load_keras_applications_weights(model, path)


def load_into_detector(model, backbone_spec, path):
    """Loads a keras.applications (or our) weights file of a detector's backbone row into the
    detector `model`'s backbone layers (they carry the backbone's names). The file is read into
    a backbone of its own first, so its checks (every layer present, every shape right) are the
    classifier's."""
    from efficientnet_tf.models import efficientnet  # imported here: efficientnet needs no weights

    backbone = efficientnet.build(backbone_spec, features_only=True,
                                  input_shape=tuple(model.input.shape[1:]))
    report = load_weights(backbone, path)
    for layer in backbone.layers:  # the stem and the blocks, by their names in the detector
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return LoadReport(report.loaded, report.skipped + [
        "the BiFPN and heads (the file is a backbone's: left freshly initialised)"])


def _is_our_keras3_file(path):
    if not path.endswith(".weights.h5"):
        return False
    try:
        with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as h5file:
            groups = list(h5file["layers"]) if "layers" in h5file else []
    except OSError as error:
        raise ValueError(f"cannot read weights file {path!r}: {error}; it is truncated, damaged "
                         "or not a Keras .weights.h5 file") from error
    return any(name.startswith(("mb_conv", "fused_mb_conv")) for name in groups)
