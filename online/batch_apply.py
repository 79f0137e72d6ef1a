"""Applying one parsed micro-batch of play events, vectorised across its listeners.

This module owns :func:`apply_events`: the events of a batch (``online.event_batch``
columns) are sorted by listener and time (equal times in log order) and decided with
numpy against each listener's small stored profile (``state_store.Profile``), by the
rules of ``ListenerState.apply`` one event at a time, plus one only a store can apply: an
event older than its listener's newest by more than the lateness limit is quarantined;
a play equal in (ts, track, session) to one held, or to one earlier in the batch, is a
duplicate; one below its
listener's oldest held play row once rows were cut (``StateStore.history_floors``: only
after a run with a shorter lateness limit, since trims keep the rows of the lateness
window) is quarantined, since a repeat of a cut play would count twice; every other event
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


BELOW_HISTORY = ("older than every play row held for the listener (rows were cut below "
                 "it): cannot be told from a repeat of a counted play")


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
    mask: Which of the batch's events were applied, in their (log) order; None when
      none was.
  """
  batch: state_store.Batch = dataclasses.field(default_factory=state_store.Batch)
  applied: int = 0
  duplicates: int = 0
  late: List[Tuple[int, str]] = dataclasses.field(default_factory=list)
  oldest_ts: Optional[int] = None
  mask: Optional[np.ndarray] = None


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
  ts = np.asarray(columns.ts, np.int64)
  order = np.lexsort((ts, user_code))
  u = user_code[order]
  t = ts[order]
  rows = _Sorted(columns, order)
  stored = _StoredProfiles(users, profiles(users))
  newest = stored.newest[u]
  late = newest - t > max_lateness_s
  dup, below = _duplicates(u, t, late, newest, rows, users, stored.play_rows, held_plays,
                           history_floors)
  applied = ~late & ~dup & ~below
  out.applied = int(applied.sum())
  out.duplicates = int(dup.sum())
  line = columns.line
  out.late = [(line[i], f"late by {gap} s (limit {max_lateness_s} s)") for i, gap in zip(
      order[late].tolist(), (newest - t)[late].tolist())]
  out.late += [(line[i], BELOW_HISTORY) for i in order[below].tolist()]
  if not out.applied:
    return out
  out.oldest_ts = int(t[applied].min())

  index = np.arange(n)
  starts = np.flatnonzero(np.diff(u, prepend=-1))
  group_start = np.maximum.accumulate(np.where(np.diff(u, prepend=-1) != 0, index, 0))
  segment, tenure = rows.objects("segment"), rows.objects("tenure")
  # The newest applied event naming a segment (tenure) at or after the stored one's
  # time sets it; forward-filled within each listener's run.
  seg_from = _last_before(applied & np.not_equal(segment, None) & (t >= newest), index,
                          group_start)
  ten_from = _last_before(applied & np.not_equal(tenure, None) & (t >= stored.tenure_ts[u]),
                          index, group_start)
  segment_after = np.where(seg_from >= 0, segment[seg_from], stored.segment[u])
  batch = out.batch
  # Rows in log order: picking them in the sorted order would read the columns at
  # random (several times slower for 20,000 rows); the stores group them.
  in_log_order = np.zeros(n, bool)
  in_log_order[order] = applied
  out.mask = in_log_order
  batch.plays = list(itertools.compress(
      zip(columns.user, columns.ts, columns.track, columns.session, columns.artist,
          columns.completion, columns.skip), in_log_order.tolist()))
  batch.popularity = _popularity(segment_after, rows.objects("track"),
                                 applied & (rows.floats("skip") < 0.5))
  _profiles_after(batch, stored, users, u, t, applied, starts, seg_from, ten_from,
                  segment_after, tenure, rows, max_lateness_s)
  return out


def _user_codes(user_ids: List[str]) -> Tuple[List[str], np.ndarray]:
  """The distinct ids in id order, and each event's index among them.

  Ids in id order make the batch's profiles come out in the stores' key order (Python's
  string order is code point order, as the stores' is).
  """
  users = sorted(dict.fromkeys(user_ids))
  index = {u: i for i, u in enumerate(users)}
  return users, np.fromiter(map(index.__getitem__, user_ids), np.int64, len(user_ids))


class _Sorted:
  """The batch's columns in sorted order, each taken only when a rule asks for it."""

  def __init__(self, columns: event_batch.EventColumns, order: np.ndarray):
    self._columns = columns
    self.order = order

  def values(self, name: str, js: List[int]) -> List:
    """Column ``name`` of sorted events ``js``."""
    column, order = getattr(self._columns, name), self.order
    return [column[i] for i in order[js].tolist()]

  def objects(self, name: str) -> np.ndarray:
    """Column ``name`` in sorted order, as an object array."""
    values = np.empty(len(self.order), object)
    values[:] = getattr(self._columns, name)
    return values[self.order]

  def floats(self, name: str) -> np.ndarray:
    """Column ``name`` in sorted order, as float64."""
    return np.asarray(getattr(self._columns, name), np.float64)[self.order]


class _StoredProfiles:
  """The stored profiles of a batch's listeners as arrays by listener code."""

  def __init__(self, users: List[str], stored: Mapping[str, state_store.Profile]):
    cold = state_store.Profile()
    # One transpose of the profile tuples, then one conversion per numeric field.
    (newest, segment, tenure_days, tenure_ts, play_rows,
     self.counters) = zip(*[stored.get(user, cold) for user in users])
    self.newest = np.array(newest, np.int64)
    self.tenure_ts = np.array(tenure_ts, np.int64)
    self.play_rows = np.array(play_rows, np.int64)
    self.tenure_days = np.array(tenure_days, np.float64)
    self.segment = np.empty(len(users), object)
    self.segment[:] = segment


