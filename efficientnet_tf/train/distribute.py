"""The tf.distribute strategy from flags and environment: TPU, mirrored, multi-worker, CPU.

--tpu=NAME|local|grpc://HOST:PORT -> TPUStrategy (pods included); TF_CONFIG -> MultiWorkerMirrored;
several GPUs -> Mirrored; else the default strategy. Also: which replica is the chief, and the
precision and XLA settings that follow from the hardware.
"""

import json
import os
import socket

import tensorflow as tf
from absl import logging

from efficientnet_tf.train import tpu_runtime


class StrategyError(ValueError):
    """A strategy that cannot be set up, in one line that says what was tried."""


class NoTPUError(StrategyError):
    """--tpu names no TPU that answers: the machine's state, not the command's (exit code 1)."""

    EXIT_CODE = 1


def _unreachable(resolver, timeout):
    """The TPU workers of `resolver` that do not accept a TCP connection within `timeout` s.

    TensorFlow's connect_to_cluster retries an address that does not answer forever; this check
    turns a wrong --tpu into an error instead of a hang.
    """
    failed = []
    for address in resolver.cluster_spec().as_dict().get("worker", []):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except (OSError, ValueError) as error:
            failed.append(f"{address} ({getattr(error, 'strerror', None) or error})")
    return failed


def _tpu_strategy(tpu, connect_timeout=20.0):
    """TPUStrategy on the TPU VM's own chips ('local') or a pod slice by name (host 0 reaches
    every host's TensorFlow server; resolving a name asks the Cloud TPU API through TensorFlow's
    own client, which needs google-api-python-client and oauth2client).
    TPU Nodes (end of life April 2025) are not supported."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu not in ("local", ""):
            failed = _unreachable(resolver, connect_timeout)
            if failed:
                raise ConnectionError(f"cannot connect to {', '.join(failed)}")
            tf.config.experimental_connect_to_cluster(resolver)
        topology = tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # resolver, network and runtime failures all mean: no TPU here
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise NoTPUError(
            f"no TPU found for --tpu={tpu!r} (tried TPUClusterResolver(tpu={tpu!r}) and "
            f"initialize_tpu_system): {first_line}. On a single-host TPU VM use --tpu=local; "
            "on a pod slice run on host 0 with the TPU's name (resolving it needs "
            "`pip install google-api-python-client oauth2client`, and roles/tpu.viewer for "
            "the VM's service account); without a TPU leave --tpu unset") from None
    strategy = tf.distribute.TPUStrategy(resolver)
    # Printed at start, beside the stage table: what the run really runs on.
    logging.info("TPU software: %s", tpu_runtime.describe_software())
    logging.info(describe_topology(topology))
    return strategy


def describe_topology(topology):
    """One line for a tf.tpu.experimental.Topology: cores, hosts, cores per host, mesh."""
    cores = topology.num_tpus_per_task * topology.num_tasks
    return (f"TPU topology: {cores} cores on {topology.num_tasks} host(s), "
            f"{topology.num_tpus_per_task} cores per host, mesh "
            f"{[int(d) for d in topology.mesh_shape]}")


def resolve(tpu=None, num_gpus=None):
    """The strategy for this process. `num_gpus` None uses every visible GPU."""
    if tpu:
        return _tpu_strategy(tpu)
    if os.environ.get("TF_CONFIG"):
        cluster = check_tf_config(os.environ["TF_CONFIG"])
        if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus is not None:
        gpus = gpus[:num_gpus]
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def check_tf_config(text):
    """The cluster of a TF_CONFIG (JSON), or a StrategyError saying what is wrong with it."""
    example = ('e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({error}); {example}") from None
    cluster = parsed.get("cluster") if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(k) for k in ("worker", "chief")):
        raise StrategyError(f"TF_CONFIG has no cluster with workers; {example}")
    task = parsed.get("task", {})
    task_type, index = task.get("type"), task.get("index")
    if task_type not in ("worker", "chief") or not isinstance(index, int) or not (
            0 <= index < len(cluster.get(task_type, []))):
        raise StrategyError(f"TF_CONFIG task {task!r} is not one of the cluster's "
                            f"{', '.join(f'{k} 0..{len(v) - 1}' for k, v in cluster.items())}; "
                            f"{example}")
    return cluster


def num_hosts(strategy):
    if is_tpu(strategy):
        return strategy.extended.num_hosts
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        spec = strategy.cluster_resolver.cluster_spec().as_dict()
        return len(spec.get("worker", [])) + len(spec.get("chief", []))
    return 1


def describe_xla(jit_compile, strategy):
    """'on', 'off' or 'implicit (TPU)', for the start-of-run line."""
    if is_tpu(strategy):
        return "implicit (TPU)"
    return "on" if jit_compile else "off"


def describe(strategy):
    """One line: the strategy, its replicas and hosts."""
    return (f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) on "
            f"{num_hosts(strategy)} host(s)")


def is_tpu(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy,))


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker(strategy):
    """(index, count) of this process among the processes that run the program.

    Multi-worker runs have one process per host; TPU pods are driven by one client process.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", []))
    index = resolver.task_id + (chiefs if resolver.task_type == "worker" else 0)
    return index, chiefs + len(spec.get("worker", []))


