"""Row-wise evaluation inside a serving graph: each listener at the shapes of a batch of one.

This module owns how ``serving.signatures`` runs the float steps that feed an order (the
encoder and scorer, retrieval, the intent source) once per listener, so that a request
gets the same bits alone and inside any batch the model server forms (the reason is in
``serving.signatures``' module docstring).
"""

from typing import Dict

import tensorflow as tf


def row(features: Dict[str, tf.Tensor], b: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Row ``b`` of ``[B, ...]`` tensors, as a batch of one (its size known only when run,
  as a signature's batch is, so the ops see the shapes a one-listener request gives)."""
  return {k: v[b:b + 1] for k, v in features.items()}


def per_row(fn, batch: tf.Tensor, spec):
  """``fn(b)`` for every row ``b`` of a batch, stacked along a new leading dim.

  One ``map_fn`` step per row, so each row is computed at the shapes of a batch of one
  and gets the same bits in any batch; a batch of one calls ``fn`` directly and skips
  the loop. Either way ``fn`` gets its row as a tensor whose value is not known when
  tracing (``batch - 1`` is row 0 of a batch of one), so both paths trace the same
  static shapes and give the same bits. When ``fn`` calls a ``tf.function``, both paths
  call its one traced graph.

  Args:
    fn: row index (int32 scalar tensor) -> a structure of tensors without the batch dim.
    batch: ``B``, an int32 scalar tensor.
    spec: ``fn``'s output structure as ``tf.TensorSpec`` s.

  Returns:
    ``fn``'s structure with a leading ``[B]`` dim.
  """
  return tf.cond(tf.equal(batch, 1),
                 lambda: tf.nest.map_structure(lambda v: v[tf.newaxis], fn(batch - 1)),
                 lambda: tf.map_fn(fn, tf.range(batch), fn_output_signature=spec))
