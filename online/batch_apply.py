"""Applying one parsed micro-batch of play events, vectorised across its listeners.

This module owns :func:`apply_events`: the events of a batch (``online.event_batch``
columns) are sorted by listener and time (equal times in log order) and decided with
numpy against each listener's small stored profile (``state_store.Profile``), by the
rules of ``ListenerState.apply`` one event at a time: an event older than its listener's
newest by more than the lateness limit is quarantined; a play equal in (ts, track,
session) to one held, or to one earlier in the batch, is a duplicate; one below its
listener's ``HISTORY_LEN``-th newest held play (``StateStore.history_floors``) is
quarantined, since the plays below that may have been cut and a repeat of one of them
would count twice; every other event
becomes one new play row, adds to its day's slot of the listener's counter ring when
that day is still kept, and moves the segment and tenure when it is the newest to name
them. Only the events at or before their listener's newest time are looked up among the
held plays and against the floors. The result is the store's batch: play rows, new
profiles (counter rings included), trims and the popularity counts of the plays not
skipped.
"""

import collections
import dataclasses
import itertools
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from features import feature_spec
from online import event_batch
from online import listener_state
from online import state_store

Profiles = Callable[[List[str]], Mapping[str, state_store.Profile]]
HeldPlays = Callable[[List[state_store.PlayKey]], Set[state_store.PlayKey]]
Floors = Callable[[List[str]], Mapping[str, state_store.HistoryKey]]


BELOW_HISTORY = (f"older than the listener's last {feature_spec.HISTORY_LEN} plays: "
                 "cannot be told from a repeat of a counted play")


@dataclasses.dataclass
class Applied:
  """What applying a batch did.

  Attributes:
    batch: The store writes (plays, profiles, counters, trims, popularity).
    applied: Events applied.
    duplicates: Events that repeat a play already held.
    late: (index of the event's line in the batch, reason), events quarantined: later
      than the limit, or below their listener's history floor.
    oldest_ts: Time of the oldest applied event (None: none applied).
  """
  batch: state_store.Batch = dataclasses.field(default_factory=state_store.Batch)
  applied: int = 0
  duplicates: int = 0
  late: List[Tuple[int, str]] = dataclasses.field(default_factory=list)
  oldest_ts: Optional[int] = None


def apply_events(columns: event_batch.EventColumns, profiles: Profiles,
                 held_plays: HeldPlays, history_floors: Floors, max_lateness_s: int
                 ) -> Applied:
  """Decides ``columns``' events against the listeners' stored profiles.

  Args:
    columns: The batch's valid events.
    profiles: Reads the stored profiles of the given listeners (a listener left out
      starts from the cold-start profile).
    held_plays: Which of the given play keys the store holds.
    history_floors: The stores' ``history_floors`` of the given listeners.
    max_lateness_s: An event older than its listener's newest event by more than this
      is quarantined.
  """
  out = Applied()
  n = len(columns)
  if not n:
    return out
  users, user_code = _user_codes(columns.user)
  order = np.lexsort((np.asarray(columns.ts, np.int64), user_code))
  u = user_code[order]
  t = np.asarray(columns.ts, np.int64)[order]
  rows = _Sorted(columns, order.tolist())
  stored = _StoredProfiles(users, profiles(users))
  newest = stored.newest[u]
  late = newest - t > max_lateness_s
  dup, below = _duplicates(u, t, late, newest, rows, users, held_plays, history_floors)
  applied = ~late & ~dup & ~below
  out.applied = int(applied.sum())
  out.duplicates = int(dup.sum())
  line = columns.line
  out.late = [(line[order[j]], f"late by {newest[j] - t[j]} s (limit {max_lateness_s} s)")
              for j in np.flatnonzero(late).tolist()]
  out.late += [(line[order[j]], BELOW_HISTORY) for j in np.flatnonzero(below).tolist()]
  if not out.applied:
    return out
  out.oldest_ts = int(t[applied].min())

  index = np.arange(n)
  starts = np.flatnonzero(np.diff(u, prepend=-1))
  group_start = np.maximum.accumulate(np.where(np.diff(u, prepend=-1) != 0, index, 0))
  has_segment = np.not_equal(np.asarray(rows.segment, dtype=object), None)
  has_tenure = np.not_equal(np.asarray(rows.tenure, dtype=object), None)
  # The newest applied event naming a segment (tenure) at or after the stored one's
  # time sets it; forward-filled within each listener's run.
  seg_from = _last_before(applied & has_segment & (t >= newest), index, group_start)
  ten_from = _last_before(applied & has_tenure & (t >= stored.tenure_ts[u]), index,
                          group_start)
  segment_after = [rows.segment[f] if f >= 0 else stored.segment[c]
                   for f, c in zip(seg_from.tolist(), u.tolist())]
  batch = out.batch
  batch.plays = [(users[c], ts, track, session, artist, completion, skip)
                 for c, ts, track, session, artist, completion, skip, keep in zip(
                     u.tolist(), t.tolist(), rows.track, rows.session, rows.artist,
                     rows.completion, rows.skip, applied.tolist()) if keep]
  batch.popularity = _popularity(segment_after, rows.track, rows.skip, applied)
  _profiles_after(batch, stored, users, u, t, applied, starts, seg_from, ten_from,
                  segment_after, rows, _counters(stored, u, t, applied, rows))
  return out


