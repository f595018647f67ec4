"""Shared test setup: quiet TensorFlow, a `slow` marker, fresh Keras state per test."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/imagedata.py, trainutil.py

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from imagedata import photo, write_folder  # noqa: E402

# Two logical CPU devices, so that MirroredStrategy runs real replicas in the same process. This
# must happen before TensorFlow initialises its devices, i.e. before any test touches a tensor.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
# Same ops, same order, same numbers on every run: a test that trains gives one verdict (its
# seeds are fixed by the fixture below and by the configs it trains with).
tf.config.experimental.enable_op_determinism()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long test, run by .ci/run after the default suite "
                                       "(select with -m slow)")
    config.addinivalue_line("markers", "release: an end-to-end demo too long for every CI run "
                                       "(also slow); run before a release: -m release")
    # Keras/TensorFlow internals warn about NumPy 2 copy semantics on every tensor conversion.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation:DeprecationWarning")


# The files whose tests take longest in the slow tier (.ci/run's durations), longest first.
# pytest-xdist's --dist loadfile hands whole files to its workers in collection order, so a
# long file collected last leaves the other worker idle while it runs: these go first.
LONGEST_FIRST = ("test_scripts.py", "scaling/test_search.py", "detection/test_adapt.py",
                 "classification/test_adapt.py", "test_chaos.py", "test_experiments.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith("/" + name)),
                    len(LONGEST_FIRST))
    items.sort(key=rank)  # stable: every other test keeps its order


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


# Image folders written by the tests: real photos and broken files.
@pytest.fixture
def image_folder(tmp_path):
    return write_folder(tmp_path / "images")


@pytest.fixture
def messy_folder(tmp_path):
    """Good images in every supported format and color model, plus three broken files."""
    root = write_folder(tmp_path / "messy", per_class=2, classes=("astronaut", "coffee"))
    gray = Image.fromarray(photo("coffee", (60, 40))).convert("L")
    gray.save(root / "coffee" / "gray.png")
    Image.fromarray(photo("astronaut", (60, 40))).convert("CMYK").save(
        root / "astronaut" / "cmyk.jpg")
    Image.fromarray(photo("coffee", (60, 40))).save(root / "coffee" / "frame.gif")
    Image.fromarray(photo("astronaut", (60, 40))).save(root / "astronaut" / "bitmap.bmp")
    Image.fromarray(photo("coffee", (60, 40))).convert("RGBA").save(root / "coffee" / "alpha.png")
    (root / "coffee" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    (root / "astronaut" / "empty.png").write_bytes(b"")
    good = (root / "coffee" / "0.jpg").read_bytes()
    (root / "astronaut" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "astronaut" / "notes.txt").write_text("not an image, not listed")
    return root
