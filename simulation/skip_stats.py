"""Skip statistics of a play log: the numbers the skip calibration compares with real logs.

This module owns how skipping is measured on a session log (the columns of
``World.simulate``, or any log with a session id, a position and an early-skip flag):
the early-skip and full-listen rates, the skip-profile shares, skip momentum by lag
(``P(skip | skipped k plays ago) - P(skip | not skipped k plays ago)``), runs of
consecutive skips, the share of sessions in which (almost) every play is skipped, the
skip rate by position, context, shuffle and activity, skips per listening hour, and
how skipping falls with interest. Every function takes plain numpy arrays, so the same
code measures the simulator before and after a change, or a real log.
"""

from typing import Dict, Optional, Sequence

import numpy as np

# A session counts as "skip-through" when at least this share of its plays is skipped;
# only sessions of at least ALL_SKIP_MIN_LEN plays are looked at (a 1-play session
# skipped once says nothing about a session type).
ALL_SKIP_SHARE = 0.9
ALL_SKIP_MIN_LEN = 5


def _same_session_pairs(session: np.ndarray, lag: int) -> np.ndarray:
  """Indices ``i`` such that plays ``i`` and ``i + lag`` belong to one session."""
  if lag < 1 or len(session) <= lag:
    return np.zeros(0, np.int64)
  return np.flatnonzero(session[lag:] == session[:-lag])


def momentum(session: np.ndarray, skip: np.ndarray, lags: Sequence[int] = (1, 2, 3, 4, 5)
             ) -> Dict[int, float]:
  """Skip momentum by lag: ``P(skip_j | skip_{j-k}) - P(skip_j | not skip_{j-k})``.

  Args:
    session: session id per play; the plays of a session are contiguous and in order.
    skip: bool per play (the early skip).
    lags: the lags k.

  Returns:
    ``{k: difference}`` (NaN where one of the two conditions never occurs).
  """
  skip = np.asarray(skip, bool)
  out = {}
  for k in lags:
    i = _same_session_pairs(np.asarray(session), k)
    prev, nxt = skip[i], skip[i + k]
    if prev.any() and (~prev).any():
      out[int(k)] = float(nxt[prev].mean() - nxt[~prev].mean())
    else:
      out[int(k)] = float("nan")
  return out


def skip_runs(session: np.ndarray, skip: np.ndarray) -> np.ndarray:
  """Lengths of the runs of consecutive skipped plays inside sessions."""
  skip = np.asarray(skip, bool)
  session = np.asarray(session)
  n = len(skip)
  if not n:
    return np.zeros(0, np.int64)
  start = skip.copy()
  start[1:] &= ~(skip[:-1] & (session[1:] == session[:-1]))
  run_id = np.cumsum(start) - 1
  return np.bincount(run_id[skip], minlength=int(start.sum())).astype(np.int64)


def session_skip_shares(session: np.ndarray, skip: np.ndarray):
  """``(lengths, skip share)`` per session, in order of first appearance."""
  session = np.asarray(session)
  new = np.ones(len(session), bool)
  new[1:] = session[1:] != session[:-1]
  sid = np.cumsum(new) - 1
  lengths = np.bincount(sid)
  skipped = np.bincount(sid, weights=np.asarray(skip, float))
  return lengths, skipped / np.maximum(lengths, 1)


def all_skip_share(session: np.ndarray, skip: np.ndarray,
                   share: float = ALL_SKIP_SHARE, min_len: int = ALL_SKIP_MIN_LEN) -> float:
  """Share of sessions of at least ``min_len`` plays with at least ``share`` skipped."""
  lengths, shares = session_skip_shares(session, skip)
  keep = lengths >= min_len
  return float((shares[keep] >= share).mean()) if keep.any() else float("nan")


def rate_by(groups: np.ndarray, skip: np.ndarray, names: Sequence[str]) -> Dict[str, float]:
  """Skip rate per group index (``names[i]`` names group ``i``; absent groups left out)."""
  groups = np.asarray(groups, np.int64)
  cnt = np.bincount(groups, minlength=len(names))
  hit = np.bincount(groups, weights=np.asarray(skip, float), minlength=len(names))
  return {name: float(hit[i] / cnt[i]) for i, name in enumerate(names) if cnt[i]}


def position_rates(pos: np.ndarray, skip: np.ndarray, last: int = 10) -> np.ndarray:
  """Skip rate at session positions ``0 .. last - 1`` (the rest pooled into the last)."""
  p = np.minimum(np.asarray(pos, np.int64), last - 1)
  cnt = np.bincount(p, minlength=last)
  hit = np.bincount(p, weights=np.asarray(skip, float), minlength=last)
  return hit / np.maximum(cnt, 1)


def interest_gap(utility: np.ndarray, skip: np.ndarray) -> float:
  """Skip rate of the lowest-utility quartile of plays minus that of the highest."""
  u = np.asarray(utility, float)
  lo, hi = np.quantile(u, [0.25, 0.75])
  skip = np.asarray(skip, float)
  return float(skip[u <= lo].mean() - skip[u >= hi].mean())


def summarize(cols: Dict[str, np.ndarray], surfaces: Sequence[str],
              activities: Sequence[str], profiles: Optional[Sequence[str]] = None
              ) -> Dict[str, object]:
  """Every skip statistic of a ``World.simulate`` log.

  Args:
    cols: needs ``session``, ``pos``, ``skip``, ``completion``, ``listened``,
      ``surface``, ``activity``, ``utility``; uses ``shuffle`` and ``skip_profile``
      (index into ``profiles``) when present.
    surfaces: names of the ``surface`` indices.
    activities: names of the ``activity`` indices.
    profiles: names of the ``skip_profile`` indices.

  Returns:
    A JSON-ready dict of rates, shares and curves.
  """
  session, skip = cols["session"], np.asarray(cols["skip"], bool)
  runs = skip_runs(session, skip)
  listened_h = float(np.sum(cols["listened"])) / 3600.0
  out = {
      "plays": int(len(skip)),
      "early_skip_rate": float(skip.mean()),
      "full_listen_rate": float((np.asarray(cols["completion"]) >= 1.0).mean()),
      "very_brief_rate": float((np.asarray(cols["listened"]) < 5.0).mean()),
      "momentum": momentum(session, skip),
      "mean_skip_run": float(runs.mean()) if len(runs) else float("nan"),
      "runs_at_least_3": float((runs >= 3).mean()) if len(runs) else float("nan"),
      "all_skip_sessions": all_skip_share(session, skip),
      "skips_per_hour": float(skip.sum() / max(listened_h, 1e-9)),
      "position": position_rates(cols["pos"], skip).tolist(),
      "by_surface": rate_by(cols["surface"], skip, surfaces),
      "by_activity": rate_by(cols["activity"], skip, activities),
      "interest_gap": interest_gap(cols["utility"], skip),
  }
  if "shuffle" in cols:
    out["by_shuffle"] = rate_by(np.asarray(cols["shuffle"], np.int64), skip, ("off", "on"))
  if "skip_profile" in cols and profiles is not None:
    prof = np.asarray(cols["skip_profile"], np.int64)
    out["profile_shares"] = {name: float((prof == i).mean())
                             for i, name in enumerate(profiles)}
  return out
