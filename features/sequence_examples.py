"""Sequence examples: a listener's impressions in time order, chunked for one-pass training.

Sequence-level training (``ranking.sequence_training``) encodes a listener's plays once
and trains every impression of them in one pass. This module owns the data side of it:
it turns the transformed per-impression examples (``feature_spec.TRANSFORMED_FEATURES``
and the labels) of a split into padded chunks of ``max_len`` consecutive impressions of
one listener, each step holding that impression's own features (listener, context,
candidate, labels, ``sess_len``) and the play it became (track, artist, completion and
skip: the candidate and its completion and skip labels, the values a later impression's
history holds for it).

The transformed examples carry no listener key or timestamp that survives Transform (an
unseen listener's id is a shared OOV bucket), so the order is rebuilt from the examples
themselves: impression ``B`` follows ``A`` when ``B``'s history is ``A``'s candidate
followed by ``A``'s history (same listener id, one play longer up to ``HISTORY_LEN``).
Every row is a play of its listener (``features.raw_features``), so each listener's rows
form one chain.

A chain longer than ``max_len`` is cut into chunks with a stride of ``max_len - context``:
the first ``context`` steps of every chunk but the first are read, not trained
(``STEP_WEIGHT`` 0), so a trained step sees at least ``context`` earlier plays and each
impression is trained exactly once.
"""

from typing import Dict, List, Mapping

import numpy as np

from features import feature_spec

X = feature_spec.xf
STEP_VALID = "step_valid"      # 1 for a real step, 0 for padding
STEP_WEIGHT = "step_weight"    # 1 for a step to train on, 0 for context and padding
PLAY_TRACK = "play_track_ids"
PLAY_ARTIST = "play_artist_ids"
PLAY_COMPLETION = "play_completion"
PLAY_SKIP = "play_skip"
# The per-impression sequences a sequence example replaces by its own plays.
_READ_FROM_PLAYS = tuple(X(f.name) for f in feature_spec.HISTORY_FEATURES
                         + feature_spec.SESSION_FEATURES if f.name != "sess_len")
_PLAY_SOURCES = {PLAY_TRACK: X("cand_track_id"), PLAY_ARTIST: X("cand_artist_id"),
                 PLAY_COMPLETION: "interest_completion", PLAY_SKIP: "interest_skip"}


def step_keys(arrays: Mapping[str, np.ndarray]) -> List[str]:
  """The per-impression keys of ``arrays`` a sequence example keeps at each step."""
  return [k for k in arrays if k not in _READ_FROM_PLAYS]


def _rows(arrays: Mapping[str, np.ndarray], key: str, n: int) -> np.ndarray:
  return np.asarray(arrays[key]).reshape(n, -1)


def _row_keys(table: np.ndarray) -> np.ndarray:
  """One hashable bytes value per row of an int64 matrix."""
  table = np.ascontiguousarray(table, dtype=np.int64)
  return table.view(np.dtype((np.void, table.shape[1] * 8))).ravel()


def listener_chains(arrays: Mapping[str, np.ndarray]) -> List[np.ndarray]:
  """Rows of each listener's impressions in time order, rebuilt from their histories.

  Args:
    arrays: transformed per-impression features, name -> ``[N]`` or ``[N, K]``.

  Returns:
    One array of row indices per chain; every row is in exactly one chain.
  """
  n = len(np.asarray(arrays[X("cand_track_id")]).reshape(-1))
  length = feature_spec.HISTORY_LEN
  user = _rows(arrays, X("user_id"), n)
  hist = _rows(arrays, X("hist_track_ids"), n)
  hist_len = np.clip(_rows(arrays, X("hist_len"), n), 0, length)
  cand = _rows(arrays, X("cand_track_id"), n)
  steps = np.arange(length)[np.newaxis]
  own = np.concatenate([user, hist_len, np.where(steps < hist_len, hist, -1)], axis=1)
  next_len = np.minimum(hist_len + 1, length)
  extended = np.concatenate([cand, hist[:, :length - 1]], axis=1)
  nxt = np.concatenate([user, next_len, np.where(steps < next_len, extended, -1)], axis=1)

  by_key: Dict[bytes, List[int]] = {}
  for row, key in enumerate(_row_keys(own).tolist()):
    by_key.setdefault(key, []).append(row)
  successor = np.full(n, -1, np.int64)
  has_predecessor = np.zeros(n, bool)
  for row, key in enumerate(_row_keys(nxt).tolist()):
    rows = by_key.get(key)
    # Equal keys (a listener id shared by OOV listeners, repeated plays) pair in order.
    while rows and (rows[0] == row or has_predecessor[rows[0]]):
      rows.pop(0)
    if rows:
      nxt_row = rows.pop(0)
      successor[row] = nxt_row
      has_predecessor[nxt_row] = True

  chains, seen = [], np.zeros(n, bool)
  heads = list(np.flatnonzero(~has_predecessor)) + list(range(n))
  for head in heads:
    if seen[head]:
      continue
    chain, row = [], head
    while row >= 0 and not seen[row]:
      seen[row] = True
      chain.append(row)
      row = successor[row]
    chains.append(np.asarray(chain, np.int64))
  return chains


