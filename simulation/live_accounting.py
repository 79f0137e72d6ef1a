"""A live day's event accounting: every event the listeners produced, where it went.

This module owns the check that a day lost and doubled nothing, whatever was restarted
during it. It counts the day's gateway calls by the source of their answer (``model``,
``fallback_popularity``, or ``error`` when the call failed and the listener played
other tracks), the play events of those sessions by the same source, the lines written
to the day's log (the events plus the bad lines by kind), and then reads what arrived:
the nearline updater's outcome counters over the day (lines applied, duplicates
dropped), the store's quarantined lines of the day's log by reason, the day's plays
the store holds (looked up by their key) and the plays the store counted (its
listeners' per-day ``plays`` counters, after the day less before it). A day balances
when the store holds every event, counted each exactly once, the quarantine kept every
malformed line, and every other line was applied or quarantined once (a late line
is quarantined when its listener's newer plays are already known; one that reaches the
updater first is applied as a play of its own, long-past day, not of this one) with
the duplicated ones dropped. The counters are read from the
store, so they survive a restart of the updater; the updater's own counters are
reported only for a day it ran through.
"""

import collections
from typing import Dict, Iterable, Mapping, Optional, Sequence

from online import stores
from simulation.world_config import DAY_S

ERROR_SOURCE = "error"
NOT_JSON = "not JSON"   # the quarantine's reason for a malformed line


def plays_by_day(store_path: str, user_ids: Sequence[str]) -> Dict[int, int]:
  """``epoch day -> plays`` the store counted over ``user_ids`` (their counter rings)."""
  totals: Dict[int, int] = collections.Counter()
  with stores.open_store(store_path) as store:
    for state in store.get_many(list(user_ids)).values():
      for day, row in state.counters.items():
        totals[int(day)] += int(row[0])
  return dict(totals)


def held_events(store_path: str, events: Sequence[Mapping[str, object]]) -> int:
  """How many of ``events`` the store holds a play row of (by user, ts, track, session)."""
  keys = [(str(e["user_id"]), int(e["ts"]), str(e["track_id"]), str(e["session_id"] or ""))
          for e in events]
  with stores.open_store(store_path) as store:
    return len(store.held_plays(keys))


def counted_events(before: Mapping[int, int], after: Mapping[int, int],
                   events: Iterable[Mapping[str, object]]) -> int:
  """Plays counted over the epoch days the day's ``events`` fall on (after less before)."""
  days = {int(e["ts"]) // DAY_S for e in events}
  return sum(after.get(d, 0) - before.get(d, 0) for d in days)


def account(events_by_source: Mapping[str, int], requests: Sequence[Mapping[str, object]],
            bad_lines: Mapping[str, int], quarantined: Mapping[str, int], held: int,
            counted: int, nearline: Optional[Mapping[str, float]] = None
            ) -> Dict[str, object]:
  """The day's accounting.

  Args:
    events_by_source: Valid play events written, by the source of their call's answer.
    requests: The day's gateway calls (``source`` and ``code`` of each).
    bad_lines: Bad lines written by kind (``malformed``, ``duplicate``, ``late``).
    quarantined: The store's quarantined lines of the day's log, by reason kind.
    held: Of the day's events, how many the store holds.
    counted: Plays the store counted on the days of the day's events.
    nearline: The updater's outcome counters over the day (None: it was restarted).

  Returns:
    ``calls`` and ``events`` by source, ``lines_written``, ``held``, ``counted``,
    ``lost`` (events the store lacks), ``doubled`` (counted beyond the events),
    ``quarantined`` and ``bad_lines``, the updater's ``nearline`` counts, and
    ``balanced``: nothing lost or doubled, every malformed line quarantined, and (with
    the updater's counters) every other line applied or quarantined, the duplicated
    lines dropped.
  """
  calls = collections.Counter(
      r["source"] if r.get("code", "OK") == "OK" else ERROR_SOURCE for r in requests)
  events = sum(events_by_source.values())
  quarantined_total = sum(quarantined.values())
  malformed, late = bad_lines.get("malformed", 0), bad_lines.get("late", 0)
  balanced = (held == events and counted == events and
              quarantined.get(NOT_JSON, 0) == malformed and
              quarantined_total <= malformed + late)
  if nearline is not None:
    balanced = (balanced and
                nearline.get("applied", 0) + quarantined_total == events + malformed + late
                and nearline.get("duplicate", 0) == bad_lines.get("duplicate", 0))
  return {"calls": dict(sorted(calls.items())),
          "events": dict(sorted(events_by_source.items())),
          "lines_written": events + sum(bad_lines.values()),
          "held": held, "counted": counted, "lost": events - held,
          "doubled": counted - events, "quarantined": dict(sorted(quarantined.items())),
          "bad_lines": dict(bad_lines),
          "nearline": None if nearline is None else
          {k: int(v) for k, v in sorted(nearline.items())},
          "balanced": bool(balanced)}


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]
                  ) -> Dict[str, float]:
  """The updater's outcome counters over an interval (each after less before)."""
  return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}

