"""Slates in numpy: candidate generation, the fusion boundary, and the mixing twin.

This module owns the vectorized pieces every simulated policy shares: drawing a
candidate list per listener from the world's catalog (familiar artists, favourite
styles, popular tracks, promos), handing the simulator's arrays to the numpy fusion
kernel (``ranking.fusion.kernel_np``, the same contract as the serving graph's
``ScoreFusion``), and cutting the top ``K`` positions of the list exactly as
``ranking.layers.mixing`` orders them (same ``MixingConfig``; the plain-Python oracle
``melody_testing.mixing_reference.mix_reference`` is the test reference). Rollouts over
100k listeners cannot afford one TensorFlow call per session, so the same rules run
here in numpy, and ``tests/simulation`` pins the mixing to the graph layer.

The simulator indexes activities by ``simulation.world_config.SIM_ACTIVITIES`` (no
"unknown"); :func:`fuse` converts them to ``feature_spec.ACTIVITIES`` indices, the
fusion kernels' contract, and is the only place that does.
"""

import dataclasses
from typing import Optional

import numpy as np

from features import feature_spec
from ranking.fusion import kernel_np
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig
from simulation.world_config import SIM_ACTIVITIES

# feature_spec.ACTIVITIES index of each SIM_ACTIVITIES index.
FUSION_ACTIVITY = np.array([feature_spec.ACTIVITIES.index(a) for a in SIM_ACTIVITIES],
                           np.int64)


def fuse(heads: np.ndarray, segment: np.ndarray, activity: np.ndarray,
         familiar: np.ndarray, config: FusionConfig,
         weights: Optional[np.ndarray] = None, seed: Optional[np.ndarray] = None,
         candidate_ids: Optional[np.ndarray] = None) -> np.ndarray:
  """Fused scores of the simulator's candidates (``ranking.fusion`` has the formula).

  Args:
    heads: ``[B, N, 3]`` (interest, subscription, exposure) scores.
    segment: ``[B]`` index into ``feature_spec.SEGMENTS``.
    activity: ``[B]`` index into ``world_config.SIM_ACTIVITIES``.
    familiar: ``[B, N]`` 0/1, whether the candidate's artist is known; novelty is
      ``1 - familiar``.
    config: the fusion config (table, kappa, epsilon, zero-beta segments).
    weights: optional ``[B, 3]`` per-listener weights, sent as the kernel's override
      for every row; beta is still zeroed for ``zero_beta_segments``.
    seed: optional ``[B]`` request seeds; without it the exploration bonus is the plain
      novelty bonus, and a negative seed turns it off, as in the graph.
    candidate_ids: ``[B, N]`` ids hashed with the seed (default: the position).

  Returns:
    ``[B, N]`` float64 fused scores.
  """
  heads = np.asarray(heads, np.float64)
  if heads.ndim != 3 or heads.shape[-1] != 3:
    raise ValueError(f"heads must be [B, N, 3], got shape {heads.shape}")
  inputs = {"interest": heads[..., 0], "subscription": heads[..., 1],
            "exposure": heads[..., 2], "segment": segment,
            "activity": FUSION_ACTIVITY[np.asarray(activity, np.int64)],
            "familiar": familiar}
  if weights is not None:
    weights = np.asarray(weights, np.float64)
    if weights.shape != (heads.shape[0], 3):
      raise ValueError(f"weights must be [B={heads.shape[0]}, 3], got shape {weights.shape}")
    inputs["override_weights"] = weights
    inputs["override"] = np.ones(heads.shape[0], bool)
  if seed is not None:
    inputs["seed"] = seed
  if candidate_ids is not None:
    inputs["candidate_ids"] = candidate_ids
  return kernel_np.fuse(inputs, config)["score"]


def mix_top(scores: np.ndarray, is_promo: np.ndarray, artist_ids: np.ndarray,
            valid: np.ndarray, config: MixingConfig, k: int,
            max_promos: Optional[np.ndarray] = None) -> np.ndarray:
  """The first ``k`` positions of the mixed list, vectorized over the batch.

  Same greedy as ``ranking.layers.mixing`` (and ``mixing_reference``): each position
  takes the best remaining candidate (NaN = -inf, ties to the lower index) keeping the
  promo window cap, the no-adjacent-promos rule and, inside the first ``window``
  positions, the artist cap; if nothing fits, the best remaining non-promo (artist cap
  relaxed); if only unplaceable promos remain, they follow in score order (the graph's
  dropped tail).

  Args:
    scores: ``[B, N]`` fused scores.
    is_promo: ``[B, N]`` bool.
    artist_ids: ``[B, N]`` int (``config.unknown_artist_id`` is never capped).
    valid: ``[B, N]`` bool; invalid candidates never appear.
    config: the mixing rules.
    k: positions to fill.
    max_promos: optional ``[B]`` per-request promo cap overriding
      ``config.max_promos_per_window`` (the promo-share controller's knob).

  Returns:
    ``[B, k]`` int candidate indices, -1 where fewer than ``k`` candidates are valid.
  """
  scores = np.asarray(scores, np.float64)
  b, n = scores.shape
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  promo = np.asarray(is_promo, bool)
  art = np.asarray(artist_ids, np.int64)
  valid = np.asarray(valid, bool)
  cap = (np.full(b, config.max_promos_per_window, np.int64) if max_promos is None
         else np.asarray(max_promos, np.int64))
  if cap.shape != (b,):
    raise ValueError(f"max_promos must be [B={b}], got shape {cap.shape}")
  s = np.where(np.isnan(scores), -np.inf, scores)
  order = np.lexsort((np.broadcast_to(np.arange(n), (b, n)), -s), axis=1)
  rank = np.empty((b, n), np.int64)
  np.put_along_axis(rank, order, np.broadcast_to(np.arange(n), (b, n)), axis=1)
  big = np.int64(n + 1)
  rows = np.arange(b)
  remaining = valid.copy()
  placed_promo = np.zeros((b, k), bool)
  placed_art = np.zeros((b, k), np.int64)
  out = np.full((b, k), -1, np.int64)
  w = config.window
  for t in range(k):
    recent = placed_promo[:, max(0, t - w + 1):t].sum(1)
    last = placed_promo[:, t - 1] if t else np.zeros(b, bool)
    promo_ok = ~last & (recent < cap)
    ok = remaining & (~promo | promo_ok[:, None])
    if t < w and t:
      same = (art[:, :, None] == placed_art[:, None, :t]).sum(-1)
      ok &= (same < config.max_per_artist) | (art == config.unknown_artist_id)
    pick = np.argmin(np.where(ok, rank, big), axis=1)
    none = ~ok[rows, pick]
    if none.any():
      fallback = remaining & ~promo
      fb = np.argmin(np.where(fallback, rank, big), axis=1)
      tail = np.argmin(np.where(remaining, rank, big), axis=1)
      fb = np.where(fallback[rows, fb], fb, tail)
      pick = np.where(none, fb, pick)
    got = remaining[rows, pick]
    out[:, t] = np.where(got, pick, -1)
    placed_promo[:, t] = got & promo[rows, pick]
    placed_art[:, t] = np.where(got, art[rows, pick], np.int64(-(1 << 40)))
    remaining[rows[got], pick[got]] = False
  return out


