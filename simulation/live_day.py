"""One simulated day of listeners calling the gateway and playing what it answers.

This module owns a live day: who of the twin's listeners comes today (the world's
return probability), each one's session context, one `Recommend` call per session to the
gateway over gRPC (several in flight), playing the answered list top to bottom by the
world's response model, and the events of those plays in the common event schema,
tagged with the gateway's arm, model label and version. The events are appended to the
day's JSON-lines log that the nearline updater tails, with a small seeded share of bad
lines (malformed, duplicated, late) that the updater's quarantine must catch.
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
  """
  k: int = 10
  concurrency: int = 4
  bad_fraction: float = 0.01
  timeout_s: float = 30.0


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
  """
  events: List[Dict[str, object]]
  requests: List[Dict[str, object]]
  bad_lines: Dict[str, int]
  sessions: int
  seconds: float
  tomorrow: np.ndarray


def _call(client: gateway_client.GatewayClient, user_id: str, activity: str, k: int,
          timeout_s: float) -> Tuple[Dict[str, object], List[str]]:
  t0 = time.perf_counter()
  try:
    response = client.recommend(user_id=user_id, context=activity, surface="home", k=k,
                                timeout=timeout_s)
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
            day: int) -> List[Dict[str, object]]:
  cat = world.catalog
  user_ids = sub.user_ids()
  events = []
  for i, j in zip(*np.nonzero(played["played"])):
    t = int(slates[i, j])
    call = calls[i]
    profile = int(played["skip_profile"][i, j])
    events.append({
        "user_id": user_ids[i], "session_id": f"{user_ids[i]}-d{day}",
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


def run_day(world: world_lib.World, listeners: Listeners, active: np.ndarray, day: int,
            day_start: int, gateway_target: str, log_path: str, rng: np.random.Generator,
            options: DayOptions = DayOptions(),
            progress: Optional[Callable[[int, int], None]] = None,
            midday: Optional[Callable[[], None]] = None) -> DayResult:
  """Plays day ``day`` for the ``active`` listeners through the gateway.

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
    midday: Called once when half of the day's calls are answered, while the rest are
      in flight (a drill: stop a process, restart it).

  Returns:
    The day's events, requests and bad lines.
  """
  t0 = time.perf_counter()
  rows = np.flatnonzero(active)
  sub = listeners.take(rows)
  ctx = world.sample_context(len(rows), rng, day_start)
  user_ids = sub.user_ids()
  calls: List[Dict[str, object]] = [{}] * len(rows)
  answers: List[List[str]] = [[] for _ in rows]
  with gateway_client.GatewayClient(gateway_target, timeout=options.timeout_s) as client, \
      concurrent.futures.ThreadPoolExecutor(options.concurrency) as pool:
    futures = {pool.submit(_call, client, user_ids[i], SIM_ACTIVITIES[int(ctx["activity"][i])],
                           options.k, options.timeout_s): i for i in range(len(rows))}
    for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
      i = futures[future]
      calls[i], answers[i] = future.result()
      if progress is not None and done % 200 == 0:
        progress(done, len(rows))
      if midday is not None and done == len(rows) // 2:
        midday()
  slates = _slates(world, answers, options.k, rng)
  played = world.play_slate(sub, slates, activity=ctx["activity"], rng=rng)
  listeners.fatigue[rows] = sub.fatigue
  listeners.converted[rows] = sub.converted
  events = _events(world, sub, played, slates, ctx, calls, day)
  bad = write_log(log_path, events, options.bad_fraction, rng)
  requests = [dict(c, segment=c["segment"] or "unknown") for c in calls]
  mean_completion = np.zeros(len(listeners))
  mean_completion[rows] = (played["completion"].sum(1)
                           / np.maximum(played["played"].sum(1), 1))
  tomorrow = world.end_day(listeners, mean_completion, active, rng)
  return DayResult(events, requests, bad, len(rows), time.perf_counter() - t0, tomorrow)


def day_log_path(events_dir: str, day: int) -> str:
  return os.path.join(events_dir, f"day-{day:03d}.jsonl")
