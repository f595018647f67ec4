"""Timing shared by the benchmark scripts (imported from scripts/, which `python scripts/X.py`
puts first on the path): callables timed in turn on the same input, medians compared."""

import statistics
import time

import numpy as np
import tensorflow as tf


def timed(function, inputs):
    """Seconds of one call of `function(inputs)`, its outputs brought to host memory."""
    start = time.perf_counter()
    tf.nest.map_structure(np.asarray, function(inputs))
    return time.perf_counter() - start


def alternating_medians(ours, theirs, inputs, calls):
    """Median seconds per call of each, calling them in turn (ours, theirs, theirs, ours, ...),
    so that both meet the same load; one untimed call of each first (traces, allocations)."""
    medians = medians_in_turn({"ours": ours, "theirs": theirs}, inputs, calls)
    return medians["ours"], medians["theirs"]


def medians_in_turn(functions, inputs, calls):
    """{name: median seconds per call} of several named callables, called in turn, forwards
    then backwards (a, b, c, c, b, a, ...); one untimed call of each first."""
    for function in functions.values():
        timed(function, inputs)
    times = {name: [] for name in functions}
    order = list(functions.items())
    for call in range(calls):
        for name, function in order if call % 2 == 0 else order[::-1]:
            times[name].append(timed(function, inputs))
    return {name: statistics.median(values) for name, values in times.items()}