def check_batch(global_batch, strategy):
    """The per-replica batch, or a clear error when the global batch does not divide."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise StrategyError(
            f"global batch {global_batch} does not divide by the {replicas} replicas; use a "
            f"multiple of {replicas} (e.g. {max(replicas, global_batch // replicas * replicas)})")
    return global_batch // replicas


def precision_policy(setting, strategy):
    """`setting`, or for None (decided here): mixed_bfloat16 on TPU, mixed_float16 on GPU,
    float32 on CPU."""
    if setting is not None:
        return setting
    if is_tpu(strategy):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


def use_xla(setting, strategy):
    """Whether to wrap the replica step in tf.function(jit_compile=True): on GPU as the setting
    says (None = on); never on CPU (several times slower for depthwise convolutions there);
    never on TPU, where every replicated step is compiled by XLA already and an explicit
    jit_compile inside TPUStrategy.run is a known source of failures."""
    if is_tpu(strategy):
        return False
    if not tf.config.list_logical_devices("GPU"):
        if setting is True:
            logging.warning("jit_compile requested on CPU: ignored, XLA is several times slower "
                            "for depthwise convolutions on CPU")
        return False
    return setting in (True, None)


BN_SYNC_RULES = ("none", "all", "v1", "v2")


def batch_norm_groups(setting, strategy):
    """(synchronized, group size, description) of config model.bn_sync on this strategy.

    none: each replica normalizes with its own batch; all: with the whole global batch; N: over
    groups of N consecutive replicas; v1 / v2: the official codes' rules, which group only on
    TPU -- tensorflow/tpu utils.TpuBatchNormalization: per replica up to 8 replicas, else groups
    of max(8, replicas // 8); google/automl efficientnetv2 utils: groups of min(8, replicas).
    Group size 0 means all replicas.
    """
    replicas = strategy.num_replicas_in_sync
    setting = str(setting).strip().lower()
    if setting not in BN_SYNC_RULES and not setting.isdigit():
        raise StrategyError(f"config.model.bn_sync is {setting!r}; use none, all, v1, v2 or a "
                            "number of replicas per group")
    rule = ""
    if setting in ("v1", "v2"):
        rule = f" (official {setting.upper()} rule)"
        if not is_tpu(strategy):
            group = 1
        elif setting == "v1":
            group = 1 if replicas <= 8 else max(8, replicas // 8)
        else:
            group = min(8, replicas)
    else:
        group = {"none": 1, "all": replicas}.get(setting) or int(setting)
    if group < 1 or replicas % group:
        raise StrategyError(f"batch-norm groups of {group} replicas do not divide the {replicas} "
                            f"replicas; use a divisor of {replicas}")
    if group == 1:
        return False, 0, f"batch norm per replica{rule}"
    if group == replicas:
        return True, 0, f"batch norm synchronized over all {replicas} replicas{rule}"
    return True, group, f"batch norm synchronized over groups of {group} replicas{rule}"