def _user_codes(user_ids: List[str]) -> Tuple[List[str], np.ndarray]:
  """The distinct ids in id order, and each event's index among them.

  Ids in id order make the batch's rows come out in the stores' key order (numpy's
  unicode order is code point order, as Python's and the stores' are).
  """
  distinct = set(user_ids)
  if any("\0" in u for u in distinct):   # numpy strings drop trailing NULs
    users = sorted(distinct)
    index = {u: i for i, u in enumerate(users)}
    return users, np.fromiter(map(index.__getitem__, user_ids), np.int64, len(user_ids))
  unique, codes = np.unique(np.asarray(user_ids, dtype=str), return_inverse=True)
  return unique.tolist(), codes


class _Sorted:
  """The batch's columns taken in sorted order (plain lists)."""

  def __init__(self, columns: event_batch.EventColumns, order: List[int]):
    for name in ("track", "artist", "session", "completion", "skip", "like",
                 "subscription", "segment", "tenure"):
      values = getattr(columns, name)
      setattr(self, name, [values[i] for i in order])


class _StoredProfiles:
  """The stored profiles of a batch's listeners as arrays by listener code."""

  def __init__(self, users: List[str], stored: Mapping[str, state_store.Profile]):
    cold = state_store.Profile()
    found = [stored.get(user, cold) for user in users]
    self.newest = np.fromiter((p.newest_ts for p in found), np.int64, len(users))
    self.tenure_ts = np.fromiter((p.tenure_ts for p in found), np.int64, len(users))
    self.play_rows = np.fromiter((p.play_rows for p in found), np.int64, len(users))
    self.segment = [p.segment for p in found]
    self.tenure_days = [p.tenure_days for p in found]
    self.counters = [p.counters for p in found]


def _duplicates(u: np.ndarray, t: np.ndarray, late: np.ndarray, newest: np.ndarray,
                rows: _Sorted, users: List[str], held_plays: HeldPlays,
                history_floors: Floors) -> Tuple[np.ndarray, np.ndarray]:
  """Which sorted events repeat a play held or earlier in the batch, and which fall below
  their listener's history floor without repeating a held play."""
  n = len(u)
  dup = np.zeros(n, bool)
  below = np.zeros(n, bool)
  same = np.zeros(n + 1, bool)
  same[1:n] = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
  # Only an event no newer than its listener's newest can equal a held play or fall
  # below the floor, and only events sharing a listener and time can equal each other.
  older = (t <= newest) & ~late
  check = np.flatnonzero((older | same[:n] | same[1:]) & ~late).tolist()
  if not check:
    return dup, below
  older_idx = np.flatnonzero(older).tolist()
  keys = [(users[c], ts, rows.track[j], rows.session[j])
          for j, c, ts in zip(older_idx, u[older].tolist(), t[older].tolist())]
  held = held_plays(keys) if keys else set()
  floors = history_floors(sorted({key[0] for key in keys})) if keys else {}
  for j, key in zip(older_idx, keys):
    floor = floors.get(key[0])
    if floor is not None and key[1:] < floor and key not in held:
      below[j] = True
  seen: Set[Tuple[int, int, str, str]] = set()
  for j in check:
    if below[j]:
      continue
    c = int(u[j])
    key = (c, int(t[j]), rows.track[j], rows.session[j])
    if key in seen or (users[c], *key[1:]) in held:
      dup[j] = True
    else:
      seen.add(key)
  return dup, below


