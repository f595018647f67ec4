"""Look-alike official checkpoints for the tests: the variable names of the official models, a
value for every variable computed from its name, and the files the official code released.

The data in tests/data/official/ come from the efficientnet_tf project's official-checkpoint
fixtures (their SPEC): `names/<variant>.tsv.gz` lists every variable of the 27 official
architectures, as the official code creates them (tensorflow/tpu 7dc921f846c9 for V1,
google/automl 6a54c8741e7c for V2 and EfficientDet); `refs/*.npz` hold the official code's
outputs for the image below when every variable holds value(name); `checks.json` pins the
value function and the images bit for bit.

value(): seed = CRC-32 of the key; splitmix64 of (seed, element index) -> 24 random bits -> an
odd multiple of 2^-24 in (-1, 1) -> a per-leaf affine or ratio map (kernels scaled by their fan
in, BN variances in [0.25, 4]) in float64 -> float32. A decoy (the plain value beside an EMA
shadow) uses the key `name + "#decoy"`.
"""

import gzip
import json
import os
import tarfile
import zlib

import numpy as np
import tensorflow as tf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "official")
SHADOW = "/ExponentialMovingAverage"
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def names(variant):
    """[(name, shape)] of the official `variant` (e.g. 'efficientdet-d0'), in the file's order."""
    with gzip.open(os.path.join(DATA, "names", f"{variant}.tsv.gz"), "rt",  # local: test data
                   encoding="utf-8") as stream:
        rows = [line.rstrip("\n").split("\t") for line in stream][1:]
    return [(name, tuple(json.loads(shape))) for name, shape in rows]


def variants():
    return sorted(f[: -len(".tsv.gz")] for f in os.listdir(os.path.join(DATA, "names")))


def references(generated=False):
    """{id: description} of the fixtures' references; `generated`: those made here with the
    official code (generated/README.md), beyond the fixtures' sizes and scalings."""
    folder = os.path.join(DATA, "generated") if generated else DATA
    with open(os.path.join(folder, "references.json"), encoding="utf-8") as stream:  # local
        return json.load(stream)


def reference_arrays(reference_id):
    path = os.path.join(DATA, "refs", f"{reference_id}.npz")
    if not os.path.exists(path):  # local: test data
        path = os.path.join(DATA, "generated", f"{reference_id}.npz")
    with np.load(path) as arrays:  # local: test data
        return {key: arrays[key] for key in arrays.files}


def checks():
    with open(os.path.join(DATA, "checks.json"), encoding="utf-8") as stream:  # local
        return json.load(stream)


def uniform_bits(key, count):
    """k (24-bit integers) of the first `count` elements of `key`: splitmix64 of its CRC-32."""
    seed = np.uint64(zlib.crc32(key.encode("utf-8")))
    index = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (seed + index * np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(40)


def value(name, shape, decoy=False):
    """The float32 array the fixtures give the variable `name` of `shape`."""
    count = int(np.prod(shape)) if shape else 1
    k = uniform_bits(name + "#decoy" if decoy else name, count).astype(np.float64)
    u = (2.0 * k + 1.0 - 2.0 ** 24) / 2.0 ** 24
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("kernel", "pointwise_kernel"):
        v = u * np.sqrt(2.1 / float(np.prod(shape[:-1])))
    elif leaf == "depthwise_kernel":
        v = u * np.sqrt(15.0 / float(shape[0] * shape[1]))
    elif leaf == "gamma" or leaf == "WSM" or leaf.startswith("WSM_"):
        v = 1.0 + 0.5 * u
    elif leaf in ("beta", "moving_mean", "bias"):
        v = 0.5 * u
    elif leaf == "moving_variance":
        v = (1.0 + 0.6 * u) / (1.0 - 0.6 * u)
    else:
        raise ValueError(f"no value rule for {name!r}")
    return v.astype(np.float32).reshape(shape)


def image(height, width):
    """The fixtures' test image: float32 [1, height, width, 3] in [0, 255]."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((37 * y + 101 * x + 59 * c + 7 * x * y) % 256).astype(np.float32)[None]


def checkpoint_values(variant_names, layout="ema", slots=(), classes=None):
    """{key: array} of a look-alike official checkpoint of `variant_names` ([(name, shape)]).

    layout: 'ema' (plain values are decoys, `<name>/ExponentialMovingAverage` holds the value),
    'ema-only' (only the shadows) or 'plain'. slots: optimizer slot suffixes ('RMSProp',
    'Momentum') added for every variable but the moving statistics. classes: a classifier head
    of this many outputs in place of the listed one (the ImageNet-21k heads)."""
    values = {"global_step": np.array(123456, np.int64)}
    for name, shape in variant_names:
        if classes is not None and name.endswith(("head/dense/kernel", "head/dense/bias")):
            shape = shape[:-1] + (classes,)
        real = value(name, shape)
        if layout == "plain":
            values[name] = real
        else:
            values[name + SHADOW] = real
            if layout == "ema":
                values[name] = value(name, shape, decoy=True)
        if not name.endswith(("moving_mean", "moving_variance")):
            for slot in slots:
                values[f"{name}/{slot}"] = np.full(shape, 0.25, np.float32)
    return values


def write_checkpoint(values, prefix):
    """A TF1 name-based checkpoint bundle of `values` at `prefix` (what tf.compat.v1's Saver
    writes, without the graph), and the `checkpoint` state file beside it."""
    keys = sorted(values)
    directory, base = prefix.rsplit("/", 1)
    tf.io.gfile.makedirs(directory)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(values[key]) for key in keys])
    with tf.io.gfile.GFile(f"{directory}/checkpoint", "w") as stream:
        stream.write(f'model_checkpoint_path: "{base}"\nall_model_checkpoint_paths: "{base}"\n')
    return prefix


def pack(directory, archive_path):
    """`directory` as a .tar.gz holding one folder of its name (the official archives' shape)."""
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(directory, arcname=os.path.basename(directory.rstrip("/")))
    return archive_path


def write_detector_h5(values_by_name, path, top_layers):
    """An official EfficientDet .h5 (tf_keras save_weights of EfficientDetNet): one group per
    top-level layer (`top_layers`: the first scope of each name), its `weight_names` the
    variables' names with ':0', each array at that name inside the group."""
    import h5py

    groups = {}
    for name in values_by_name:
        scope = name.split("/", 1)[0]
        groups.setdefault(top_layers.get(scope, scope), []).append(name)
    with h5py.File(path, "w") as h5file:
        h5file.attrs["layer_names"] = [group.encode() for group in groups]
        h5file.attrs["backend"] = b"tensorflow"
        for group_name, members in groups.items():
            group = h5file.create_group(group_name)
            group.attrs["weight_names"] = [f"{name}:0".encode() for name in members]
            for name in members:
                group.create_dataset(f"{name}:0", data=values_by_name[name])
    return path
