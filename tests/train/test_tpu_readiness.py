"""TPU readiness without a TPU: the properties that make the program run on one (issue 8).

XLA-compiled steps give the same losses as the plain ones; every batch has a fully static shape;
the step holds no op a TPU cannot run; bfloat16 flows from the input pipeline through the model
with float32 variables, logits, loss and BN statistics; one trace per stage and eval size.
"""

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.tasks.classification import inputs as inputs_lib
from efficientnet_tf.train import distribute, trainer

from trainutil import tiny_config

# Ops that run on the host only: a TPU program that contains them fails to compile.
HOST_ONLY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "DecodeJpeg", "DecodeAndCropJpeg",
                 "DecodePng", "DecodeImage", "StringFormat", "StringJoin", "AsString",
                 "PrintV2", "Print"}


def two_stage_config(root, **overrides):
    """Two image sizes (24, 32), no dropout or stochastic depth: runs compare exactly."""
    config = tiny_config(root, **{"train.steps": 4, "train.log_every_steps": 2,
                                  "train.checkpoint_every_steps": 4, "model.survival_prob": 1.0,
                                  **overrides})
    config.progressive.num_stages = 2
    config.progressive.image_size_min = 24
    config.progressive.image_size_max = 32
    config.progressive.dropout_min = 0.0
    config.progressive.dropout_max = 0.0
    return config