@dataclasses.dataclass(frozen=True)
class CandidateConfig:
  """How many candidates of each source a listener's list gets per session.

  Attributes:
    familiar: tracks by artists the listener knows.
    style: tracks of the listener's favourite styles (by their weights).
    popular: organic tracks drawn by popularity (listens).
    promo: promo tracks drawn uniformly.
  """
  familiar: int = 12
  style: int = 12
  popular: int = 10
  promo: int = 6

  def __post_init__(self):
    for name in ("familiar", "style", "popular", "promo"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    if self.size < 1:
      raise ValueError(f"a candidate list needs at least one candidate, got {self}")

  @property
  def size(self) -> int:
    return self.familiar + self.style + self.popular + self.promo


class CandidatePool:
  """Draws per-listener candidate lists from a world's public catalog arrays.

  Args:
    world: a ``simulation.world.World``.
    config: candidate counts per source.
  """

  def __init__(self, world, config: CandidateConfig = CandidateConfig()):
    self.world = world
    self.config = config
    artist = np.asarray(world.track_artist, np.int64)
    style = np.asarray(world.track_style, np.int64)
    self._art_items, self._art_begin, self._art_count = self._groups(artist)
    self._sty_items, self._sty_begin, self._sty_count = self._groups(style)
    organic = np.flatnonzero(~world.track_promo)
    wpop = np.expm1(world.track_pop[organic].astype(np.float64)) + 1.0
    self._pop_items = organic
    self._pop_cum = np.cumsum(wpop) / wpop.sum()
    promo = np.flatnonzero(world.track_promo)
    self._promo_items = promo if len(promo) else organic

  @staticmethod
  def _groups(key):
    items = np.argsort(key, kind="stable")
    count = np.bincount(key)
    begin = np.cumsum(count) - count
    return items, begin, count

  def draw(self, listeners, rng: np.random.Generator):
    """Candidates of one session per listener.

    Args:
      listeners: a ``listeners.Listeners`` batch of n.
      rng: random generator.

    Returns:
      ``(tracks, valid)``: ``[n, size]`` catalog rows and a bool mask that is False
      on repeats of a track already in the row (repeats are kept in place, masked).
    """
    c, n = self.config, len(listeners)
    parts = []
    if c.familiar:
      k = listeners.known_artists.shape[1]
      a = listeners.known_artists[np.arange(n)[:, None],
                                  rng.integers(0, k, (n, c.familiar))]
      off = (rng.random((n, c.familiar)) * self._art_count[a]).astype(np.int64)
      parts.append(self._art_items[self._art_begin[a] + off])
    if c.style:
      cum = np.cumsum(listeners.favorite_weights, axis=1)
      pick = (rng.random((n, c.style))[..., None] > cum[:, None, :]).sum(-1)
      st = listeners.favorite_styles[np.arange(n)[:, None], np.minimum(pick, 2)]
      cnt = self._sty_count[np.minimum(st, len(self._sty_count) - 1)]
      off = (rng.random((n, c.style)) * cnt).astype(np.int64)
      parts.append(self._sty_items[self._sty_begin[st] + off])
    if c.popular:
      pos = np.searchsorted(self._pop_cum, rng.random((n, c.popular)))
      parts.append(self._pop_items[np.minimum(pos, len(self._pop_items) - 1)])
    if c.promo:
      parts.append(self._promo_items[rng.integers(0, len(self._promo_items),
                                                  (n, c.promo))])
    tracks = np.concatenate(parts, axis=1)
    return tracks, first_occurrence(tracks)


def first_occurrence(x: np.ndarray) -> np.ndarray:
  """``[B, N]`` bool: True where the value does not occur earlier in its row."""
  b, n = x.shape
  order = np.argsort(x, axis=1, kind="stable")
  xs = np.take_along_axis(x, order, axis=1)
  dup = np.zeros((b, n), bool)
  dup[:, 1:] = xs[:, 1:] == xs[:, :-1]
  out = np.empty((b, n), bool)
  np.put_along_axis(out, order, ~dup, axis=1)
  return out
