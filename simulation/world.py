"""The listener world: a seeded, vectorized simulator that is Melody's ground truth.

This module owns :class:`World`, the one object callers hold: it resolves the
calibrated config (``simulation.world_config``), builds the seeded catalogue
(``simulation.catalog``) and composes the listeners (``simulation.listeners``), the
response model (``simulation.response_model``), the session contexts
(``simulation.session_context``) and the event log (``simulation.event_log``).
``World.iter_events`` logs a popularity/taste-based policy with inserted promo slots
in exactly ``features.events.EVENT_SCHEMA``; ``World.expected_response``,
``World.play_slate`` and ``World.end_day`` let ``simulation/rollout.py`` score or roll
out any ranked list. The catalogue's arrays read as the world's own
(``world.track_promo``, ``world.tracks``).
"""

from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa

from simulation import catalog as catalog_lib
from simulation import event_log
from simulation import listeners as listeners_lib
from simulation import response_model
from simulation import session_context
from simulation import world_config
from simulation.listeners import Listeners


class World:
  """The seeded listener world.

  Args:
    config: world parameters; ``None`` fields come from ``params``.
    seed: seed of the catalog and of every listener/event stream.
    params: calibrated parameters (default: the committed JSON).

  Usage::

    world = World(WorldConfig(n_tracks=5000), seed=7)
    for table in world.iter_events(n_users=10_000, days=7):
      ...   # pyarrow.Table in features.events.EVENT_SCHEMA
  """

  def __init__(self, config: world_config.WorldConfig = world_config.WorldConfig(),
               seed: int = 7, params: Optional[dict] = None):
    if not isinstance(config, world_config.WorldConfig):
      raise ValueError(f"config must be a WorldConfig, got {type(config).__name__}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    self.params = params if params is not None else world_config.load_params()
    self.config = world_config.resolve(config, self.params)
    self.seed = int(seed)
    self.catalog = catalog_lib.Catalog(
        self.config, self.params, np.random.default_rng(np.random.SeedSequence([self.seed, 0])))
    self.response = response_model.ResponseModel(self.config, self.catalog)
    self.events = event_log.EventLog(self.config, self.catalog, self.response, self.seed)

  def __getattr__(self, name: str):
    # Only reached for names the world does not hold itself: the catalogue's arrays.
    catalog = self.__dict__.get("catalog")
    if catalog is None or name.startswith("_"):
      raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
    return getattr(catalog, name)

  def tracks_table(self) -> pa.Table:
    """The catalog in exactly ``features.events.TRACK_SCHEMA``."""
    return self.catalog.tracks_table()

  def sample_users(self, n: int, rng: np.random.Generator, start_index: int = 0,
                   segment_mix: Optional[Sequence[float]] = None) -> Listeners:
    """Draws ``n`` fresh listeners from ``rng`` (the caller owns the stream); the
    arguments are ``listeners.sample_listeners``'s."""
    return listeners_lib.sample_listeners(self.config, self.catalog, n, rng,
                                          start_index=start_index, segment_mix=segment_mix)

  def sample_context(self, n: int, rng: np.random.Generator,
                     day_start: int = world_config.DEFAULT_START_TS) -> Dict[str, np.ndarray]:
    """A session context per listener (``session_context.sample_context``)."""
    return session_context.sample_context(n, rng, day_start)

  def is_familiar(self, listeners: Listeners, rows: np.ndarray,
                  tracks: np.ndarray) -> np.ndarray:
    """Whether each track's artist is known to the listener in ``rows`` (broadcasting)."""
    return self.response.is_familiar(listeners, rows, tracks)

  def placement(self, listeners: Listeners, rows: np.ndarray,
                tracks: np.ndarray) -> np.ndarray:
    """Promo placement quality in (0, 1): how well the track fits the listener."""
    return self.response.placement(listeners, rows, tracks)

  def return_probability(self, listeners: Listeners) -> np.ndarray:
    """Probability that each listener comes back the next day."""
    return self.response.return_probability(listeners)

  def expected_response(self, listeners: Listeners, track_idx: np.ndarray,
                        activity=None, run_style: Optional[np.ndarray] = None,
                        run_len: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Ground-truth expected response to each track of a list
    (``ResponseModel.expected_response`` has the arguments and outputs)."""
    return self.response.expected_response(listeners, track_idx, activity,
                                           run_style=run_style, run_len=run_len)

  def play_slate(self, listeners: Listeners, track_idx: np.ndarray, activity=None,
                 rng: Optional[np.random.Generator] = None) -> Dict[str, np.ndarray]:
    """Plays a ranked list top to bottom and updates the listeners' state; for slate
    rollouts (``ResponseModel.play_slate``; ``rng`` defaults to one seeded by the
    world seed)."""
    rng = rng if rng is not None else np.random.default_rng(self.seed)
    return self.response.play_slate(listeners, track_idx, activity, rng)

  def end_day(self, listeners: Listeners, mean_completion: np.ndarray,
              active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Closes a day and draws who returns tomorrow (``EventLog.end_day``)."""
    return self.events.end_day(listeners, mean_completion, active, rng)

  def simulate(self, listeners: Listeners, days: int, start_ts: int,
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Raw event columns of ``days`` days of the logging policy (``EventLog.simulate``)."""
    return self.events.simulate(listeners, days, start_ts, rng)

  def iter_events(self, n_users: int, days: int, chunk_users: int = 2000,
                  start_ts: int = world_config.DEFAULT_START_TS) -> Iterator[pa.Table]:
    """Simulated impressions in ``features.events.EVENT_SCHEMA``, chunk by chunk
    (``EventLog.iter_events`` has the arguments)."""
    return self.events.iter_events(n_users, days, chunk_users=chunk_users,
                                   start_ts=start_ts)