def build(config, workdir, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    run = trainer.resolve_run(config, strategy)
    return strategy, run, trainer.build_state(run, strategy, workdir)


def graph_ops(concrete):
    """Op types of a concrete function's graph and of every function it calls."""
    graph = concrete.graph.as_graph_def()
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    return nodes


@pytest.mark.slow  # XLA compiles depthwise convolutions slowly on CPU: about 90 s
def test_xla_compiled_steps_give_the_plain_steps_losses(photo_folder, tmp_path):
    """The replica train step (inside the steps_per_loop host loop) and the eval step compiled
    with jit_compile=True on CPU, one compile per stage's image size: same losses as without."""
    results = {}
    for jit in (False, True):
        # A gentle SGD step, so that float rounding differences do not grow chaotically.
        config = two_stage_config(photo_folder, **{"optimizer.lr_per_256": 0.05})
        config.optimizer.name = "sgd"
        strategy, plan, state = build(config, str(tmp_path / f"jit{jit}"))
        state.steps.jit_compile = jit  # plan_run never turns XLA on for a CPU; the test does
        losses = []
        for stage in plan.stages:
            state.task.enter_stage(state.model, stage)
            iterator = trainer.train_iterator(state, stage, state.step)
            train_loop = state.steps.make_train_loop()
            totals = train_loop(iterator, tf.constant(2))  # a 2-step host loop
            losses.append(float(totals["loss"]) / float(totals["examples"]))
            if jit:
                nodes = graph_ops(train_loop.get_concrete_function(iterator, tf.constant(2)))
                assert any(node.attr["_XlaMustCompile"].b for node in nodes)
        losses.append(trainer.evaluate(state)["loss"])
        results[jit] = losses
    assert state.steps.traces == {"train": 2, "eval": 1}
    np.testing.assert_allclose(results[True], results[False], rtol=1e-3)
    assert results[False][0] != results[False][1]  # the second stage trained on new weights


def test_every_training_and_eval_batch_has_a_static_shape(photo_folder, tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = two_stage_config(photo_folder)
    strategy, plan, state = build(config, str(tmp_path), strategy)
    for stage in plan.stages:
        iterator = trainer.train_iterator(state, stage, 0)
        specs = tf.nest.flatten(iterator.element_spec, expand_composites=True)
        assert len(specs) == 4  # images and labels of each of the two replicas
        for spec in specs:
            assert spec.shape.is_fully_defined(), spec
        images, labels = specs[0], specs[2]
        assert images.shape == (4, stage.image_size, stage.image_size, 3)
        assert labels.shape == (4, plan.num_classes)  # one-hot (mixup-ready) labels
    eval_dataset = strategy.distribute_datasets_from_function(
        lambda context: state.task.eval_dataset(context, batch_size=4))
    for spec in tf.nest.flatten(eval_dataset.element_spec, expand_composites=True):
        assert spec.shape.is_fully_defined() and spec.shape[0] == 4, spec


def test_the_step_functions_hold_no_host_only_ops(photo_folder, tmp_path):
    config = two_stage_config(photo_folder)
    strategy, plan, state = build(config, str(tmp_path))
    stage = plan.stages[0]
    state.task.enter_stage(state.model, stage)
    iterator = trainer.train_iterator(state, stage, 0)
    train_loop = state.steps.make_train_loop()
    ops = {node.op for node in graph_ops(train_loop.get_concrete_function(iterator,
                                                                          tf.constant(1)))}
    assert "IteratorGetNext" in ops and "Conv2D" in ops  # the graph really is the train loop
    assert not ops & HOST_ONLY_OPS
    strings = {node.op for node in graph_ops(train_loop.get_concrete_function(
        iterator, tf.constant(1))) if any(value.type == tf.string.as_datatype_enum
                                          for value in node.attr.values())}
    assert not strings, strings


def test_bfloat16_from_the_input_pipeline_to_float32_loss(photo_folder, tmp_path):
    config = tiny_config(photo_folder, **{"train.steps": 40, "model.survival_prob": 1.0})
    config.train.precision = "mixed_bfloat16"
    config.data.image_dtype = "bfloat16"
    config.data.crop = "v1"
    config.optimizer.name = "sgd"
    config.optimizer.lr_per_256 = 1.6
    strategy, plan, state = build(config, str(tmp_path))
    model = state.model
    # Input pipeline -> model input: bfloat16 images, no cast to float32 in between.
    stage = plan.stages[0]
    iterator = trainer.train_iterator(state, stage, 0)
    images_spec, labels_spec = iterator.element_spec
    assert images_spec.dtype == tf.bfloat16 and labels_spec.dtype == tf.float32
    assert model.inputs[0].dtype == "bfloat16"
    # Inside: bfloat16 compute, float32 variables (BN statistics included), float32 logits.
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.get_layer("stem_bn").moving_mean.dtype == "float32"
    probe = keras.Model(model.inputs, [model.get_layer("stem_activation").output, model.output])
    images, _ = next(iterator)
    features, logits = probe(images, training=False)
    assert features.dtype == tf.bfloat16 and logits.dtype == tf.float32
    # A few steps in bfloat16: the float32 loss falls.
    train_loop = state.steps.make_train_loop()
    losses = []
    for _ in range(40):
        totals = train_loop(iterator, tf.constant(1))
        assert totals["loss"].dtype == tf.float32
        losses.append(float(totals["loss"]) / float(totals["examples"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_one_trace_per_stage_and_per_eval_size_over_a_three_stage_run(photo_folder, tmp_path):
    config = two_stage_config(photo_folder, **{"train.steps": 9, "train.log_every_steps": 1,
                                               "train.eval_every_steps": 2})
    config.progressive.num_stages = 3
    config.progressive.image_size_min = 16
    strategy, plan, state = build(config, str(tmp_path))
    progress = trainer.report.Progress(str(tmp_path), plan.total_steps, plan.steps_per_epoch,
                                       plan.global_batch, write=False)
    assert [s.image_size for s in plan.stages] == [16, 24, 32]
    for stage in plan.stages:
        trainer.train_stage(state, stage, progress, str(tmp_path))
    trainer.evaluate(state)
    # 9 host-loop calls of one step each and 5 evaluations (every 2 steps, then at the end):
    # 3 traces of the train loop (one per image size), 1 of the eval step (one eval size).
    assert state.step == 9
    assert state.steps.traces == {"train": 3, "eval": 1}


def test_tpu_topology_line():
    coordinates = np.array([[[x, y, 0, core] for y in range(2) for x in range(2)
                             for core in range(2)] for _ in range(1)])
    v3_8 = tf.tpu.experimental.Topology(mesh_shape=[2, 2, 1, 2], device_coordinates=coordinates)
    assert distribute.describe_topology(v3_8) == (
        "TPU topology: 8 cores on 1 host(s), 8 cores per host, mesh [2, 2, 1, 2]")
    coordinates = np.array([[[x + 2 * host, y, 0, core] for y in range(2) for x in range(2)
                             for core in range(2)] for host in range(4)])
    v3_32 = tf.tpu.experimental.Topology(mesh_shape=[8, 2, 1, 2], device_coordinates=coordinates)
    assert distribute.describe_topology(v3_32) == (
        "TPU topology: 32 cores on 4 host(s), 8 cores per host, mesh [8, 2, 1, 2]")


def fake_tpu_strategy(replicas):
    """Stands in for a TPUStrategy of `replicas` cores: isinstance(TPUStrategy) holds, as it
    does for the real one; nothing else of it is used by what the tests below call."""
    strategy = mock.create_autospec(tf.distribute.TPUStrategy, instance=True)
    strategy.num_replicas_in_sync = replicas
    strategy.extended.num_hosts = max(1, replicas // 8)
    return strategy


def test_tpu_defaults_follow_the_strategy(photo_folder):
    cpu = tf.distribute.get_strategy()
    assert distribute.precision_policy(None, cpu) == "float32"  # CPU here
    assert distribute.use_xla(True, cpu) is False  # never on CPU, even when asked
    assert distribute.use_xla(None, cpu) is False
    tpu = fake_tpu_strategy(8)
    assert distribute.is_tpu(tpu) and not distribute.is_tpu(cpu)
    assert distribute.precision_policy(None, tpu) == "mixed_bfloat16"
    assert distribute.precision_policy("float32", tpu) == "float32"  # asked for: kept
    config = two_stage_config(photo_folder, **{"train.batch_size": 16, "eval.batch_size": 16,
                                               "train.log_every_steps": 250})
    on_cpu, on_tpu = trainer.resolve_run(config, cpu), trainer.resolve_run(config, tpu)
    assert (on_cpu.precision, on_cpu.image_dtype, on_cpu.steps_per_loop) == (
        "float32", "float32", 1)
    assert (on_tpu.precision, on_tpu.image_dtype, on_tpu.steps_per_loop) == (
        "mixed_bfloat16", "bfloat16", 100)  # min(100, log_every_steps)
    assert on_tpu.placement.tpu and not on_tpu.placement.pod
    assert on_tpu.per_replica_batch == 2
    # XLA compiles every TPU step already: no explicit jit_compile wrapper there (nor on CPU).
    assert not on_tpu.jit_compile and not on_cpu.jit_compile
    assert distribute.describe_xla(on_tpu.jit_compile, tpu) == "implicit (TPU)"
    assert distribute.describe_xla(on_cpu.jit_compile, cpu) == "off"


@pytest.mark.parametrize("rule, replicas, expected", [
    ("v1", 8, (False, 0)), ("v1", 32, (True, 8)), ("v1", 128, (True, 16)),
    ("v1", 1024, (True, 128)),  # tensorflow/tpu: max(8, n // 8) above 8 cores
    ("v2", 8, (True, 0)), ("v2", 32, (True, 8)), ("v2", 4, (True, 0)),  # automl: min(8, n)
    ("none", 32, (False, 0)), ("all", 32, (True, 0)), ("4", 32, (True, 4))])
def test_batch_norm_groups_of_the_official_rules_on_tpu(rule, replicas, expected):
    synchronized, group, description = distribute.batch_norm_groups(
        rule, fake_tpu_strategy(replicas))
    assert (synchronized, group) == expected
    assert ("official" in description) == (rule in ("v1", "v2"))


def test_official_batch_norm_rules_keep_per_replica_statistics_off_tpu():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert distribute.batch_norm_groups("v2", mirrored)[:2] == (False, 0)
    assert distribute.batch_norm_groups("all", mirrored)[:2] == (True, 0)
    with pytest.raises(distribute.StrategyError, match="groups of 3 replicas do not divide"):
        distribute.batch_norm_groups("3", mirrored)
    with pytest.raises(distribute.StrategyError, match="bn_sync is 'some'"):
        distribute.batch_norm_groups("some", mirrored)


@pytest.mark.parametrize("tpu", ["local", "no-such-tpu", "grpc://127.0.0.1:1"])
def test_no_tpu_reachable_is_one_clear_error(tpu):
    with pytest.raises(distribute.StrategyError, match=rf"no TPU found for --tpu='{tpu}' "
                                                       r"\(tried TPUClusterResolver"):
        distribute.resolve(tpu=tpu)


def test_the_input_functions_capture_no_variable(photo_folder, tmp_path):
    """On a TPU pod each host runs the dataset function in its own TensorFlow server, which
    cannot reach host 0's variables: the stage's augmentation, mixing and sizes are constants,
    and the pod run counts no skipped images. Built in a fresh graph, with none of the trainer's
    variables, the train and eval datasets still build and run; with the counter they do not."""
    config = two_stage_config(photo_folder)
    config.augment.kind = "randaugment"
    config.progressive.mixup_min, config.progressive.mixup_max = 0.2, 0.2
    config.progressive.cutmix_min, config.progressive.cutmix_max = 0.5, 0.5
    strategy, plan, state = build(config, str(tmp_path))
    stage = plan.stages[-1]
    settings = state.task.train_settings(stage, 0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    with tf.Graph().as_default():
        tf.random.set_seed(0)  # a graph's own seed (tests run with op determinism on)
        train = inputs_lib.train_dataset(plan.source, settings, context)
        evaluation = state.task.eval_dataset(context, batch_size=4)
        batches = [tf.compat.v1.data.make_one_shot_iterator(d).get_next()
                   for d in (train, evaluation)]
        with tf.compat.v1.Session() as session:
            (images, labels), (eval_images, _) = session.run(batches)
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 3)
    assert ((labels > 0.01) & (labels < 0.99)).any()  # mixed in the graph of the other host
    assert eval_images.shape == (4, 32, 32, 3)
    assert state.counter is not None and not plan.placement.pod  # one process on the CPU: counted
    with tf.Graph().as_default(), pytest.raises(Exception, match="capture an EagerTensor"):
        inputs_lib.train_dataset(plan.source, settings, context, counter=state.counter)
