"""Windows over a listener's time-ordered events, one per impression.

This module owns the index math behind the sequence features and the subscription label
of a training example: the long-term history window (the user's previous rows, most
recent first), the session window picked inside it (same session, no older than
``feature_spec.SESSION_WINDOW_S``), and the conversion window that turns the event's own
conversion into "converts within ``feature_spec.SUBSCRIPTION_WINDOW_S``". Everything is
columnar: windows are (rows, length) index matrices with a validity mask, so a chunk of
events needs no Python loop per row.
"""

from typing import Tuple

import numpy as np

from features import feature_spec


def history_windows(user_codes: np.ndarray, length: int) -> Tuple[np.ndarray, np.ndarray]:
  """Index matrix of each row's previous rows of the same user, most recent first.

  Args:
    user_codes: (n,) user code per row; rows of one user are contiguous.
    length: window length L.

  Returns:
    (idx, valid): (n, L) int64 row indices (0 where invalid) and a bool mask; row i's
    window is i-1, i-2, ... down to the user's first row, truncated to L.
  """
  n = len(user_codes)
  pos = np.arange(n, dtype=np.int64)
  first = np.ones(n, dtype=bool)
  if n:
    first[1:] = user_codes[1:] != user_codes[:-1]
  starts = np.flatnonzero(first)
  user_start = starts[np.cumsum(first) - 1] if n else pos
  steps = np.arange(1, length + 1, dtype=np.int64)
  idx = pos[:, None] - steps[None, :]
  valid = idx >= user_start[:, None]
  return np.where(valid, idx, 0), valid


def session_windows(hist_idx: np.ndarray, hist_valid: np.ndarray, session_codes: np.ndarray,
                    ts: np.ndarray, ts_valid: np.ndarray, length: int,
                    window_s: int) -> Tuple[np.ndarray, np.ndarray]:
  """Selects, among each row's history window, the previous rows of its session.

  A history row belongs to the session when it has the impression's session id and its
  timestamp is at most ``window_s`` seconds older; rows without a timestamp never do.
  The selected rows keep their recency order and are packed to the front.

  Returns:
    (idx, valid): (n, length) row indices (0 where invalid) and the mask.
  """
  row_ts = ts[:, None]
  in_session = (hist_valid
                & (session_codes[hist_idx] == session_codes[:, None])
                & ts_valid[hist_idx] & ts_valid[:, None]
                & (ts[hist_idx] >= row_ts - window_s))
  # A stable argsort of "not selected" packs the selected positions to the front in
  # their original (most recent first) order.
  order = np.argsort(~in_session, axis=1, kind="stable")[:, :length]
  idx = np.take_along_axis(hist_idx, order, axis=1)
  valid = np.take_along_axis(in_session, order, axis=1)
  if order.shape[1] < length:  # history window shorter than the session length
    pad = length - order.shape[1]
    idx = np.pad(idx, ((0, 0), (0, pad)))
    valid = np.pad(valid, ((0, 0), (0, pad)))
  return np.where(valid, idx, 0), valid


def subscription_within_window(user_codes: np.ndarray, ts: np.ndarray,
                               ts_valid: np.ndarray, converted: np.ndarray,
                               present: np.ndarray, paid: np.ndarray,
                               window_s: int = feature_spec.SUBSCRIPTION_WINDOW_S
                               ) -> Tuple[np.ndarray, np.ndarray]:
  """The subscription label of each impression: a conversion within the window after it.

  Events carry the conversion on the impression where it happened; the label the model
  learns is whether the listener converts within ``window_s`` seconds from this
  impression on (``feature_spec.SUBSCRIPTION_WINDOW_S``). Rows sorted by (user, ts).

  Args:
    user_codes, ts, ts_valid: per event, grouped by user and sorted by time.
    converted: the event's own conversion (0/1, NaN where unknown).
    present: where ``converted`` is known.
    paid: listeners already paying: not at risk, so their label weighs 0.

  Returns:
    (label values, label present) per event. Without a timestamp the event's own
    conversion is kept.
  """
  conv_pos = np.flatnonzero(present & (np.nan_to_num(converted) > 0))
  label = np.where(present, np.nan_to_num(converted), 0.0).astype(np.float32)
  if conv_pos.size:
    nxt = np.searchsorted(conv_pos, np.arange(len(ts)))   # first conversion at or after i
    has = nxt < conv_pos.size
    j = conv_pos[np.minimum(nxt, conv_pos.size - 1)]
    within = (has & (user_codes[j] == user_codes) & ts_valid & ts_valid[j]
              & (ts[j] - ts <= window_s))
    label = np.where(within & present, 1.0, label).astype(np.float32)
  return label, present & ~paid
