"""One listener's online state: recent plays, counters, segment, and the model inputs.

This module owns :class:`ListenerState`, the value the state stores materialise per
listener, and the pure rules that change and read it: applying a play event (kept in
timestamp order whatever order events arrive in, so a late event lands where it
belongs; ``online.batch_apply`` applies a whole batch by the same rules), the per-day
counters (plays, skips, likes, conversions), its compact JSON encoding, and the
listener inputs of the model's ``rank``/``recommend`` signatures (``serving.
request_schema.LISTENER_INPUTS``) for an impression at a given time: the last
``HISTORY_LEN`` plays, most recent first, and the session, the plays of the newest
session id within ``SESSION_WINDOW_S`` of the impression, as the training examples are
built (``features.raw_features``).
"""

import bisect
import dataclasses
import datetime
import operator
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import orjson

from features import feature_spec

COLD_START_SEGMENT = "new"
COUNTER_DAYS = 7     # days of per-day counters a state keeps
COUNTERS = ("plays", "skips", "likes", "conversions")
DAY_S = 86400


# A play of the history is a plain tuple (ts, track_id, artist_id, completion, skip,
# session_id): states hold up to HISTORY_LEN of them, and decoding a state's columns into
# tuples is several times cheaper than into named records.
TS, TRACK, ARTIST, COMPLETION, SKIP, SESSION = range(6)
Play = Tuple[int, str, str, float, float, str]


class PlayEvent(NamedTuple):
  """A validated play event as the nearline updater applies it."""
  user_id: str
  ts: int
  track_id: str
  artist_id: str = ""
  session_id: str = ""
  completion: Optional[float] = None
  skip: Optional[float] = None
  like: Optional[float] = None
  subscription: Optional[float] = None
  user_segment: Optional[str] = None
  user_tenure_days: Optional[float] = None


