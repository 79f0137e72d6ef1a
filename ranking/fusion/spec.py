"""The fusion spec: per-segment weights, activity coefficients, epsilon, as data.

This module owns what the fused score is made of, independent of any kernel: the
default weight table and why each row looks the way it does, the optional weight rows
per (segment, activity) that refine it, the activity familiarity coefficients, the
exploration epsilon, the segments whose beta is always 0, the validation of all of them
(:class:`FusionConfig`), and the same tables as arrays indexed by
``feature_spec.SEGMENTS`` and ``feature_spec.ACTIVITIES``, which both fusion kernels
(``kernel_tf``, ``kernel_np``) and the simulator's policies read.
"""

import dataclasses
import math
from typing import Dict, Mapping, Tuple

import numpy as np

from features import feature_spec

HEADS: Tuple[str, ...] = ("interest", "subscription", "exposure")   # alpha, beta, gamma

# Weights per listener segment (alpha, beta, gamma); every row sums to 1.
#  new           interest first: early sessions decide whether a listener stays, and
#                the conversion head knows little about a brand-new listener, so a
#                sales push would cost relevance for a noisy signal.
#  free          habits are forming: conversion gets a real share, interest still leads.
#  free_veteran  the largest beta: long-tenure free listeners are the best-calibrated
#                and most likely converters, and their taste is well known, so interest
#                can give up the most here without hurting the list.
#  trial         between free and free_veteran: the trial converts when it feels worth
#                paying for, so interest stays above the veteran's while beta is high.
#  paid          beta = 0 (nothing left to convert; the head would only add noise);
#                gamma is spent on exposure, i.e. promoted and new artists, which for
#                a paying listener is catalogue diversity rather than an ad.
DEFAULT_SEGMENT_WEIGHTS: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ("new", (0.85, 0.10, 0.05)),
    ("free", (0.70, 0.22, 0.08)),
    ("free_veteran", (0.55, 0.35, 0.10)),
    ("trial", (0.62, 0.30, 0.08)),
    ("paid", (0.80, 0.00, 0.20)),
)

# kappa per activity: > 0 favours tracks the listener knows, < 0 favours new ones.
#  commute  short attention, often hands-off: familiar tracks get skipped less.
#  workout  steady familiar energy; skipping mid-set is costly.
#  focus    familiar music is less distracting, mildly.
#  explore  the listener asked for discovery: novel tracks go up, known ones down.
#  unknown  no context, no adjustment.
DEFAULT_ACTIVITY_FAMILIARITY: Tuple[Tuple[str, float], ...] = (
    ("unknown", 0.0),
    ("commute", 0.06),
    ("workout", 0.04),
    ("focus", 0.03),
    ("explore", -0.08),
)


def _as_pairs(value, names: Tuple[str, ...], what: str) -> Tuple[Tuple[str, object], ...]:
  """Normalizes a mapping or pairs keyed by ``names`` to pairs in ``names`` order."""
  items = dict(value.items() if isinstance(value, Mapping) else value)
  if set(items) != set(names) or len(items) != len(names):
    raise ValueError(f"{what} must have exactly the keys {names}, got {tuple(items)}")
  return tuple((name, items[name]) for name in names)


