"""One simulated day of listeners calling the gateway and playing what it answers.

This module owns a live day: who of the twin's listeners comes today (the world's
return probability), the day's rounds of sessions (each returning listener opens
``sessions`` of them, one per round), each session's context, one `Recommend` call per
session to the gateway over gRPC (several in flight), playing the answered list top to
bottom by the world's response model, and the events of those plays in the common event
schema, tagged with the gateway's arm, model label and version. Each round's events are
appended to the day's JSON-lines log that the nearline updater tails (so a listener's
next session sees the state of the last one), with a small seeded share of bad lines
(malformed, duplicated, late) that the updater's quarantine must catch.
"""

import concurrent.futures
import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import numpy as np

from features import feature_spec
from online import gateway_client
from simulation import skip_dynamics
from simulation import world as world_lib
from simulation.listeners import Listeners
from simulation.world_config import DAY_S, SIM_ACTIVITIES

# Seconds between the starts of consecutive plays of a session.
_PLAY_GAP_S = 200
# A late line is this far behind its listener's newest play: past the nearline's lateness
# bound (7 days by default), so it is quarantined.
_LATE_S = 30 * DAY_S
BAD_KINDS = ("malformed", "duplicate", "late")


@dataclasses.dataclass(frozen=True)
class DayOptions:
  """How a live day runs.

  Attributes:
    k: Tracks per Recommend call (one session plays them in order).
    concurrency: Gateway calls in flight.
    bad_fraction: Share of event lines replaced or joined by a bad one.
    timeout_s: Per-call deadline of the client.
    sessions: Sessions each returning listener opens in the day (one per round).
  """
  k: int = 10
  concurrency: int = 4
  bad_fraction: float = 0.01
  timeout_s: float = 30.0
  sessions: int = 1

  def __post_init__(self):
    if self.sessions < 1:
      raise ValueError(f"sessions must be >= 1, got {self.sessions}")


@dataclasses.dataclass
class DayResult:
  """What a day produced.

  Attributes:
    events: The valid play events, one dict per play (EVENT_SCHEMA fields plus ``arm``,
      ``model_label``, ``model_version``).
    requests: One dict per gateway call: arm, segment, code, source, latency_ms.
    bad_lines: Bad lines written, by kind.
    sessions: Sessions played.
    seconds: Wall time of the day's traffic.
    tomorrow: Bool mask of the listeners who come back tomorrow.
    events_by_source: The valid play events by the source of their call's answer
      (``model``, ``fallback_popularity``, or ``error`` for a failed call).
  """
  events: List[Dict[str, object]]
  requests: List[Dict[str, object]]
  bad_lines: Dict[str, int]
  sessions: int
  seconds: float
  tomorrow: np.ndarray
  events_by_source: Dict[str, int] = dataclasses.field(default_factory=dict)


def _call(client: gateway_client.GatewayClient, user_id: str, activity: str, k: int,
          timeout_s: float) -> Tuple[Dict[str, object], List[str]]:
  t0 = time.perf_counter()
  try:
    # A listener's app waits for a gateway that is restarting (up to the deadline)
    # rather than failing at once.
    response = client.recommend(user_id=user_id, context=activity, surface="home", k=k,
                                timeout=timeout_s, wait_for_ready=True)
  except grpc.RpcError as e:
    return ({"code": e.code().name, "arm": "none", "segment": "unknown", "source": "error",
             "latency_ms": (time.perf_counter() - t0) * 1e3, "model_version": 0,
             "model_label": ""}, [])
  return ({"code": "OK", "arm": response.arm, "segment": response.segment,
           "source": response.source, "latency_ms": (time.perf_counter() - t0) * 1e3,
           "model_version": int(response.model_version),
           "model_label": response.model_label},
          [item.track_id for item in response.items])


def _track_row(track_id: str) -> int:
  """The catalogue row of a simulated track id (``t000123``); -1 for any other id."""
  return int(track_id[1:]) if track_id[:1] == "t" and track_id[1:].isdigit() else -1


