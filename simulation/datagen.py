"""``melody data generate``: simulated listeners -> a Melody dataset with training examples.

This module owns the simulator-to-examples path: it builds the calibrated world
(``simulation.world``; ``WorldConfig()`` defaults unless ``run(world_overrides=...)``
replaces some of its fields), streams its listeners' events chunk by chunk, and hands
them to ``features.dataset_writer``, which writes the events, the tracks, the examples
and the manifest. The ranking benchmark, for instance, scales the conversion hazard
(``base_hazard``) so that the rare subscription label has enough positives to measure
an AUC on a few thousand listeners. The seed and the overrides are recorded in the
manifest (``seed``, ``generator.world_overrides``); the same seed and overrides give the
same data.
"""

import dataclasses
import sys
import time
from typing import Mapping, Optional, Sequence

from features import dataset_writer
from features import splits
from simulation import world as world_lib
from simulation import world_config

DEFAULT_CHUNK_USERS = 500


def _log(msg: str) -> None:
  print(f"[generate] {msg}", file=sys.stderr, flush=True)


def run(users: int, days: int, out: str, seed: int = 7, shards: int = 4,
        tracks: int = 5000, runner: str = "DirectRunner", beam_args: Sequence[str] = (),
        chunk_users: int = DEFAULT_CHUNK_USERS, eval_percent: int = splits.DEFAULT_EVAL_PERCENT,
        span_layout: bool = False,
        world_overrides: Optional[Mapping[str, object]] = None) -> int:
  """Simulates ``users`` listeners over ``days`` days and writes the dataset to ``out``.

  Args:
    users: simulated listeners.
    days: days of activity; impression timestamps spread over them.
    out: output directory.
    seed: world seed; the same seed gives the same events and examples.
    shards: TFRecord files per split.
    tracks: catalogue size.
    runner: Beam runner of the examples stage.
    beam_args: extra Beam flags.
    chunk_users: users per events chunk (bounds memory).
    eval_percent: share of users in the eval split.
    span_layout: write ``examples/span-YYYYMMDD/`` folders instead of the flat layout.
    world_overrides: ``WorldConfig`` fields to change from their calibrated defaults
      (not ``n_tracks``: use ``tracks``), e.g.
      ``{"base_hazard": (4e-3, 2.2e-3, 8e-4, 2.6e-2, 0.0)}`` for 20x the conversion
      hazard. ``None`` or ``{}``: the calibrated world.

  Returns:
    0 (the CLI exit code).

  Raises:
    ValueError: a non-positive size, or an unknown or invalid world override.
  """
  for name, value in (("users", users), ("days", days), ("tracks", tracks),
                      ("shards", shards), ("chunk_users", chunk_users)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  overrides = dict(world_overrides or {})
  known = {f.name for f in dataclasses.fields(world_config.WorldConfig)} - {"n_tracks"}
  unknown = sorted(set(overrides) - known)
  if unknown:
    raise ValueError(f"unknown world_overrides {unknown}; WorldConfig fields other than "
                     f"n_tracks: {sorted(known)}")
  overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()}
  t0 = time.perf_counter()
  world = world_lib.World(world_config.WorldConfig(n_tracks=tracks, **overrides), seed=seed)
  _log(f"world: {tracks:,} tracks, seed {seed}"
       + (f", overrides {overrides}" if overrides else "")
       + f" ({time.perf_counter() - t0:.1f}s)")
  chunks = world.iter_events(users, days, chunk_users=chunk_users)
  dataset_writer.write_dataset(
      chunks, world.tracks, out, shards=shards, runner=runner,
      beam_args=list(beam_args or ()), eval_percent=eval_percent,
      span_layout=span_layout, expected_chunks=-(-users // chunk_users),
      manifest_extra={"seed": seed, "generator": {
          "users": users, "days": days, "seed": seed, "tracks": tracks,
          "chunk_users": chunk_users,
          "world_overrides": {k: (list(v) if isinstance(v, tuple) else v)
                              for k, v in overrides.items()}}})
  return 0