def _finite(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  """Fusion weights and adjustments (``ranking.fusion`` has the formula and the why).

  Attributes:
    segment_weights: ``(segment, (alpha, beta, gamma))`` for every segment of
      ``feature_spec.SEGMENTS`` (a mapping is accepted too); weights are finite and
      >= 0.
    activity_familiarity: ``(activity, kappa)`` for every activity of
      ``feature_spec.ACTIVITIES``; finite, ``|kappa| <= 1``.
    exploration: epsilon, the largest exploration bonus (finite, >= 0).
    zero_beta_segments: segments whose beta is 0 whatever the table or a request
      override says (paid listeners have nothing to convert to).
    context_weights: ``((segment, activity), (alpha, beta, gamma))`` rows that replace
      the segment's row for sessions in that activity (a mapping is accepted too);
      pairs not listed use the segment's row. Same rules as ``segment_weights``.
  """
  segment_weights: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
      DEFAULT_SEGMENT_WEIGHTS)
  activity_familiarity: Tuple[Tuple[str, float], ...] = DEFAULT_ACTIVITY_FAMILIARITY
  exploration: float = 0.02
  zero_beta_segments: Tuple[str, ...] = ("paid",)
  context_weights: Tuple[Tuple[Tuple[str, str], Tuple[float, float, float]], ...] = ()

  def __post_init__(self):
    weights = _as_pairs(self.segment_weights, feature_spec.SEGMENTS, "segment_weights")
    rows = []
    for name, row in weights:
      row = tuple(row)
      if len(row) != 3 or not all(_finite(x) and x >= 0 for x in row):
        raise ValueError(
            f"segment_weights[{name!r}] must be 3 finite weights >= 0, got {row!r}")
      rows.append((name, tuple(float(x) for x in row)))
    object.__setattr__(self, "segment_weights", tuple(rows))

    kappas = _as_pairs(self.activity_familiarity, feature_spec.ACTIVITIES,
                       "activity_familiarity")
    for name, kappa in kappas:
      if not (_finite(kappa) and abs(kappa) <= 1.0):
        raise ValueError(
            f"activity_familiarity[{name!r}] must be finite with |kappa| <= 1, "
            f"got {kappa!r}")
    object.__setattr__(self, "activity_familiarity",
                       tuple((name, float(k)) for name, k in kappas))

    if not (_finite(self.exploration) and self.exploration >= 0):
      raise ValueError(f"exploration must be finite and >= 0, got {self.exploration!r}")
    zero = tuple(self.zero_beta_segments)
    for name in zero:
      if name not in feature_spec.SEGMENTS:
        raise ValueError(f"zero_beta_segments has unknown segment {name!r}; "
                         f"known: {feature_spec.SEGMENTS}")
      if dict(rows)[name][1] != 0.0:
        raise ValueError(f"segment {name!r} is in zero_beta_segments but its beta is "
                         f"{dict(rows)[name][1]}")
    object.__setattr__(self, "zero_beta_segments", zero)
    context = _context_rows(self.context_weights)
    for (seg, act), row in context:
      if seg in zero and row[1] != 0.0:
        raise ValueError(f"segment {seg!r} is in zero_beta_segments but its "
                         f"context_weights row for {act!r} has beta {row[1]}")
    object.__setattr__(self, "context_weights", context)

  def weights_for(self, segment: str) -> Tuple[float, float, float]:
    """(alpha, beta, gamma) of a segment name."""
    table = dict(self.segment_weights)
    if segment not in table:
      raise ValueError(f"unknown segment {segment!r}; known: {feature_spec.SEGMENTS}")
    return table[segment]

  def kappa_for(self, activity: str) -> float:
    """Familiarity coefficient of an activity name."""
    table = dict(self.activity_familiarity)
    if activity not in table:
      raise ValueError(f"unknown activity {activity!r}; known: {feature_spec.ACTIVITIES}")
    return table[activity]

  def weights_in(self, segment: str, activity: str) -> Tuple[float, float, float]:
    """(alpha, beta, gamma) of a (segment, activity) pair, as configured."""
    row = dict(self.context_weights).get((segment, activity))
    if row is None and activity not in feature_spec.ACTIVITIES:
      raise ValueError(f"unknown activity {activity!r}; known: {feature_spec.ACTIVITIES}")
    return row if row is not None else self.weights_for(segment)

  def to_dict(self) -> Dict[str, object]:
    """JSON-friendly form (for ``get_config`` and ``melody_serving.json``)."""
    context: Dict[str, Dict[str, list]] = {}
    for (seg, act), row in self.context_weights:
      context.setdefault(seg, {})[act] = list(row)
    return {
        "segment_weights": {name: list(row) for name, row in self.segment_weights},
        "activity_familiarity": dict(self.activity_familiarity),
        "exploration": self.exploration,
        "zero_beta_segments": list(self.zero_beta_segments),
        "context_weights": context,
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, object]) -> "FusionConfig":
    context = {(seg, act): row for seg, acts in dict(d.get("context_weights", {})).items()
               for act, row in acts.items()}
    return cls(segment_weights=d["segment_weights"],
               activity_familiarity=d["activity_familiarity"],
               exploration=d["exploration"],
               zero_beta_segments=tuple(d["zero_beta_segments"]),
               context_weights=context)


def _context_rows(value) -> Tuple[Tuple[Tuple[str, str], Tuple[float, float, float]], ...]:
  """Validated ``context_weights`` pairs in (segment, activity) table order."""
  items = dict(value.items() if isinstance(value, Mapping) else value)
  rows = {}
  for key, row in items.items():
    seg, act = tuple(key)
    if seg not in feature_spec.SEGMENTS:
      raise ValueError(f"context_weights has unknown segment {seg!r}; "
                       f"known: {feature_spec.SEGMENTS}")
    if act not in feature_spec.ACTIVITIES:
      raise ValueError(f"context_weights has unknown activity {act!r}; "
                       f"known: {feature_spec.ACTIVITIES}")
    row = tuple(row)
    if len(row) != 3 or not all(_finite(x) and x >= 0 for x in row):
      raise ValueError(f"context_weights[({seg!r}, {act!r})] must be 3 finite weights "
                       f">= 0, got {row!r}")
    rows[(seg, act)] = tuple(float(x) for x in row)
  order = {(s, a): i for i, (s, a) in enumerate(
      (s, a) for s in feature_spec.SEGMENTS for a in feature_spec.ACTIVITIES)}
  return tuple(sorted(rows.items(), key=lambda kv: order[kv[0]]))


# ---------------------------------------------------------------- tables as arrays
def weight_table(config: FusionConfig) -> np.ndarray:
  """``[len(SEGMENTS), 3]`` float64 (alpha, beta, gamma) per segment, as configured."""
  return np.array([row for _, row in config.segment_weights], np.float64)


def cell_table(config: FusionConfig) -> np.ndarray:
  """``[len(SEGMENTS), len(ACTIVITIES), 3]`` float64 weights per (segment, activity):
  the segment's row, replaced by its ``context_weights`` row where there is one."""
  table = np.repeat(weight_table(config)[:, None, :], len(feature_spec.ACTIVITIES), axis=1)
  for (seg, act), row in config.context_weights:
    table[feature_spec.SEGMENTS.index(seg), feature_spec.ACTIVITIES.index(act)] = row
  return table


def zero_beta_mask(config: FusionConfig) -> np.ndarray:
  """``[len(SEGMENTS)]`` bool: True where beta is forced to 0."""
  return np.array([name in config.zero_beta_segments for name in feature_spec.SEGMENTS])


def kappa_table(config: FusionConfig) -> np.ndarray:
  """``[len(ACTIVITIES)]`` float64 kappa per ``feature_spec.ACTIVITIES`` index."""
  return np.array([k for _, k in config.activity_familiarity], np.float64)


def segment_table(config: FusionConfig) -> np.ndarray:
  """The effective weights per segment: :func:`weight_table` with beta zeroed for
  ``zero_beta_segments``, i.e. the weights a row without an override gets."""
  table = weight_table(config)
  table[zero_beta_mask(config), 1] = 0.0
  return table