def _slates(world: world_lib.World, answers: List[List[str]], k: int,
            rng: np.random.Generator) -> np.ndarray:
  """Catalogue rows of each answer, padded with random tracks where it had fewer than
  ``k`` (an error, or tracks the catalogue does not know)."""
  n_tracks = len(world.catalog.track_ids)
  out = rng.integers(0, n_tracks, (len(answers), k))
  for i, tracks in enumerate(answers):
    rows = [r for r in map(_track_row, tracks) if 0 <= r < n_tracks][:k]
    out[i, :len(rows)] = rows
  return out


def _events(world: world_lib.World, sub: Listeners, played: Dict[str, np.ndarray],
            slates: np.ndarray, ctx: Dict[str, np.ndarray], calls: List[Dict[str, object]],
            session: str) -> List[Dict[str, object]]:
  cat = world.catalog
  user_ids = sub.user_ids()
  events = []
  for i, j in zip(*np.nonzero(played["played"])):
    t = int(slates[i, j])
    call = calls[i]
    profile = int(played["skip_profile"][i, j])
    events.append({
        "user_id": user_ids[i], "session_id": f"{user_ids[i]}-{session}",
        "ts": int(ctx["ts"][i]) + _PLAY_GAP_S * int(j), "plays": 1,
        "track_id": cat.track_ids[t], "artist_id": cat.artist_ids[cat.track_artist[t]],
        "source": "sim", "user_segment": feature_spec.SEGMENTS[int(sub.segment[i])],
        "user_tenure_days": float(sub.tenure_days[i]),
        "context_activity": SIM_ACTIVITIES[int(ctx["activity"][i])],
        "context_surface": "home", "is_promo": bool(cat.track_promo[t]),
        "completion": float(played["completion"][i, j]),
        "skip": float(played["skip"][i, j]), "like": float(played["like"][i, j]),
        "subscription": float(played["subscription"][i, j]),
        "exposure": float(played["exposure"][i, j]), "shuffle": False,
        "skip_profile": skip_dynamics.SKIP_PROFILES[profile] if profile >= 0 else None,
        "arm": call["arm"], "model_label": call["model_label"],
        "model_version": call["model_version"]})
  return events


