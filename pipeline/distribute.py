"""Multi-worker training: the distribution strategy ``TF_CONFIG`` asks for, and where
each worker writes.

Kubeflow's TFJob and Vertex AI start the same Trainer on every worker with a
``TF_CONFIG`` that names the cluster and this worker's task. With more than one worker
the Trainer builds the model under ``tf.distribute.MultiWorkerMirroredStrategy``: every
worker holds a copy of the weights, reads its share of each global batch (Keras shards
the batched dataset) and the gradients are all-reduced, so ``batch_size`` stays the
global batch. Checkpoints and logs must be written by every worker (saving is a
collective), but only the chief's copy is kept: the others write to a scratch directory
of their own. Without ``TF_CONFIG``, or with one worker, nothing changes.
"""

import json
import os
from typing import Optional

import tensorflow as tf


def tf_config() -> dict:
  """The parsed ``TF_CONFIG`` (empty when unset)."""
  raw = os.environ.get("TF_CONFIG", "")
  return json.loads(raw) if raw.strip() else {}


def num_workers(config: Optional[dict] = None) -> int:
  """Workers (chief included) of the ``TF_CONFIG`` cluster; 1 without one."""
  cluster = (tf_config() if config is None else config).get("cluster", {})
  return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def is_chief(config: Optional[dict] = None) -> bool:
  """Whether this task keeps the checkpoints, logs and export: the ``chief`` task, or
  worker 0 of a cluster without one."""
  config = tf_config() if config is None else config
  task = config.get("task", {})
  if not task:
    return True
  if task.get("type") == "chief":
    return True
  return (task.get("type") == "worker" and int(task.get("index", 0)) == 0
          and not config.get("cluster", {}).get("chief"))


def strategy_from_env() -> Optional[tf.distribute.Strategy]:
  """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker.

  Must run before any other TensorFlow op of the process (the collective ops are
  configured when the strategy is created).
  """
  if num_workers() < 2:
    return None
  return tf.distribute.MultiWorkerMirroredStrategy()


def worker_dir(path: str) -> str:
  """``path`` on the chief; a scratch directory of this worker under it elsewhere."""
  if is_chief():
    return path
  index = int(tf_config().get("task", {}).get("index", 0))
  return os.path.join(path, f".worker-{index}")
