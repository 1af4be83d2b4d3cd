"""Where and how a training step runs: tf.distribute strategies (one device, all local GPUs, or a multi-worker
cluster from TF_CONFIG), the global batch split into per-replica values, the one compiled step every job builds, and
the Keras dtype policy it computes under.
"""
from __future__ import annotations

import contextlib
import os

from run_config import RunError


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers built inside this block compute under the Keras dtype policy `name` (float32, mixed_bfloat16 or
    mixed_float16; Keras refuses others); the policy before is restored after, so models built later (say, for
    inference in the same process) are float32 again. Under a mixed policy the variables stay float32, and our
    Grams, instance-norm statistics, final sigmoids and losses are computed in float32."""
    import keras

    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def make_strategy(name: str = "auto", devices: str = "", logical_cpus: int = 0):
    """`default` (one device), `mirrored` (all local GPUs, else the CPU's logical devices, or `devices`),
    `multiworker` (MultiWorkerMirroredStrategy configured by TF_CONFIG), or `auto` (mirrored when more than one GPU
    is visible). `logical_cpus` > 1 splits the CPU into that many logical devices first (for tests and trials); it
    must run before TensorFlow touches a device."""
    import tensorflow as tf

    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices:
            return tf.distribute.MirroredStrategy([d.strip() for d in devices.split(",")])
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise RunError("--strategy multiworker needs TF_CONFIG describing the cluster and this task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise RunError(f"unknown --strategy '{name}': use auto, default, mirrored or multiworker")


def task_role(strategy) -> tuple[bool, int]:
    """(is chief, task index). The chief is task `chief`, or worker 0 when the cluster has no chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec or resolver.task_type is None:
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in spec), task_id


def worker_share(strategy) -> tuple[int, int]:
    """(this worker's index, the number of workers) of a multi-worker cluster; (0, 1) on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec or resolver.task_type is None:
        return 0, 1
    workers = [(kind, i) for kind in ("chief", "worker") for i in range(len(spec.get(kind, [])))]
    return workers.index((resolver.task_type, int(resolver.task_id or 0))), len(workers)


def per_replica(strategy, global_batch: int, *structures, local: bool = False):
    """Split host arrays (or dicts of them) whose first axis is the global batch into per-replica values. With
    `local`, the arrays hold only this worker's share of the global batch (global_batch / workers rows: a sharded
    input stream), split among its own replicas."""
    import tensorflow as tf

    n = strategy.num_replicas_in_sync
    if global_batch % n:
        raise RunError(f"--batch-size {global_batch} must be divisible by the {n} replicas")
    per = global_batch // n
    index, workers = worker_share(strategy) if local else (0, 1)
    first = index * (n // workers)  # replicas are numbered worker by worker

    def value_fn(ctx):
        i = ctx.replica_id_in_sync_group - first
        return tf.nest.map_structure(lambda a: tf.constant(a[i * per:(i + 1) * per]), structures)

    return strategy.experimental_distribute_values_from_function(value_fn)


def distributed_step(strategy, replica_step, jit_compile: bool = False):
    """The one compiled training step of a job: `replica_step(*args)` runs on every replica of `strategy` and returns
    a dict of values that are each replica's share of a global-batch quantity; the step returns their sums. Each
    replica's loss being its share of the global-batch mean, Keras's optimizer sums the replicas' gradients.
    jit_compile: compile the step with XLA (benchmarks/speed.py --xla measures whether it helps)."""
    import tensorflow as tf

    # Plain tensor code with no Python control flow to convert; AutoGraph's closure check trips on it.
    replica_step = tf.autograph.experimental.do_not_convert(replica_step)

    @tf.function(jit_compile=jit_compile)
    def step(*args):
        per = strategy.run(replica_step, args=args)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per.items()}

    return step