def write_log(path: str, events: List[Dict[str, object]], bad_fraction: float,
              rng: np.random.Generator) -> Dict[str, int]:
  """Appends ``events`` to ``path`` as JSON lines, with about ``bad_fraction`` of them
  joined by a bad line; returns the bad lines by kind."""
  bad = {kind: 0 for kind in BAD_KINDS}
  kinds = rng.choice(len(BAD_KINDS), len(events))
  is_bad = rng.random(len(events)) < bad_fraction
  lines = []
  for event, bad_one, kind in zip(events, is_bad, kinds):
    line = json.dumps(event, separators=(",", ":"))
    lines.append(line)
    if not bad_one:
      continue
    name = BAD_KINDS[kind]
    bad[name] += 1
    if name == "malformed":
      lines.append(line[:len(line) // 2])
    elif name == "duplicate":
      lines.append(line)
    else:
      late = dict(event, ts=int(event["ts"]) - _LATE_S, session_id=f"{event['session_id']}-late")
      lines.append(json.dumps(late, separators=(",", ":")))
  with open(path, "a", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))
  return bad


class _Calls:
  """The gateway calls of a day, counted across its rounds (for progress and midday).

  Midday is halfway through the middle round, so that calls are in flight whatever the
  number of rounds (at the end of a round none would be).
  """

  def __init__(self, per_round: int, rounds: int, progress, midday):
    self.total, self.done = per_round * rounds, 0
    self.midpoint = (rounds // 2) * per_round + max(per_round // 2, 1)
    self.progress, self.midday = progress, midday

  def answered(self) -> None:
    self.done += 1
    if self.progress is not None and self.done % 200 == 0:
      self.progress(self.done, self.total)
    if self.midday is not None and self.done == self.midpoint:
      self.midday()


def _round(world: world_lib.World, sub: Listeners, rows: np.ndarray, day: int, r: int,
           day_start: int, gateway_target: str, log_path: str, rng: np.random.Generator,
           options: DayOptions, counter: _Calls):
  """Round ``r``: one session per listener of ``sub`` (call, play, log); returns
  (events, requests, bad lines, the played outcomes, events by answer source)."""
  ctx = world.sample_context(len(rows), rng, day_start)
  n_rounds = options.sessions
  # Contexts are drawn over a whole day and squeezed into the round, so the hours keep
  # the world's shape and the rounds stay in order.
  ctx["ts"] = day_start + (r * DAY_S + (ctx["ts"] - day_start)) // n_rounds
  session = f"d{day}" if n_rounds == 1 else f"d{day}s{r}"
  user_ids = sub.user_ids()
  calls: List[Dict[str, object]] = [{}] * len(rows)
  answers: List[List[str]] = [[] for _ in rows]
  with gateway_client.GatewayClient(gateway_target, timeout=options.timeout_s) as client, \
      concurrent.futures.ThreadPoolExecutor(options.concurrency) as pool:
    futures = {pool.submit(_call, client, user_ids[i], SIM_ACTIVITIES[int(ctx["activity"][i])],
                           options.k, options.timeout_s): i for i in range(len(rows))}
    for future in concurrent.futures.as_completed(futures):
      i = futures[future]
      calls[i], answers[i] = future.result()
      counter.answered()
  slates = _slates(world, answers, options.k, rng)
  played = world.play_slate(sub, slates, activity=ctx["activity"], rng=rng)
  events = _events(world, sub, played, slates, ctx, calls, session)
  bad = write_log(log_path, events, options.bad_fraction, rng)
  requests = [dict(c, segment=c["segment"] or "unknown") for c in calls]
  plays_per_call = played["played"].sum(1)
  by_source: Dict[str, int] = {}
  for call, n in zip(calls, plays_per_call):
    by_source[call["source"]] = by_source.get(call["source"], 0) + int(n)
  return events, requests, bad, played, by_source


def run_day(world: world_lib.World, listeners: Listeners, active: np.ndarray, day: int,
            day_start: int, gateway_target: str, log_path: str, rng: np.random.Generator,
            options: DayOptions = DayOptions(),
            progress: Optional[Callable[[int, int], None]] = None,
            midday: Optional[Callable[[], None]] = None) -> DayResult:
  """Plays day ``day`` for the ``active`` listeners through the gateway.

  The day is cut into ``options.sessions`` rounds of equal length; in each, every
  active listener opens one session at a time the world draws within the round.

  Args:
    world: The twin's world (ground truth).
    listeners: All listeners; their fatigue and conversions are updated in place.
    active: Bool mask of who comes today.
    day: Day number (names the sessions).
    day_start: Midnight of the day (epoch seconds).
    gateway_target: ``host:port`` of the gateway.
    log_path: The day's event log (appended).
    rng: The day's random stream.
    options: Sizes and the bad-line share.
    progress: Called with (calls done, calls) now and then.
    midday: Called once halfway through the middle round, while the rest of its calls
      are in flight (a drill: stop a process, restart it).

  Returns:
    The day's events, requests and bad lines.
  """
  t0 = time.perf_counter()
  rows = np.flatnonzero(active)
  sub = listeners.take(rows)
  counter = _Calls(len(rows), options.sessions, progress, midday)
  events: List[Dict[str, object]] = []
  requests: List[Dict[str, object]] = []
  bad = {kind: 0 for kind in BAD_KINDS}
  completion = np.zeros(len(rows))
  plays = np.zeros(len(rows))
  by_source: Dict[str, int] = {}
  for r in range(options.sessions):
    round_events, round_requests, round_bad, played, round_sources = _round(
        world, sub, rows, day, r, day_start, gateway_target, log_path, rng, options,
        counter)
    for source, n in round_sources.items():
      by_source[source] = by_source.get(source, 0) + n
    events += round_events
    requests += round_requests
    bad = {kind: bad[kind] + round_bad[kind] for kind in BAD_KINDS}
    completion += played["completion"].sum(1)
    plays += played["played"].sum(1)
  listeners.fatigue[rows] = sub.fatigue
  listeners.converted[rows] = sub.converted
  mean_completion = np.zeros(len(listeners))
  mean_completion[rows] = completion / np.maximum(plays, 1)
  tomorrow = world.end_day(listeners, mean_completion, active, rng)
  return DayResult(events, requests, bad, len(rows) * options.sessions,
                   time.perf_counter() - t0, tomorrow, by_source)


def day_log_path(events_dir: str, day: int) -> str:
  return os.path.join(events_dir, f"day-{day:03d}.jsonl")
