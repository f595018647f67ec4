"""Shared test setup: quiet TensorFlow, a `slow` marker, fresh Keras state per test."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/imagedata.py, trainutil.py

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

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


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
