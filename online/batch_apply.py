"""Applying one parsed micro-batch of play events to listeners' states.

This module owns :func:`apply_events`: the events of a batch (``online.event_batch``
columns) are grouped by listener and each listener's events are applied in timestamp
order (equal times in log order) in one pass. A listener's run of plays all newer than
its state and at distinct times, the usual case, is appended as columns
(``ListenerState.extend_newer``); any other run goes event by event through
``ListenerState.apply`` with the lateness check, so a late, out-of-order or repeated
play gets exactly the treatment it gets alone. The result holds what the store commits:
the changed states and the popularity counts of the plays not skipped.
"""

import collections
import dataclasses
import itertools
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from online import event_batch
from online import listener_state
from online import state_store

_COLUMNS = ("ts", "track", "artist", "session", "completion", "skip", "like",
            "subscription", "segment", "tenure")


@dataclasses.dataclass
class Applied:
  """What applying a batch did.

  Attributes:
    changed: Listener -> its changed state.
    popularity: (segment, track) -> plays to add (``state_store.Batch.popularity``).
    applied: Events applied.
    duplicates: Events that repeat a play already held.
    late: (index of the event's line in the batch, reason), events quarantined late.
    oldest_ts: Time of the oldest applied event (None: none applied).
  """
  changed: Dict[str, listener_state.ListenerState] = dataclasses.field(default_factory=dict)
  popularity: Dict[Tuple[str, str], int] = dataclasses.field(default_factory=dict)
  applied: int = 0
  duplicates: int = 0
  late: List[Tuple[int, str]] = dataclasses.field(default_factory=list)
  oldest_ts: Optional[int] = None


def apply_events(columns: event_batch.EventColumns,
                 states: Callable[[List[str]], Mapping[str, listener_state.ListenerState]],
                 max_lateness_s: int) -> Applied:
  """Applies ``columns`` to the states ``states(user_ids)`` gives (changed in place;
  a listener it leaves out starts from the cold-start state).

  Args:
    columns: The batch's valid events.
    states: Reads the current states of the given listeners.
    max_lateness_s: An event older than its listener's newest event by more than this
      is quarantined.
  """
  out = Applied()
  n = len(columns)
  if not n:
    return out
  codes: Dict[str, int] = {}
  user_code = np.asarray([codes.setdefault(u, len(codes)) for u in columns.user])
  ts = np.asarray(columns.ts, np.int64)
  order = np.lexsort((ts, user_code))   # by listener, then time; stable for ties
  code_sorted, ts_sorted = user_code[order], ts[order]
  starts = np.flatnonzero(np.diff(code_sorted, prepend=-1)).tolist()
  ends = starts[1:] + [n]
  # A run with two plays at the same time may hold a repeat: applied one by one.
  same_time = np.concatenate([[0], (ts_sorted[1:] == ts_sorted[:-1])
                              & (code_sorted[1:] == code_sorted[:-1])])
  ties = np.cumsum(same_time).tolist()
  order = order.tolist()
  current = states(list(codes))
  cols = [_take(getattr(columns, name), order) for name in _COLUMNS]
  ts_col = cols[0]
  rows = list(zip(*cols))
  segment_after: List[Optional[str]] = [None] * n   # None: not applied
  oldest = None
  for s, e in zip(starts, ends):
    user = columns.user[order[s]]
    state = current.get(user) or listener_state.ListenerState(user)
    if e - s == 1 and ts_col[s] > state.newest_ts:
      segment_after[s] = state.append_newer(*rows[s])
      out.applied += 1
      first = ts_col[s]
    elif ts_col[s] > state.newest_ts and ties[e - 1] == ties[s]:
      segment_after[s:e] = state.extend_newer(*[c[s:e] for c in cols])
      out.applied += e - s
      first = ts_col[s]
    else:
      first = _one_by_one(state, columns, order, s, e, segment_after, max_lateness_s, out)
      if first is None:
        continue
    out.changed[user] = state
    if oldest is None or first < oldest:
      oldest = first
  out.oldest_ts = oldest
  out.popularity = _popularity(segment_after, cols[1], cols[5])
  return out


def _take(values: List, order: List[int]) -> List:
  """``values`` in ``order``."""
  return [values[i] for i in order]


def _one_by_one(state: listener_state.ListenerState, columns: event_batch.EventColumns,
                order: List[int], s: int, e: int, segment_after: List[Optional[str]],
                max_lateness_s: int, out: Applied) -> Optional[int]:
  """Applies sorted events ``s:e`` (one listener's) with the lateness and repeat checks;
  returns the time of the oldest applied one (None: none applied)."""
  oldest = None
  for j in range(s, e):
    event = columns.event(order[j])
    if state.newest_ts - event.ts > max_lateness_s:
      out.late.append((columns.line[order[j]], f"late by {state.newest_ts - event.ts} s "
                                               f"(limit {max_lateness_s} s)"))
      continue
    if state.apply(event):
      segment_after[j] = state.segment
      out.applied += 1
      if oldest is None:
        oldest = event.ts   # the run is in time order
    else:
      out.duplicates += 1
  return oldest


def _popularity(segment_after: List[Optional[str]], tracks: List[str],
                skips: List[float]) -> Dict[Tuple[str, str], int]:
  """(segment, track) -> plays, per segment and overall, of the applied plays not
  skipped."""
  kept = np.asarray(skips) < 0.5
  per_segment = collections.Counter(
      itertools.compress(zip(segment_after, tracks), kept.tolist()))
  overall: Dict[Tuple[str, str], int] = collections.Counter()
  for key in [key for key in per_segment if key[0] is None]:
    del per_segment[key]
  for (_, track), plays in per_segment.items():
    overall[(state_store.ALL_SEGMENTS, track)] += plays
  return {**per_segment, **overall}
