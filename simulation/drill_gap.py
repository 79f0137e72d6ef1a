"""How much worse a candidate with a label fault can be in the twin, measured without a
live run.

This module owns that cheap comparison: the same listeners, in the same contexts, are
served top-``k`` lists from the whole catalogue by several rankers and play them by the
world's response model with the same random draws (common random numbers), so the rankers
differ only in their lists. The rankers are the world's bounds (``oracle``: expected
completion minus expected skip, ``random``, ``anti-oracle``) and a deliberately simple
learner fitted on one day of the logging policy's plays, per track, with the labels
as logged, shuffled across plays, or inverted (the faults of ``simulation.live_drill``).
The learner stands in for what a briefly trained model picks up first: which tracks
listeners finish and which they skip. Its score of a track is the shrunk mean of
``completion - skip + like / 2`` over the track's plays (``prior`` pseudo-plays at the mean
of all plays).

Run ``python -m simulation.drill_gap [users]`` for the table.
"""

import dataclasses
import sys
from typing import Dict, List

import numpy as np

from simulation import live_drill
from simulation import world as world_lib
from simulation import world_config


@dataclasses.dataclass(frozen=True)
class GapRow:
  """One ranker's outcome over the same listeners.

  Attributes:
    ranker: The ranker's name.
    completion: Mean over sessions of the session's mean completion.
    completion_sd: Its standard deviation across sessions.
    skip: Mean over sessions of the session's skip share.
    skip_sd: Its standard deviation across sessions.
  """
  ranker: str
  completion: float
  completion_sd: float
  skip: float
  skip_sd: float


def track_scores(events: List[Dict[str, object]], n_tracks: int,
                 prior: float = 5.0) -> np.ndarray:
  """The per-track learner: ``[n_tracks]`` shrunk means of ``completion - skip + like/2``.

  Args:
    events: Plays with ``track_id`` (``t000123``), ``completion``, ``skip``, ``like``.
    n_tracks: Catalogue size.
    prior: Pseudo-plays at the mean of all plays given to every track.

  Raises:
    ValueError: ``prior`` is not positive, or a track id is not a catalogue row.
  """
  if prior <= 0:
    raise ValueError(f"prior must be positive, got {prior}")
  rows = np.array([int(str(e["track_id"])[1:]) for e in events], np.int64)
  if rows.size and (rows.min() < 0 or rows.max() >= n_tracks):
    raise ValueError(f"track_id must name a row below {n_tracks}")
  y = np.array([float(e["completion"]) - float(e["skip"]) + 0.5 * float(e["like"])
                for e in events])
  mean = float(y.mean()) if y.size else 0.0
  sums = np.bincount(rows, y, n_tracks)
  counts = np.bincount(rows, None, n_tracks)
  return (sums + prior * mean) / (counts + prior)


def logged_day(world: world_lib.World, users: int) -> List[Dict[str, object]]:
  """One day of the logging policy's plays for ``users`` listeners, as event dicts."""
  events: List[Dict[str, object]] = []
  for table in world.iter_events(users, 1):
    events.extend(table.to_pylist())
  return events


def compare(users: int = 300, tracks: int = 1500, seed: int = 7, k: int = 10,
            repeats: int = 5) -> List[GapRow]:
  """Every ranker's completion and skip per session on the same listeners and draws.

  Args:
    users: Listeners served (and listeners of the day the learner is fitted on).
    tracks: Catalogue size.
    seed: World seed (``melody live``'s default is 7).
    k: List length.
    repeats: Sessions per listener (independent plays of the same list).

  Raises:
    ValueError: ``users``, ``k`` or ``repeats`` is below 1, or ``k`` above ``tracks``.
  """
  for name, value in (("users", users), ("k", k), ("repeats", repeats)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  if k > tracks:
    raise ValueError(f"k must be at most tracks ({tracks}), got {k}")
  world = world_lib.World(world_config.WorldConfig(n_tracks=tracks), seed=seed)
  events = logged_day(world, users)
  rng = np.random.default_rng([seed, 1])
  listeners = world.sample_users(users, np.random.default_rng([seed, 2]))
  ctx = world.sample_context(users, np.random.default_rng([seed, 3]))
  everything = np.tile(np.arange(tracks), (users, 1))
  expected = world.expected_response(listeners, everything, ctx["activity"])
  oracle = expected["p_complete"] - expected["p_skip"]
  rankers = {"oracle": oracle,
             "random": rng.random(oracle.shape),
             "anti-oracle": -oracle}
  tie_break = 1e-9 * rng.random(oracle.shape)
  for kind in ("as logged",) + live_drill.KINDS:
    labelled = events if kind == "as logged" else live_drill.bad_labels(kind, events, rng)
    rankers[f"per-track learner, {kind}"] = track_scores(labelled, tracks) + tie_break
  rows = []
  for name, score in rankers.items():
    lists = np.argsort(-score, axis=1)[:, :k]
    completion, skip = [], []
    for r in range(repeats):
      # The same listeners (fresh state) and the same draws for every ranker.
      fresh = world.sample_users(users, np.random.default_rng([seed, 2]))
      played = world.play_slate(fresh, lists, activity=ctx["activity"],
                                rng=np.random.default_rng([seed, 4, r]))
      heard = played["played"].astype(bool)
      n = np.maximum(heard.sum(1), 1)
      completion.append((played["completion"] * heard).sum(1) / n)
      skip.append((played["skip"] * heard).sum(1) / n)
    c, s = np.concatenate(completion), np.concatenate(skip)
    rows.append(GapRow(name, float(c.mean()), float(c.std()), float(s.mean()),
                       float(s.std())))
  return rows


def markdown(rows: List[GapRow]) -> str:
  """The rows as a Markdown table."""
  lines = ["| ranker | completion per session (sd) | skip share per session (sd) |",
           "|---|---|---|"]
  lines += [f"| {r.ranker} | {r.completion:.4f} ({r.completion_sd:.3f}) | "
            f"{r.skip:.4f} ({r.skip_sd:.3f}) |" for r in rows]
  return "\n".join(lines)


if __name__ == "__main__":
  print(markdown(compare(users=int(sys.argv[1]) if len(sys.argv) > 1 else 300)))
