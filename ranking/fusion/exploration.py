"""The seeded exploration bonus: one hash of (seed, candidate id) and the seed mask.

This module owns how exploration is drawn, for both fusion kernels: the integer hash
``u(seed, candidate_id)`` in [0, 1) (its constants, and a TF and a numpy implementation
that give bit-identical values), and the bonus ``epsilon * novelty * u`` with its
request semantics:

* no seed: the plain novelty bonus ``epsilon * novelty`` (``u = 1``);
* seed >= 0: ``epsilon * novelty * u(seed, candidate_id)``;
* seed < 0: no bonus for that row (TF Serving signatures have no optional inputs, so a
  negative seed is how a request says "exploration off").

The hash is exact int64 arithmetic, so the same request gets the same bonus on any
machine and TF version, and the simulator recomputes it in numpy. A row depends only on
its own seed and ids, so batching requests together never changes a request's bonus.
"""

from typing import Optional

import numpy as np
import tensorflow as tf

HASH_MOD = (1 << 31) - 1
HASH_MULT = 48271
HASH_SEED_MULT = 69621
HASH_ROUNDS = 3
# u = (x >> HASH_SHIFT) / 2**HASH_BITS: the top 24 of the 31 bits, exact in float32.
HASH_SHIFT = 7
HASH_BITS = 24


def uniform_tf(seed: tf.Tensor, candidate_ids: tf.Tensor) -> tf.Tensor:
  """``u`` in [0, 1) per (request seed, candidate id), as graph ops.

  Args:
    seed: ``[B]`` int per-request seed (any sign; the hash reduces it mod ``HASH_MOD``).
    candidate_ids: ``[B, N]`` int candidate ids.

  Returns:
    ``[B, N]`` float32.
  """
  mod = tf.constant(HASH_MOD, tf.int64)
  seed = tf.math.floormod(tf.cast(seed, tf.int64), mod)[:, tf.newaxis]
  ids = tf.math.floormod(tf.cast(candidate_ids, tf.int64), mod)
  x = tf.math.floormod(seed * HASH_SEED_MULT + ids, mod)   # < 2**48, no overflow
  for _ in range(HASH_ROUNDS):
    x = tf.math.floormod(x * HASH_MULT + 11, mod)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13))
  return tf.cast(tf.bitwise.right_shift(x, HASH_SHIFT), tf.float32) / float(1 << HASH_BITS)


def uniform_np(seed: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
  """:func:`uniform_tf` in numpy: ``[B, N]`` float64, bit-identical values."""
  seed = np.mod(np.asarray(seed, np.int64), HASH_MOD)[:, None]
  ids = np.mod(np.asarray(candidate_ids, np.int64), HASH_MOD)
  x = np.mod(seed * HASH_SEED_MULT + ids, HASH_MOD)
  for _ in range(HASH_ROUNDS):
    x = np.mod(x * HASH_MULT + 11, HASH_MOD)
    x = x ^ (x >> 13)
  return (x >> HASH_SHIFT).astype(np.float64) / float(1 << HASH_BITS)


def _row_seed_tf(seed: tf.Tensor) -> tf.Tensor:
  seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
  return tf.squeeze(seed, axis=1) if seed.shape.rank == 2 else seed


def bonus_tf(epsilon: float, novelty: tf.Tensor, seed: Optional[tf.Tensor] = None,
             candidate_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The ``[B, N]`` float32 exploration bonus (module docstring has the semantics).

  Args:
    epsilon: the largest bonus.
    novelty: ``[B, N]`` float32 in [0, 1].
    seed: optional ``[B]`` (or ``[B, 1]``) int request seeds.
    candidate_ids: ``[B, N]`` int ids hashed with the seed (default: the position).
  """
  bonus = epsilon * novelty
  if seed is None:
    return bonus
  seed = _row_seed_tf(seed)
  if candidate_ids is None:
    candidate_ids = tf.broadcast_to(
        tf.range(tf.shape(novelty)[1], dtype=tf.int64)[tf.newaxis, :], tf.shape(novelty))
  on = tf.cast(seed >= 0, tf.float32)[:, tf.newaxis]
  return bonus * uniform_tf(seed, candidate_ids) * on


def bonus_np(epsilon: float, novelty: np.ndarray, seed: Optional[np.ndarray] = None,
             candidate_ids: Optional[np.ndarray] = None) -> np.ndarray:
  """:func:`bonus_tf` in numpy (``[B, N]`` float64)."""
  bonus = epsilon * novelty
  if seed is None:
    return bonus
  seed = np.asarray(seed, np.int64).reshape(len(novelty))
  if candidate_ids is None:
    candidate_ids = np.broadcast_to(np.arange(novelty.shape[1]), novelty.shape)
  on = (seed >= 0).astype(np.float64)[:, None]
  return bonus * uniform_np(seed, candidate_ids) * on
