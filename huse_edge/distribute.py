"""tf.distribute strategies for `huse-edge train --strategy`, and which worker is the chief.

`mirrored` keeps every replica on one host (one per GPU, or the CPU). `multi-worker` reads the cluster from the
standard `TF_CONFIG` environment variable: every worker runs the same command, each with its own `task`; worker 0
(or the task of type `chief`) is the chief, the only one that writes logs, the model directory and the checkpoint
files that the others leave in temporary folders. `--batch-size` is per replica; the global batch is that times
the number of replicas in sync, and the learning-rate schedule counts global steps.
"""

from __future__ import annotations

import os

from huse_edge._tf import tf
from huse_edge.errors import ClusterConfigError

STRATEGIES = ("none", "mirrored", "multi-worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ClusterConfigError("--strategy multi-worker needs the cluster in TF_CONFIG: "
                                     "{\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, "
                                     "\"task\": {\"type\": \"worker\", \"index\": 0}}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True outside a cluster, for the `chief` task, and for worker 0 of a cluster that has no chief task."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each worker keeps its part of every global batch (tf.data's DATA policy), for arrays in memory and for shard
    files alike. The FILE policy (each worker reads only its own files) would save reading, but its graph rewrite
    breaks the streamed pipeline in TF 2.21 (a depthwise convolution then receives the 3-channel input)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
