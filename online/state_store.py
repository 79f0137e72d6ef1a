"""The listener state store interface, its key layout and its format version.

This module owns what every backend offers (:class:`StateStore`): read listeners' states
(materialised from their rows), read the small per-listener profiles the updater checks
events against, commit a micro-batch atomically (new play rows, profile values, counter
increments, trims, the per-segment popularity counts, the quarantined lines and the
source offsets they came from, all in one transaction, so a crash leaves either the
whole batch or none of it), read the offsets back to resume, and the per-segment
popularity list the gateway falls back on. ``online.stores`` picks the backend from a
URL: a path or ``sqlite:///PATH`` (the embedded default, ``online.sqlite_store``) or
``redis://HOST:PORT/DB`` (``online.redis_store``).

The data, shared by both backends and shaped as Feast's online stores key features,
entity ``user_id``: feature view ``listener_profile`` (newest event time, segment,
tenure, how many play rows are held, and the per-day counters as one fixed-size binary
record: a ring of ``COUNTER_DAYS`` slots indexed by day) and ``listener_plays``, the
plays keyed by (time, track, session). Applying an event adds its play and rewrites the
listener's small profile; how a backend lays the plays out is its own (Redis: a sorted
set per listener; SQLite: one binary value per listener the new plays are appended to),
and each backend records its own layout version. The plays are also what tells a
repeated play from a new one, so a trim (once ``TRIM_AT`` rows were added since the
last) cuts only rows beyond the newest ``HISTORY_LEN`` that are older than the updater's
lateness limit: any event it still accepts is checked against rows, and a read takes the
newest ``HISTORY_LEN`` (the same plays as keeping exactly that many). A store of an
older format is migrated when opened; one of a newer format is refused. See
docs/nearline.md.
"""

import abc
import dataclasses
import struct
from typing import (Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set,
                    Tuple)

import numpy as np

from features import feature_spec
from online import listener_state

PROFILE_VIEW = "listener_profile"
PLAYS_VIEW = "listener_plays"
ENTITY_KEY = "user_id"
ALL_SEGMENTS = "all"   # the popularity list over every segment
TRIM_AT = 2 * feature_spec.HISTORY_LEN   # Profile.play_rows that calls for a trim

# A play row: (user, ts, track, session, artist, completion, skip).
PlayRow = Tuple[str, int, str, str, str, float, float]
# What identifies a play: (user, ts, track, session).
PlayKey = Tuple[str, int, str, str]
# A play's place in its listener's history: (ts, track, session).
HistoryKey = Tuple[int, str, str]
# The counter ring: slot ``day % COUNTER_DAYS`` holds (day, counts in COUNTERS order).
_RING_SHAPE = (listener_state.COUNTER_DAYS, 1 + len(listener_state.COUNTERS))
EMPTY_COUNTERS = np.full(_RING_SHAPE, -1, np.int32).tobytes()


class FormatError(RuntimeError):
  """A store holds a layout this version of Melody cannot read."""


class Profile(NamedTuple):
  """The per-listener values the updater checks events against and rewrites.

  Attributes:
    newest_ts: The newest event time applied.
    segment: The segment of the newest event that named one.
    tenure_days: Tenure at ``tenure_ts``.
    tenure_ts: Time of the newest event that gave the tenure (0: none).
    play_rows: ``HISTORY_LEN`` plus the play rows added since the last trim (the
      exact row count before the first; paces the trims).
    counters: The counter ring (``EMPTY_COUNTERS``: none counted).
  """
  newest_ts: int = 0
  segment: str = listener_state.COLD_START_SEGMENT
  tenure_days: float = 0.0
  tenure_ts: int = 0
  play_rows: int = 0
  counters: bytes = EMPTY_COUNTERS


@dataclasses.dataclass(frozen=True)
class Offset:
  """How far a source file has been applied: byte offset and line count."""
  offset: int = 0
  lines: int = 0


@dataclasses.dataclass(frozen=True)
class Quarantined:
  """A source line that was not applied, with where it was and why."""
  file: str
  line: int
  raw: str
  reason: str


@dataclasses.dataclass
class Batch:
  """One micro-batch's effect, committed atomically by :meth:`StateStore.commit`.

  Attributes:
    plays: New play rows (a row already held is kept as it is); every listener with
      rows has its profile in ``profiles``.
    profiles: Listener -> its profile after the batch (whole values).
    trim: (listener, cutoff time): cut the listener's play rows that are both older
      than its newest ``HISTORY_LEN`` and older than the cutoff.
    popularity: (segment, track_id) -> plays to add.
    quarantined: Lines set aside.
    offsets: Source file -> offset after this batch.
  """
  plays: List[PlayRow] = dataclasses.field(default_factory=list)
  profiles: Dict[str, Profile] = dataclasses.field(default_factory=dict)
  trim: List[Tuple[str, int]] = dataclasses.field(default_factory=list)
  popularity: Dict[Tuple[str, str], int] = dataclasses.field(default_factory=dict)
  quarantined: List[Quarantined] = dataclasses.field(default_factory=list)
  offsets: Dict[str, Offset] = dataclasses.field(default_factory=dict)


