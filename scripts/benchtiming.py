"""Timing shared by the benchmark scripts (imported from scripts/, which `python scripts/X.py`
puts first on the path): two callables timed in turn on the same input, medians compared."""

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
    timed(ours, inputs), timed(theirs, inputs)
    times = {"ours": [], "theirs": []}
    for call in range(calls):
        pair = (("ours", ours), ("theirs", theirs))
        for who, function in pair if call % 2 == 0 else pair[::-1]:
            times[who].append(timed(function, inputs))
    return statistics.median(times["ours"]), statistics.median(times["theirs"])
