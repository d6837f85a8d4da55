"""tf.distribute strategies for `huse-edge train --strategy`, and which worker is the chief.

`mirrored` keeps every replica on one host (one per GPU, or the CPU). `multi-worker` reads the cluster from the
standard `TF_CONFIG` environment variable: every worker runs the same command, each with its own `task`; worker 0
(or the task of type `chief`) is the chief, the only one that writes logs, the model directory and the checkpoint
files that the others leave in temporary folders. `--batch-size` is per replica; the global batch is that times
the number of replicas in sync, and the learning-rate schedule counts global steps.
"""

from __future__ import annotations

import json
import os

from huse_edge._tf import tf

STRATEGIES = ("none", "mirrored", "multi-worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multi-worker needs the cluster in TF_CONFIG: {\"cluster\": {\"worker\": "
                             "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True outside a cluster, for the `chief` task, and for worker 0 of a cluster that has no chief task."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each worker keeps its part of every global batch (tf.data's DATA policy), for arrays in memory and for shard
    files alike. The FILE policy (each worker reads only its own files) would save reading, but its graph rewrite
    breaks the streamed pipeline in TF 2.21 (a depthwise convolution then receives the 3-channel input)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
