"""Per-session observations from the event log: what the sequential test and the promo
controller read.

This module owns turning play events (the columns of ``features.events.EVENT_SCHEMA``
plus the ``arm`` the gateway answered) into the units the experiment decides on. A
session (listener and ``session_id``) is one observation, so a listener who plays many
tracks does not weigh more than one who plays few: :func:`arm_observations` gives per arm
the session's mean completion, its share of skipped plays, whether it converted and its
likes, ready for ``sequential_test.CanaryTest.add`` (gateway latencies per arm come from
:func:`arm_latencies`); :func:`segment_completion` gives per listener segment the sessions
and their mean completion, ready for ``promo_controller.PromoController.observe``.
"""

from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

COMPLETION, SKIP_RATE, CONVERSION, LIKES, LATENCY = (
    "completion", "skip_rate", "conversion", "likes", "latency_ms")


def _sessions(events: Sequence[Mapping[str, object]]) -> pd.DataFrame:
  """One row per (arm, segment, listener, session) with the session's metrics."""
  frame = pd.DataFrame(list(events))
  if frame.empty:
    return pd.DataFrame(columns=["arm", "segment", COMPLETION, SKIP_RATE, CONVERSION,
                                 LIKES])
  for name in ("completion", "skip", "subscription", "like"):
    frame[name] = (pd.to_numeric(frame[name], errors="coerce") if name in frame
                   else np.nan)
  frame["arm"] = frame["arm"].fillna("none") if "arm" in frame else "none"
  frame["segment"] = (frame["user_segment"].fillna("unknown") if "user_segment" in frame
                      else "unknown")
  frame["session_id"] = frame["session_id"].fillna("") if "session_id" in frame else ""
  grouped = frame.groupby(["arm", "segment", "user_id", "session_id"], sort=True)
  return pd.DataFrame({
      COMPLETION: grouped["completion"].mean(),
      SKIP_RATE: grouped["skip"].mean(),
      CONVERSION: (grouped["subscription"].max() > 0).astype(float),
      LIKES: grouped["like"].sum(),
  }).reset_index()


def arm_observations(events: Sequence[Mapping[str, object]]
                     ) -> Dict[str, Dict[str, np.ndarray]]:
  """``arm -> metric -> per-session values`` (a metric no session has is left out; a
  session without completions has no completion value)."""
  sessions = _sessions(events)
  out = {}
  for arm, rows in sessions.groupby("arm", sort=True):
    metrics = {}
    for name in (COMPLETION, SKIP_RATE, CONVERSION, LIKES):
      values = rows[name].to_numpy(np.float64)
      values = values[np.isfinite(values)]
      if values.size:
        metrics[name] = values
    out[arm] = metrics
  return out


def arm_latencies(requests: Iterable[Mapping[str, object]]) -> Dict[str, np.ndarray]:
  """``arm -> latency_ms`` of the gateway requests that answered (code OK)."""
  out: Dict[str, list] = {}
  for r in requests:
    if r.get("code", "OK") == "OK" and r.get("latency_ms") is not None:
      out.setdefault(r.get("arm") or "none", []).append(float(r["latency_ms"]))
  return {arm: np.asarray(v, np.float64) for arm, v in sorted(out.items())}


def segment_completion(events: Sequence[Mapping[str, object]],
                       arm: Optional[str] = None) -> Dict[str, Tuple[int, float]]:
  """``segment -> (sessions, mean of the sessions' completion)`` over the sessions of
  ``arm`` (None: of all arms)."""
  sessions = _sessions(events)
  if arm is not None:
    sessions = sessions[sessions["arm"] == arm]
  out = {}
  for segment, rows in sessions.groupby("segment", sort=True):
    values = rows[COMPLETION].to_numpy(np.float64)
    values = values[np.isfinite(values)]
    if values.size:
      out[segment] = (int(values.size), float(values.mean()))
  return out