class StateStore(abc.ABC):
  """Listener states, popularity lists, quarantine and source offsets."""

  url: str = ""

  @abc.abstractmethod
  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    """The states of the listeners that have one (unknown listeners are left out)."""

  def get(self, user_id: str) -> Optional[listener_state.ListenerState]:
    """The state of ``user_id``, or None for a listener never seen."""
    return self.get_many([user_id]).get(user_id)

  @abc.abstractmethod
  def profiles(self, user_ids: Sequence[str]) -> Dict[str, Profile]:
    """The profiles of the listeners that have one."""

  @abc.abstractmethod
  def held_plays(self, keys: Sequence[PlayKey]) -> Set[PlayKey]:
    """Which of ``keys`` the store holds a play row of."""

  @abc.abstractmethod
  def history_floors(self, user_ids: Sequence[str]) -> Dict[str, HistoryKey]:
    """Per listener holding at least ``HISTORY_LEN`` play rows, the key of its oldest
    (listeners holding fewer, who never had rows cut, are left out).

    A trim cuts only rows below every row it keeps, so every play at or above that key
    that was ever applied is still held, and an event below it is the one kind a store
    cannot tell from a repeat of a counted play.
    """

  @abc.abstractmethod
  def commit(self, batch: Batch) -> None:
    """Writes all of ``batch`` in one transaction."""

  @abc.abstractmethod
  def offsets(self) -> Dict[str, Offset]:
    """Source file -> the offset its applied lines end at."""

  @abc.abstractmethod
  def top_tracks(self, segment: str, k: int) -> List[Tuple[str, float]]:
    """The ``k`` most played tracks of ``segment`` (``ALL_SEGMENTS``: of everyone)."""

  @abc.abstractmethod
  def quarantined(self) -> List[Quarantined]:
    """Every quarantined line, by file and line."""

  @abc.abstractmethod
  def listener_count(self) -> int:
    """How many listeners have a state."""

  @abc.abstractmethod
  def bytes_per_listener(self) -> float:
    """Storage the states take per listener (backend-specific measure, see its doc)."""

  def close(self) -> None:
    """Releases connections."""

  def __enter__(self) -> "StateStore":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def merge_offsets(current: Mapping[str, Offset], new: Mapping[str, Offset]
                  ) -> Dict[str, Offset]:
  """``current`` updated by ``new`` (a file's offset only moves forward)."""
  out = dict(current)
  for name, off in new.items():
    if name not in out or off.offset >= out[name].offset:
      out[name] = off
  return out


def batch_of_states(states: Iterable[listener_state.ListenerState]) -> Batch:
  """The rows of whole states, as a batch that writes them into a store that holds none
  of these listeners (a migration, a test's fixture)."""
  batch = Batch()
  for state in states:
    user = state.user_id
    batch.plays.extend((user, p[listener_state.TS], p[listener_state.TRACK],
                        p[listener_state.SESSION], p[listener_state.ARTIST],
                        p[listener_state.COMPLETION], p[listener_state.SKIP])
                       for p in state.plays)
    ring = np.full(_RING_SHAPE, -1, np.int32)
    for day, row in state.counters.items():
      ring[day % listener_state.COUNTER_DAYS] = (day, *row)
    batch.profiles[user] = Profile(state.newest_ts, state.segment, state.tenure_days,
                                   state.tenure_ts, len(state.plays), ring.tobytes())
  return batch


_PROFILE_HEAD = struct.Struct("<qdqq")


def pack_profile(profile: Profile) -> bytes:
  """A profile as one bytes value: the numbers, the counter ring, the segment."""
  return (_PROFILE_HEAD.pack(profile.newest_ts, profile.tenure_days, profile.tenure_ts,
                             profile.play_rows) + profile.counters
          + profile.segment.encode())


def unpack_profile(data: bytes) -> Profile:
  """The profile :func:`pack_profile` packed."""
  head, ring = _PROFILE_HEAD.size, _PROFILE_HEAD.size + len(EMPTY_COUNTERS)
  newest_ts, tenure_days, tenure_ts, play_rows = _PROFILE_HEAD.unpack_from(data)
  return Profile(newest_ts, data[ring:].decode(), tenure_days, tenure_ts, play_rows,
                 data[head:ring])


def counter_rings(blobs: Sequence[bytes]) -> np.ndarray:
  """Counter rings as one writable array, (len(blobs), COUNTER_DAYS, 1 + counters)."""
  return np.frombuffer(b"".join(blobs), np.int32).reshape(-1, *_RING_SHAPE).copy()


def _counters(blob: bytes) -> Dict[int, List[int]]:
  """Epoch day -> counts of the kept days of a counter ring."""
  ring = counter_rings([blob])[0]
  newest = int(ring[:, 0].max())
  return {int(r[0]): [int(v) for v in r[1:]] for r in ring[np.argsort(ring[:, 0])]
          if r[0] >= 0 and r[0] > newest - listener_state.COUNTER_DAYS}


def materialise(user_id: str, profile: Profile, plays: Iterable[Tuple]
                ) -> listener_state.ListenerState:
  """A listener's state from its stored rows.

  Args:
    user_id: The listener.
    profile: Its profile.
    plays: Its play rows as (ts, track, session, artist, completion, skip), in
      (ts, track, session) order; the newest ``HISTORY_LEN`` are kept.
  """
  held = list(plays)[-feature_spec.HISTORY_LEN:]
  return listener_state.ListenerState(
      user_id=user_id, segment=profile.segment, tenure_days=float(profile.tenure_days),
      tenure_ts=int(profile.tenure_ts), newest_ts=int(profile.newest_ts),
      plays=[(int(ts), track, artist, float(completion), float(skip), session)
             for ts, track, session, artist, completion, skip in held],
      counters=_counters(profile.counters))
