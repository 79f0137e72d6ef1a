"""A tiny SavedModel with several signatures, for exercising the model server.

This module owns the toy model the serving tests (and a quick manual ``melody serve``
check) use: signatures with float, int and string inputs, fixed trailing dims, a free
batch dim, a fully fixed shape, a free trailing dim, and one that fails at run time on
demand. Outputs depend on a per-version ``scale`` so a test can tell versions apart.
Versions are published the way a trainer should: written under a temporary name in the
base directory, then renamed to their number.
"""

import os
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tensorflow_serving.apis import prediction_log_pb2

from serving import client

SIGNATURES = ("serving_default", "tag", "fixed", "ragged", "explode")
MISSING_FILE = "/nonexistent/melody-serving-toy-explode"


class ToyModel(tf.Module):
  """Signatures whose outputs are easy to compute in numpy (see ``expected_*``)."""

  def __init__(self, scale: float, version: int):
    super().__init__()
    self.scale = tf.Variable(float(scale), dtype=tf.float32, trainable=False)
    self.version = tf.Variable(int(version), dtype=tf.int64, trainable=False)

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32),
                                tf.TensorSpec([None, 2], tf.int64)])
  def score(self, x, ids):
    total = tf.reduce_sum(x, axis=1) * self.scale + tf.cast(tf.reduce_sum(ids, axis=1),
                                                             tf.float32)
    return {"score": total, "version": tf.fill(tf.shape(x)[:1], self.version)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def tag(self, words):
    return {"length": tf.strings.length(words), "upper": tf.strings.upper(words)}

  @tf.function(input_signature=[tf.TensorSpec([2, 2], tf.float32)])
  def fixed(self, m):
    return {"total": tf.reduce_sum(m) * self.scale}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def ragged(self, v):
    return {"row_sum": tf.reduce_sum(v, axis=1) * self.scale}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
  def explode(self, flag):
    # Any positive flag reads a file that does not exist: a run-time failure that is
    # not the caller's input error, as an unexpected model bug would be.
    content = tf.cond(tf.reduce_any(flag > 0), lambda: tf.io.read_file(MISSING_FILE),
                      lambda: tf.constant(""))
    return {"out": flag * 2 + tf.strings.length(content)}


def write_version(base_path: str, version: int, scale: float,
                  warmup: Optional[Sequence[Mapping[str, object]]] = None,
                  warmup_signature: str = "serving_default") -> str:
  """Saves version ``version`` under ``base_path``, atomically; returns its directory.

  Args:
    base_path: Model base directory (created if needed).
    version: Version number (the directory name).
    scale: Multiplier that makes this version's outputs distinct.
    warmup: Optional input dicts written as ``PredictLog`` warmup records.
    warmup_signature: Signature the warmup records call.
  """
  os.makedirs(base_path, exist_ok=True)
  tmp = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
  model = ToyModel(scale, version)
  signatures = {"serving_default": model.score, "tag": model.tag, "fixed": model.fixed,
                "ragged": model.ragged, "explode": model.explode}
  tf.saved_model.save(model, tmp, signatures=signatures)
  if warmup:
    extra = os.path.join(tmp, "assets.extra")
    os.makedirs(extra)
    with tf.io.TFRecordWriter(os.path.join(extra, "tf_serving_warmup_requests")) as writer:
      for inputs in warmup:
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.CopyFrom(
            client.predict_request("toy", warmup_signature, inputs))
        writer.write(log.SerializeToString())
  final = os.path.join(base_path, str(version))
  os.rename(tmp, final)
  return final


def expected_score(x: np.ndarray, ids: np.ndarray, scale: float) -> np.ndarray:
  """What ``serving_default`` returns as ``score``."""
  return (x.astype(np.float32).sum(axis=1) * np.float32(scale)
          + ids.sum(axis=1).astype(np.float32)).astype(np.float32)


def score_inputs(rows: int, seed: int) -> Mapping[str, np.ndarray]:
  """Inputs of ``serving_default`` with small integers, so float sums are exact."""
  rng = np.random.default_rng(seed)
  return {"x": rng.integers(-8, 8, size=(rows, 3)).astype(np.float32),
          "ids": rng.integers(0, 100, size=(rows, 2)).astype(np.int64)}