def _last_before(sets: np.ndarray, index: np.ndarray, group_start: np.ndarray
                 ) -> np.ndarray:
  """Per event, the index of the last event at or before it in its listener's run with
  ``sets`` true (-1: none)."""
  last = np.maximum.accumulate(np.where(sets, index, -1))
  return np.where(last >= group_start, last, -1)


def _profiles_after(batch: state_store.Batch, stored: _StoredProfiles, users: List[str],
                    u: np.ndarray, t: np.ndarray, applied: np.ndarray, starts: np.ndarray,
                    seg_from: np.ndarray, ten_from: np.ndarray,
                    segment_after: List[str], rows: _Sorted, rings: Dict[int, bytes]
                    ) -> None:
  """The new profiles and trims of the listeners with an applied event."""
  ends = np.append(starts[1:], len(u)) - 1
  counts = np.add.reduceat(applied.astype(np.int64), starts)
  newest = np.maximum.reduceat(np.where(applied, t, np.iinfo(np.int64).min), starts)
  codes = u[starts]
  newest = np.maximum(newest, stored.newest[codes])
  play_rows = stored.play_rows[codes] + counts
  trim = play_rows > state_store.TRIM_AT
  batch.trim = [users[c] for c in codes[trim & (counts > 0)].tolist()]
  play_rows[trim] = feature_spec.HISTORY_LEN
  from_batch = ten_from[ends]
  tenure_ts = np.where(from_batch >= 0, t[from_batch], stored.tenure_ts[codes]).tolist()
  tenure_days, rings_before, profile = stored.tenure_days, stored.counters, state_store.Profile
  batch.profiles = {
      users[c]: profile(ts, segment_after[end],
                        float(rows.tenure[f]) if f >= 0 else tenure_days[c], tenure,
                        n_rows, rings.get(c) or rings_before[c])
      for c, end, ts, n_rows, f, tenure in itertools.compress(
          zip(codes.tolist(), ends.tolist(), newest.tolist(), play_rows.tolist(),
              from_batch.tolist(), tenure_ts), (counts > 0).tolist())}


def _counters(stored: _StoredProfiles, u: np.ndarray, t: np.ndarray, applied: np.ndarray,
              rows: _Sorted) -> Dict[int, bytes]:
  """Listener code -> its counter ring after the applied events whose day is still kept
  (listeners with none keep their ring)."""
  day = t // listener_state.DAY_S
  stored_day = stored.newest[u] // listener_state.DAY_S
  counted = applied & (day > stored_day - listener_state.COUNTER_DAYS)
  idx = np.flatnonzero(counted)
  if not len(idx):
    return {}
  cu, cd = u[idx], day[idx]
  starts = np.flatnonzero((np.diff(cu, prepend=-1) != 0) | (np.diff(cd, prepend=-1) != 0))
  sums = np.stack([np.diff(np.append(starts, len(idx)))] + [
      np.add.reduceat(np.asarray(values, np.float64)[idx] >= 0.5, starts)
      for values in (rows.skip, rows.like, rows.subscription)], axis=1)
  codes = np.unique(cu)
  rings = state_store.counter_rings([stored.counters[c] for c in codes.tolist()])
  row, days = np.searchsorted(codes, cu[starts]), cd[starts]
  slot = days % listener_state.COUNTER_DAYS
  # A slot holding an older day (out of the window now) starts over for the new day.
  stale = rings[row, slot, 0] != days
  rings[row[stale], slot[stale]] = 0
  rings[row[stale], slot[stale], 0] = days[stale]
  rings[row, slot, 1:] += sums.astype(np.int32)
  return {c: ring.tobytes() for c, ring in zip(codes.tolist(), rings)}


def _popularity(segment_after: List[str], tracks: List[str], skips: List[float],
                applied: np.ndarray) -> Dict[Tuple[str, str], int]:
  """(segment, track) -> plays, per segment and overall, of the applied plays not
  skipped."""
  kept = (np.asarray(skips) < 0.5) & applied
  per_segment = collections.Counter(
      itertools.compress(zip(segment_after, tracks), kept.tolist()))
  overall: Dict[Tuple[str, str], int] = collections.Counter()
  for (_, track), plays in per_segment.items():
    overall[(state_store.ALL_SEGMENTS, track)] += plays
  return {**per_segment, **overall}