def _duplicates(u: np.ndarray, t: np.ndarray, late: np.ndarray, newest: np.ndarray,
                rows: _Sorted, users: List[str], play_rows: np.ndarray,
                held_plays: HeldPlays, history_floors: Floors
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Which sorted events repeat a play held or earlier in the batch, and which fall below
  their listener's history floor without repeating a held play (``play_rows``: the
  stored play rows of each listener code)."""
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
  # Track and session of the checked events, fetched once.
  track, session = rows.values("track", check), rows.values("session", check)
  checked_user = u[check].tolist()
  checked_ts = t[check].tolist()
  is_older = older[check].tolist()
  keys = [(users[c], ts, tr, se) for c, ts, tr, se, o in zip(
      checked_user, checked_ts, track, session, is_older) if o]
  held = held_plays(keys) if keys else set()
  # Only a listener that may hold HISTORY_LEN rows has a floor.
  older_codes = u[older]
  asked = sorted({users[c] for c in older_codes[
      play_rows[older_codes] >= feature_spec.HISTORY_LEN].tolist()})
  floors = history_floors(asked) if asked else {}
  seen: Set[Tuple[int, int, str, str]] = set()
  for j, c, ts, tr, se, o in zip(check, checked_user, checked_ts, track, session, is_older):
    key = (users[c], ts, tr, se)
    if o and key not in held:
      floor = floors.get(key[0])
      if floor is not None and key[1:] < floor:
        below[j] = True
        continue
    if key in seen or (o and key in held):
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
                    seg_from: np.ndarray, ten_from: np.ndarray, segment_after: np.ndarray,
                    tenure: np.ndarray, rows: _Sorted, max_lateness_s: int) -> None:
  """The new profiles and trims of the listeners with an applied event."""
  ends = np.append(starts[1:], len(u)) - 1
  counts = np.add.reduceat(applied.astype(np.int64), starts)
  newest = np.maximum.reduceat(np.where(applied, t, np.iinfo(np.int64).min), starts)
  touched = counts > 0
  starts, ends, counts, newest = starts[touched], ends[touched], counts[touched], newest[
      touched]
  codes = u[starts]
  newest = np.maximum(newest, stored.newest[codes])
  play_rows = stored.play_rows[codes] + counts
  trim = play_rows > state_store.TRIM_AT
  names = [users[c] for c in codes.tolist()]
  # Rows an event the updater still accepts could repeat stay: the dedup window is the
  # lateness window.
  batch.trim = list(zip(itertools.compress(names, trim.tolist()),
                        (newest[trim] - max_lateness_s).tolist()))
  play_rows[trim] = feature_spec.HISTORY_LEN
  from_batch = ten_from[ends]
  given = from_batch >= 0
  tenure_ts = np.where(given, t[from_batch], stored.tenure_ts[codes])
  tenure_days = stored.tenure_days[codes]
  tenure_days[given] = tenure[from_batch[given]].astype(np.float64)
  rings = _counters(stored, codes, u, t, applied, rows)
  # tuple.__new__ builds each Profile in C, without the named tuple's Python __new__.
  batch.profiles = dict(zip(names, map(
      tuple.__new__, itertools.repeat(state_store.Profile),
      zip(newest.tolist(), segment_after[ends].tolist(), tenure_days.tolist(),
          tenure_ts.tolist(), play_rows.tolist(), rings))))


def _counters(stored: _StoredProfiles, codes: np.ndarray, u: np.ndarray, t: np.ndarray,
              applied: np.ndarray, rows: _Sorted) -> List[bytes]:
  """The counter rings of listeners ``codes`` (ascending) after the applied events whose
  day is still kept."""
  rings = state_store.counter_rings([stored.counters[c] for c in codes.tolist()])
  day = t // listener_state.DAY_S
  stored_day = stored.newest[u] // listener_state.DAY_S
  counted = applied & (day > stored_day - listener_state.COUNTER_DAYS)
  idx = np.flatnonzero(counted)
  if len(idx):
    cu, cd = u[idx], day[idx]
    starts = np.flatnonzero((np.diff(cu, prepend=-1) != 0) | (np.diff(cd, prepend=-1) != 0))
    sums = np.stack([np.diff(np.append(starts, len(idx)))] + [
        np.add.reduceat(rows.floats(name)[idx] >= 0.5, starts)
        for name in ("skip", "like", "subscription")], axis=1)
    row, days = np.searchsorted(codes, cu[starts]), cd[starts]
    slot = days % listener_state.COUNTER_DAYS
    # A slot holding an older day (out of the window now) starts over for the new day.
    stale = rings[row, slot, 0] != days
    rings[row[stale], slot[stale]] = 0
    rings[row[stale], slot[stale], 0] = days[stale]
    rings[row, slot, 1:] += sums.astype(np.int32)
  data, size = rings.tobytes(), rings[0].nbytes
  return [data[i:i + size] for i in range(0, len(data), size)]


def _popularity(segment_after: np.ndarray, tracks: np.ndarray, kept: np.ndarray
                ) -> Dict[Tuple[str, str], int]:
  """(segment, track) -> plays, per segment and overall, of the ``kept`` plays."""
  kept_tracks = tracks[kept].tolist()
  per_segment = collections.Counter(zip(segment_after[kept].tolist(), kept_tracks))
  overall = collections.Counter(kept_tracks)
  per_segment.update({(state_store.ALL_SEGMENTS, track): n for track, n in overall.items()})
  return per_segment
