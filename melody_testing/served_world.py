"""Simulated listeners and candidates for checks against the session's ranker export.

This module owns the request setup that served-model tests share: the world of the
``ranker_export`` fixture (300 tracks; the caller passes its seed), one listener per
segment and activity pair (each segment twice), and a candidate pool with familiar,
style, popular and promo tracks, so every fusion table row and the promo rules are hit.
"""

import dataclasses

import numpy as np

from features import feature_spec
from simulation import listeners as listeners_lib
from simulation import slates as slates_lib
from simulation.world import World
from simulation.world_config import SIM_ACTIVITIES, WorldConfig

N_TRACKS = 300   # the ranker_export world's catalogue


@dataclasses.dataclass
class ServedWorld:
  """The world, its listeners and candidate slates; ``activity`` indexes SIM_ACTIVITIES."""
  world: World
  listeners: listeners_lib.Listeners
  tracks: np.ndarray
  valid: np.ndarray
  activity: np.ndarray


def segment_activity_listeners(world_seed: int, rng_seed: int) -> ServedWorld:
  """Two listeners per segment, activities cycling, candidates drawn with ``rng_seed``."""
  world = World(WorldConfig(n_tracks=N_TRACKS), seed=world_seed)
  rng = np.random.default_rng(rng_seed)
  n = 2 * len(feature_spec.SEGMENTS)
  listeners = world.sample_users(n, rng)
  listeners.segment = (np.arange(n) % len(feature_spec.SEGMENTS)).astype(np.int8)
  tracks, valid = slates_lib.CandidatePool(world, slates_lib.CandidateConfig(
      familiar=8, style=8, popular=8, promo=6)).draw(listeners, rng)
  return ServedWorld(world, listeners, tracks, valid, np.arange(n) % len(SIM_ACTIVITIES))
