"""Ranking policies the simulator rolls out: the interface and the fusion policies.

This module owns the policy interface ``Policy.rank(state, candidates, context) ->
Slates`` and the policies that fuse head scores in numpy: a head scorer standing in
for a trained model (:class:`HeadScorer`), fusion + mixing with fixed per-segment
weights (:class:`FusionPolicy`), weights by segment and activity
(:class:`ContextRulePolicy`), the promo-share feedback controller
(:class:`PromoShareController`) and the stochastic Plackett-Luce logging policy with
known propensities (:class:`PlackettLucePolicy`). Bandit policies live in
``simulation.bandits``; ``simulation.saved_model_policy`` ranks with an exported model.

Policies see what serving would see: the listener's segment, tenure, context, the
candidate list and the recent plays. :class:`HeadScorer` is the one exception by
design: it reads the world's ground-truth expected response and adds seeded model
error, so weight choices are judged on what a well-trained model would predict.
"""

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from features import feature_spec
from ranking.fusion import spec as fusion_spec
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig
from simulation import slates as slates_lib
from simulation.world_config import SIM_ACTIVITIES

N_SEG = len(feature_spec.SEGMENTS)
N_ACT = len(SIM_ACTIVITIES)


@dataclasses.dataclass
class ListenerState:
  """What a policy may know about a batch of n listeners at a session start.

  Attributes:
    world: the ``World`` (catalog arrays: artists, promo flags, ids).
    listeners: the ``listeners.Listeners`` batch (segment, tenure, fatigue, ...).
    history: recent plays, most recent first: ``track`` [n, H] catalog rows (-1 pad),
      ``completion``, ``skip`` [n, H] float, ``ts`` [n, H] epoch seconds, ``length``
      [n] int.
    day: simulated day number.
  """
  world: object
  listeners: object
  history: Dict[str, np.ndarray]
  day: int = 0

  def __len__(self) -> int:
    return len(self.listeners)


@dataclasses.dataclass
class Candidates:
  """Candidate lists: ``tracks`` [n, N] catalog rows and ``valid`` [n, N] bool."""
  tracks: np.ndarray
  valid: np.ndarray


@dataclasses.dataclass
class Context:
  """Session context per listener (arrays of length n).

  Attributes:
    activity: index into ``world_config.SIM_ACTIVITIES``.
    hour: 0..23.
    weekday: 0 = Monday.
    ts: session start, epoch seconds.
    seed: per-request seed (exploration hash and stochastic policies).
  """
  activity: np.ndarray
  hour: np.ndarray
  weekday: np.ndarray
  ts: np.ndarray
  seed: np.ndarray


@dataclasses.dataclass
class Slates:
  """Ordered slates.

  Attributes:
    positions: [n, K] candidate column indices in play order (-1 = empty).
    tracks: [n, K] catalog rows in play order (-1 = empty).
    weights: [n, 3] (alpha, beta, gamma) the policy used per listener.
    propensity: optional [n, K] probability of each placed candidate given the
      earlier positions (stochastic policies only).
    info: anything else a policy wants to log (e.g. the chosen bandit arm).
  """
  positions: np.ndarray
  tracks: np.ndarray
  weights: np.ndarray
  propensity: Optional[np.ndarray] = None
  info: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Policy:
  """A ranking policy: ``rank`` orders candidates; optional feedback hooks.

  ``feedback`` receives per-listener outcomes of the slates it ranked (bandits learn
  from it); ``end_day`` receives the day's monitored metrics (controllers react).
  """

  name = "policy"
  stateful = False   # True: needs the in-process rollout (learns across listeners)

  def rank(self, state: ListenerState, candidates: Candidates,
           context: Context) -> Slates:
    raise NotImplementedError

  def feedback(self, state: ListenerState, context: Context, slates: Slates,
               reward: np.ndarray) -> None:
    """Per-listener reward of the slates just played (default: ignored)."""

  def end_day(self, day: int, metrics: Dict[str, np.ndarray]) -> None:
    """Per-segment metrics of a finished day (default: ignored)."""