@dataclasses.dataclass
class ListenerState:
  """The online state of one listener.

  Attributes:
    user_id: The listener.
    segment: One of ``feature_spec.SEGMENTS``; ``new`` until an event says otherwise.
    tenure_days: Tenure at ``tenure_ts`` (grows with time after it).
    tenure_ts: Epoch seconds the tenure was recorded at (0: unknown).
    plays: The last ``HISTORY_LEN`` plays, oldest first (ascending ``ts``).
    counters: Epoch day -> counts in ``COUNTERS`` order, the last ``COUNTER_DAYS`` days.
    newest_ts: The newest event time applied.
  """
  user_id: str
  segment: str = COLD_START_SEGMENT
  tenure_days: float = 0.0
  tenure_ts: int = 0
  plays: List[Play] = dataclasses.field(default_factory=list)
  counters: Dict[int, List[int]] = dataclasses.field(default_factory=dict)
  newest_ts: int = 0

  # ------------------------------------------------------------------- updates
  def apply(self, event: PlayEvent) -> bool:
    """Applies one play event; returns False when it repeats a play already held.

    A play equal in (ts, track, session) to one in the history is the same play logged
    twice and changes nothing. Plays at the same second are ordered by track, then
    session. An event older than every held play of a full history
    still counts in the counters of its day but does not enter the history.
    """
    plays = self.plays
    # Plays are kept in (ts, track, session) order, the order the stores read rows in.
    key = (event.ts, event.track_id, event.session_id or "")
    if not plays or key > _KEY(plays[-1]):
      pos = len(plays)   # the usual case: the newest play so far
    else:
      pos = bisect.bisect_right(plays, key, key=_KEY)
      if pos and _KEY(plays[pos - 1]) == key:
        return False
    if event.user_segment:
      # The segment and tenure of the newest event win; a late event keeps the old ones.
      if event.ts >= self.newest_ts:
        self.segment = event.user_segment
    if event.user_tenure_days is not None and event.ts >= self.tenure_ts:
      self.tenure_days, self.tenure_ts = float(event.user_tenure_days), event.ts
    play = (event.ts, event.track_id, event.artist_id or "", _unit(event.completion),
            _unit(event.skip), event.session_id or "")
    full = len(self.plays) >= feature_spec.HISTORY_LEN
    if not (full and pos == 0):
      self.plays.insert(pos, play)
      del self.plays[:max(0, len(self.plays) - feature_spec.HISTORY_LEN)]
    self._count(event.ts, _unit(event.skip), _unit(event.like), _unit(event.subscription))
    self.newest_ts = max(self.newest_ts, event.ts)
    return True

  def _count(self, ts: int, skip: float, like: float, subscription: float) -> None:
    day = ts // DAY_S
    row = self.counters.get(day)
    if row is None:
      newest_day = max(day, max(self.counters, default=day))
      if day <= newest_day - COUNTER_DAYS:
        return
      row = self.counters[day] = [0] * len(COUNTERS)
      for old in [d for d in self.counters if d <= newest_day - COUNTER_DAYS]:
        del self.counters[old]
    row[0] += 1
    row[1] += skip >= 0.5
    row[2] += like >= 0.5
    row[3] += subscription >= 0.5

  # --------------------------------------------------------------------- reads
  def session(self, now: int) -> List[Play]:
    """Plays of the newest play's session within ``SESSION_WINDOW_S`` of ``now``,
    most recent first, at most ``SESSION_LEN``."""
    if not self.plays:
      return []
    current = self.plays[-1][SESSION]
    out = []
    for p in reversed(self.plays):
      if p[TS] < now - feature_spec.SESSION_WINDOW_S or len(out) == feature_spec.SESSION_LEN:
        break
      if p[SESSION] == current:
        out.append(p)
    return out

  def track_ids(self) -> List[str]:
    """The held plays' track ids, oldest first."""
    return [p[TRACK] for p in self.plays]

  def counter_totals(self) -> Dict[str, int]:
    """Counts over the kept days, by counter name."""
    totals = [sum(row[i] for row in self.counters.values()) for i in range(len(COUNTERS))]
    return dict(zip(COUNTERS, totals))

  def model_inputs(self, now: int, activity: str = "unknown",
                   surface: str = "home") -> Dict[str, np.ndarray]:
    """The listener inputs (batch 1) of ``rank``/``recommend`` for an impression at
    ``now`` in ``activity`` on ``surface``."""
    tenure = self.tenure_days
    if self.tenure_ts:
      tenure += max(0, now - self.tenure_ts) / DAY_S
    out = {
        "user_id": _strings([self.user_id]),
        "user_segment": _strings([self.segment]),
        "user_tenure_days": np.asarray([tenure], np.float32),
        "context_activity": _strings([activity]),
        "context_surface": _strings([surface]),
        "context_hour": np.asarray([(now // 3600) % feature_spec.NUM_HOURS], np.int64),
        "context_weekday": np.asarray(
            [datetime.datetime.fromtimestamp(now, datetime.timezone.utc).weekday()],
            np.int64),
    }
    history = list(reversed(self.plays))
    for prefix, plays, length in (("hist", history, feature_spec.HISTORY_LEN),
                                  ("sess", self.session(now), feature_spec.SESSION_LEN)):
      out.update(_sequence(prefix, plays, length, now))
    return out

  # ------------------------------------------------------------------ encoding
  def to_json(self) -> bytes:
    """Compact JSON (plays as column lists, counters keyed by day): the whole-state
    value of format 1 stores, read when migrating them."""
    # orjson writes the column tuples as arrays and the int day keys as strings itself.
    return orjson.dumps({"u": self.user_id, "g": self.segment,
                         "t": [self.tenure_days, self.tenure_ts], "n": self.newest_ts,
                         "p": list(zip(*self.plays)), "c": self.counters},
                        option=orjson.OPT_NON_STR_KEYS)

  @classmethod
  def from_json(cls, data: bytes) -> "ListenerState":
    doc = orjson.loads(data)
    plays = list(zip(*doc["p"]))
    return cls(user_id=doc["u"], segment=doc["g"], tenure_days=doc["t"][0],
               tenure_ts=doc["t"][1], plays=plays, newest_ts=doc["n"],
               counters={int(d): list(row) for d, row in doc["c"].items()})


_KEY = operator.itemgetter(TS, TRACK, SESSION)


def _unit(value: Optional[float]) -> float:
  return 0.0 if value is None else float(value)


def _strings(values) -> np.ndarray:
  return np.asarray([v.encode() for v in values], dtype=object)


def _sequence(prefix: str, plays: List[Play], length: int, now: int
              ) -> Mapping[str, np.ndarray]:
  """The padded ``prefix_*`` inputs (batch 1) of ``plays`` (most recent first)."""
  plays = plays[:length]
  pad = length - len(plays)
  track = [p[TRACK].encode() for p in plays] + [feature_spec.PAD_TOKEN] * pad
  values: Tuple[np.ndarray, ...] = tuple(
      np.asarray([[p[column] for p in plays] + [0.0] * pad], np.float32)
      for column in (COMPLETION, SKIP))
  gaps = np.asarray([[max(0, now - p[TS]) for p in plays] + [0] * pad], np.float32)
  return {f"{prefix}_track_ids": np.asarray([track], dtype=object),
          f"{prefix}_completion": values[0], f"{prefix}_skip": values[1],
          f"{prefix}_gap_s": gaps, f"{prefix}_len": np.asarray([len(plays)], np.int64)}