def chunk_chains(chains: List[np.ndarray], max_len: int, context: int):
  """Cuts chains into ``[C, max_len]`` row indices (-1 = padding) and step weights.

  Args:
    chains: row indices per chain, in time order.
    max_len: steps per chunk.
    context: leading steps of every chunk but a chain's first that are only read.

  Returns:
    ``(index [C, max_len] int64, weight [C, max_len] float32)``.
  """
  if max_len <= 0:
    raise ValueError(f"max_len must be positive, got {max_len}")
  if not 0 <= context < max_len:
    raise ValueError(f"context must be in [0, max_len), got {context} for {max_len}")
  stride = max_len - context
  index, weight = [], []
  for chain in chains:
    start = 0
    while True:
      first_trained = start + (context if start else 0)
      if first_trained >= len(chain):
        break
      rows = chain[start:start + max_len]
      idx = np.full(max_len, -1, np.int64)
      idx[:len(rows)] = rows
      w = np.zeros(max_len, np.float32)
      w[first_trained - start:len(rows)] = 1.0
      index.append(idx)
      weight.append(w)
      start += stride
  if not index:
    return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.float32)
  return np.stack(index), np.stack(weight)


def build(arrays: Mapping[str, np.ndarray], max_len: int = feature_spec.HISTORY_LEN,
          context: int = 0) -> Dict[str, np.ndarray]:
  """Sequence examples of a split's transformed per-impression examples.

  Args:
    arrays: transformed features and labels, name -> ``[N]`` or ``[N, K]`` arrays.
    max_len: steps per chunk; at most ``HISTORY_LEN + 1``, so that every step's plays
      fit one per-impression history (the serving form reads the same plays).
    context: leading steps read but not trained in every chunk after a chain's first.

  Returns:
    name -> ``[C, max_len]`` (or ``[C, max_len, K]``) arrays: the ``step_keys``, the
    ``PLAY_*`` columns, ``STEP_VALID`` and ``STEP_WEIGHT``; padding steps are zeros.
  """
  if max_len > feature_spec.HISTORY_LEN + 1:
    raise ValueError(f"max_len must be at most HISTORY_LEN + 1 = "
                     f"{feature_spec.HISTORY_LEN + 1}, got {max_len}")
  index, weight = chunk_chains(listener_chains(arrays), max_len, context)
  valid = index >= 0
  safe = np.where(valid, index, 0)
  out = {}
  for key in step_keys(arrays):
    values = np.asarray(arrays[key])
    gathered = values[safe]
    mask = valid.reshape(valid.shape + (1,) * (gathered.ndim - 2))
    out[key] = np.where(mask, gathered, np.zeros((), values.dtype))
  for key, source in _PLAY_SOURCES.items():
    out[key] = np.asarray(out[source]).reshape(valid.shape)
  out[STEP_VALID] = valid.astype(np.float32)
  out[STEP_WEIGHT] = weight
  return out


def sequence_dataset(sequences: Mapping[str, np.ndarray], batch_size: int, seed: int = 7,
                     shuffle: bool = True, repeat: bool = True):
  """A ``tf.data`` dataset of batches of sequence examples (chunks), held in memory.

  Args:
    sequences: output of :func:`build`.
    batch_size: chunks per batch (the last partial batch is dropped).
    seed: shuffle seed.
    shuffle: shuffle the chunks.
    repeat: repeat forever.

  Returns:
    A dataset of dicts name -> ``[batch, max_len, ...]`` tensors.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  chunks = len(sequences[STEP_VALID])
  if chunks < batch_size:
    raise ValueError(f"{chunks} sequence chunks cannot fill a batch of {batch_size}")
  ds = tf.data.Dataset.from_tensor_slices(dict(sequences))
  if shuffle:
    ds = ds.shuffle(chunks, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