@dataclasses.dataclass(frozen=True)
class HeadScorer:
  """Head scores from the world's expected response plus seeded model error.

  Heads, each in [0, 1]: interest = expected completion; subscription = how much the
  impression lifts the listener's conversion hazard over a plain track
  (``log(h / h_plain) / promo_conversion_weight``, 0 for paid or converted listeners);
  exposure = expected promo exposure value over the 99th percentile of promo values.
  Model error is ``noise`` times a standard normal per score, clipped back to [0, 1].

  Attributes:
    noise: standard deviation of the additive model error.
  """
  noise: float = 0.05

  def __post_init__(self):
    if not (np.isfinite(self.noise) and self.noise >= 0):
      raise ValueError(f"noise must be finite and >= 0, got {self.noise}")

  def heads(self, state: ListenerState, tracks: np.ndarray, activity: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """``[n, N, 3]`` head scores for catalog rows ``tracks`` [n, N]."""
    world = state.world
    er = world.expected_response(state.listeners, tracks, activity)
    h = er["conversion_hazard"]
    promo = world.track_promo[tracks]
    plain = np.where(promo, np.inf, h).min(axis=1, keepdims=True)
    plain = np.where(np.isfinite(plain), plain, h.min(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
      lift = np.where((h > 0) & (plain > 0), np.log(h / plain), 0.0)
    sub = np.clip(lift / world.config.promo_conversion_weight, 0.0, 1.0)
    ref = _exposure_ref(world)
    exp = np.clip(er["exposure"] / ref, 0.0, 1.0)
    heads = np.stack([er["p_complete"], sub, exp], axis=-1)
    if self.noise:
      heads = np.clip(heads + self.noise * rng.standard_normal(heads.shape), 0.0, 1.0)
      heads[..., 1:] = np.where(np.stack([promo, promo], -1), heads[..., 1:], 0.0)
    return heads


def _exposure_ref(world) -> float:
  vals = world.track_exposure[world.track_promo]
  return float(np.quantile(vals, 0.99)) if len(vals) else 1.0


class FusionPolicy(Policy):
  """Head scores -> ``ScoreFusion`` (numpy twin) -> ``Mixing`` (numpy twin) -> top K.

  Args:
    fusion: per-segment weights, activity kappa, exploration epsilon.
    mixing: promo cap per window, spacing, artist cap.
    scorer: the head scorer.
    slate_len: K, positions per slate.
    name: label in reports.
  """

  def __init__(self, fusion: FusionConfig = FusionConfig(),
               mixing: MixingConfig = MixingConfig(), scorer: HeadScorer = HeadScorer(),
               slate_len: int = 10, name: str = "fusion"):
    if slate_len < 1:
      raise ValueError(f"slate_len must be >= 1, got {slate_len}")
    self.fusion = fusion
    self.mixing = mixing
    self.scorer = scorer
    self.slate_len = slate_len
    self.name = name

  def weights(self, state: ListenerState, context: Context) -> np.ndarray:
    """``[n, 3]`` (alpha, beta, gamma) per listener (default: the segment table)."""
    return fusion_spec.segment_table(self.fusion)[state.listeners.segment.astype(np.int64)]

  def max_promos(self, state: ListenerState) -> Optional[np.ndarray]:
    """``[n]`` promo cap per listener, or None for the mixing config's."""
    return None

  def fused(self, state: ListenerState, candidates: Candidates, context: Context,
            weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    world = state.world
    heads = self.scorer.heads(state, candidates.tracks, context.activity, rng)
    fam = world.is_familiar(state.listeners, np.arange(len(state))[:, None],
                            candidates.tracks)
    return slates_lib.fuse(heads, state.listeners.segment, context.activity, fam, self.fusion,
                   weights=weights, seed=context.seed, candidate_ids=candidates.tracks)

  def rank(self, state, candidates, context):
    rng = np.random.default_rng(int(context.seed[0]) if len(context.seed) else 0)
    w = self.weights(state, context)
    score = self.fused(state, candidates, context, w, rng)
    world = state.world
    pos = slates_lib.mix_top(score, world.track_promo[candidates.tracks],
                     world.track_artist[candidates.tracks] + 1, candidates.valid,
                     self.mixing, self.slate_len, max_promos=self.max_promos(state))
    tracks = np.where(pos >= 0, np.take_along_axis(candidates.tracks,
                                                   np.maximum(pos, 0), 1), -1)
    return Slates(positions=pos, tracks=tracks, weights=w)


class ContextRulePolicy(FusionPolicy):
  """Weights by (segment, activity): a table row per pair, else the segment's row.

  Args:
    rules: ``{(segment_name, activity_name): (alpha, beta, gamma)}``.
    **kwargs: as :class:`FusionPolicy`.
  """

  def __init__(self, rules: Dict[Tuple[str, str], Sequence[float]], **kwargs):
    kwargs.setdefault("name", "context_rules")
    super().__init__(**kwargs)
    table = np.repeat(fusion_spec.segment_table(self.fusion)[:, None, :], N_ACT, axis=1)
    for (seg, act), w in rules.items():
      if seg not in feature_spec.SEGMENTS:
        raise ValueError(f"unknown segment {seg!r} in rules; known: {feature_spec.SEGMENTS}")
      if act not in SIM_ACTIVITIES:
        raise ValueError(f"unknown activity {act!r} in rules; known: {SIM_ACTIVITIES}")
      w = tuple(float(x) for x in w)
      if len(w) != 3 or min(w) < 0 or not all(np.isfinite(w)):
        raise ValueError(f"rule {(seg, act)} must be 3 finite weights >= 0, got {w}")
      table[feature_spec.SEGMENTS.index(seg), SIM_ACTIVITIES.index(act)] = w
    self.table = table

  def weights(self, state, context):
    return self.table[state.listeners.segment.astype(np.int64),
                      np.asarray(context.activity, np.int64)]


class PromoShareController(FusionPolicy):
  """Feedback loop on the promo cap: completion below the floor -> fewer promos.

  Keeps a promo cap ``P`` per segment (promos per mixing window; the promo share is
  ``P / window``). After each day: a segment whose completion rate fell below
  ``floor`` loses one promo slot (down to ``min_promos``); one above ``floor + margin``
  gains one back (up to ``max_promos``).

  Args:
    floor: completion-rate floor.
    margin: hysteresis above the floor before promos come back.
    min_promos, max_promos: bounds of the cap; it starts at the mixing config's.
    **kwargs: as :class:`FusionPolicy`.
  """

  stateful = True

  def __init__(self, floor: float = 0.6, margin: float = 0.02, min_promos: int = 0,
               max_promos: Optional[int] = None, **kwargs):
    kwargs.setdefault("name", "promo_controller")
    super().__init__(**kwargs)
    if not 0 <= floor <= 1:
      raise ValueError(f"floor must be in [0, 1], got {floor}")
    if margin < 0:
      raise ValueError(f"margin must be >= 0, got {margin}")
    hi = self.mixing.max_promos_per_window if max_promos is None else max_promos
    if not 0 <= min_promos <= hi:
      raise ValueError(f"need 0 <= min_promos <= max_promos, got {min_promos}, {hi}")
    self.floor, self.margin = floor, margin
    self.min_promos, self.max_promos_cap = min_promos, hi
    self.cap = np.full(N_SEG, self.mixing.max_promos_per_window, np.int64)
    self.history = [self.share.copy()]

  @property
  def share(self) -> np.ndarray:
    """Promo share per segment: the cap over the window."""
    return self.cap / self.mixing.window

  def max_promos(self, state):
    return self.cap[state.listeners.segment.astype(np.int64)]

  def end_day(self, day, metrics):
    comp = metrics["completion_rate"]
    seen = metrics["impressions"] > 0
    down = seen & (comp < self.floor)
    up = seen & (comp > self.floor + self.margin)
    self.cap = np.clip(self.cap - down + up, self.min_promos, self.max_promos_cap)
    self.history.append(self.share.copy())


def plackett_luce(scores: np.ndarray, valid: np.ndarray, k: int, temperature: float,
                  rng: Optional[np.random.Generator] = None,
                  chosen: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Samples (or scores) top-``k`` lists from softmax(scores / temperature) without
  replacement, returning each pick's probability given the earlier picks.

  Args:
    scores: ``[n, N]`` scores.
    valid: ``[n, N]`` bool.
    k: list length (at most the valid count of every row).
    temperature: softmax temperature (> 0).
    rng: generator for sampling (needed unless ``chosen`` is given).
    chosen: optional ``[n, k]`` lists to score instead of sampling.

  Returns:
    ``(positions [n, k], propensity [n, k])``.
  """
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  logits = np.where(valid, np.asarray(scores, np.float64) / temperature, -np.inf)
  n = logits.shape[0]
  if int(valid.sum(1).min(initial=k)) < k:
    raise ValueError(f"every row needs at least k={k} valid candidates")
  rows = np.arange(n)
  pos = np.zeros((n, k), np.int64)
  prop = np.zeros((n, k))
  for t in range(k):
    m = logits.max(axis=1, keepdims=True)
    p = np.exp(logits - m)
    p /= p.sum(axis=1, keepdims=True)
    if chosen is None:
      g = logits + rng.gumbel(size=logits.shape)
      c = np.argmax(g, axis=1)
    else:
      c = np.asarray(chosen[:, t], np.int64)
    pos[:, t] = c
    prop[:, t] = p[rows, c]
    logits[rows, c] = -np.inf
  return pos, prop


class PlackettLucePolicy(FusionPolicy):
  """Stochastic policy: Plackett-Luce sampling over the fused scores (no mixing).

  The logging policy of the off-policy evaluation: every valid candidate can reach
  every position, and each pick's probability is logged.

  Args:
    temperature: softmax temperature over fused scores.
    weights: optional fixed (alpha, beta, gamma) for every listener; default the
      fusion table by segment.
    **kwargs: as :class:`FusionPolicy`.
  """

  def __init__(self, temperature: float = 0.1, weights: Optional[Sequence[float]] = None,
               **kwargs):
    kwargs.setdefault("name", "plackett_luce")
    super().__init__(**kwargs)
    if not temperature > 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    if weights is not None and (len(weights) != 3 or min(weights) < 0):
      raise ValueError(f"weights must be 3 values >= 0, got {weights}")
    self.temperature = temperature
    self.fixed = None if weights is None else np.asarray(weights, np.float64)

  def weights(self, state, context):
    if self.fixed is None:
      return super().weights(state, context)
    return np.broadcast_to(self.fixed, (len(state), 3)).copy()

  def scores(self, state, candidates, context, rng):
    return self.fused(state, candidates, context, self.weights(state, context), rng)

  def rank(self, state, candidates, context):
    rng = np.random.default_rng(int(context.seed[0]) if len(context.seed) else 0)
    s = self.scores(state, candidates, context, rng)
    pos, prop = plackett_luce(s, candidates.valid, self.slate_len, self.temperature, rng)
    tracks = np.take_along_axis(candidates.tracks, pos, 1)
    return Slates(positions=pos, tracks=tracks, weights=self.weights(state, context),
                  propensity=prop)
