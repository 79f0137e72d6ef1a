"""Parity of the two fusion kernels: ``ScoreFusion`` (TF) and ``kernel_np.fuse`` (numpy).

Seeded random requests over every segment and activity (plus out-of-range indices),
per-row overrides (some rows overriding, some not; override components negative, NaN
or infinite), familiarity 0/1, fractional or absent, novelty given or derived,
candidate ids given or positional, seeds absent or present (negative ones included),
and two fusion configs. Both kernels must give the same scores, weights and additive
terms to float32 precision and the same stable order. The tolerance is tight enough
that a change to one kernel alone (a kappa, epsilon, the seed mask, the override rule,
the zero-beta rule) breaks it, which the mutant checks at the end prove.
"""

import dataclasses
import itertools

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from features import feature_spec
from ranking.fusion import exploration
from ranking.fusion import kernel_np
from ranking.fusion.kernel_tf import ScoreFusion
from ranking.fusion.spec import FusionConfig

B, N = 64, 24
# Scores are ~1; float32 rounds the weights, kappa and the sums to ~1e-7 each.
ATOL = 1e-6
OUTPUTS = ("score", "weights", "context", "exploration")

CUSTOM = FusionConfig(
    segment_weights={"new": (1.0, 0.0, 0.0), "free": (0.5, 0.5, 0.0),
                     "free_veteran": (0.4, 0.6, 0.0), "trial": (0.3, 0.45, 0.25),
                     "paid": (0.7, 0.0, 0.3)},
    activity_familiarity={"unknown": 0.01, "commute": 0.1, "workout": -0.02, "focus": 0.0,
                          "explore": -0.2},
    exploration=0.05)
CONFIGS = {"default": FusionConfig(), "custom": CUSTOM}


def _request(seed: int, seeds: str, familiar: str, override: bool, ids: bool,
             novelty: bool) -> dict:
  """Numpy inputs of one random request batch (every value exact in float32)."""
  rng = np.random.default_rng(seed)
  x = {h: rng.random((B, N)).astype(np.float32)
       for h in ("interest", "subscription", "exposure")}
  # Every segment and activity, in shuffled pairs, and a few out-of-range indices.
  x["segment"] = rng.permutation(np.arange(B) % len(feature_spec.SEGMENTS)).astype(np.int64)
  x["activity"] = rng.permutation(np.arange(B) % len(feature_spec.ACTIVITIES)).astype(np.int64)
  x["segment"][:2] = [-1, 7]
  x["activity"][2:4] = [len(feature_spec.ACTIVITIES), -3]
  if familiar == "binary":
    x["familiar"] = (rng.random((B, N)) < 0.5).astype(np.float32)
  elif familiar == "fractional":
    x["familiar"] = rng.random((B, N)).astype(np.float32)
  elif familiar == "mixed":
    x["familiar"] = np.where(rng.random((B, N)) < 0.5, rng.random((B, N)) < 0.5,
                             rng.random((B, N))).astype(np.float32)
  if novelty:
    x["novelty"] = rng.random((B, N)).astype(np.float32)
  if ids:
    x["candidate_ids"] = rng.integers(0, 2**40, (B, N), dtype=np.int64)
  if seeds == "mixed":
    x["seed"] = rng.integers(-2**31, 2**31, B, dtype=np.int64)
    x["seed"][:8] = [0, -1, 1, -2**31, 2**31 - 1, -5, 2**35, -2**35]
  if override:
    w = rng.random((B, 3)).astype(np.float32)
    bad = rng.random((B, 3))
    w[bad < 0.10] = -0.5
    w[(bad >= 0.10) & (bad < 0.15)] = np.nan
    w[(bad >= 0.15) & (bad < 0.18)] = np.inf
    w[(bad >= 0.18) & (bad < 0.20)] = -np.inf
    x["override_weights"] = w
    x["override"] = rng.random(B) < 0.6
  # Exact ties: a copy of the previous candidate (same heads, signals and id).
  for key in ("interest", "subscription", "exposure", "familiar", "novelty", "candidate_ids"):
    if key in x:
      x[key][:, 5] = x[key][:, 4]
  return x


def _tf(x: dict, config: FusionConfig) -> dict:
  out = ScoreFusion(config)({k: tf.constant(v) for k, v in x.items()})
  return {k: v.numpy() for k, v in out.items()}


def _mismatches(got_tf: dict, got_np: dict) -> list:
  """What differs between the two kernels' outputs (empty: parity)."""
  problems = []
  for key in OUTPUTS:
    a, b = got_tf[key].astype(np.float64), got_np[key]
    if a.shape != b.shape:
      problems.append(f"{key}: shape {a.shape} vs {b.shape}")
    elif not np.allclose(a, b, rtol=0.0, atol=ATOL):
      problems.append(f"{key}: max |diff| {np.max(np.abs(a - b)):.3g}")
  order_tf = np.argsort(-got_tf["score"], axis=1, kind="stable")
  order_np = np.argsort(-got_np["score"], axis=1, kind="stable")
  if not np.array_equal(order_tf, order_np):
    problems.append(f"order differs in {int((order_tf != order_np).any(1).sum())} rows")
  return problems


CASES = list(itertools.product(("absent", "mixed"), ("binary", "fractional", "mixed", "absent"),
                               (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("seeds, familiar, override, ids, novelty", CASES)
def test_tf_and_numpy_kernels_agree(config_name, seeds, familiar, override, ids, novelty):
  config = CONFIGS[config_name]
  index = CASES.index((seeds, familiar, override, ids, novelty))
  x = _request(1000 + index, seeds, familiar, override, ids, novelty)
  got_tf, got_np = _tf(x, config), kernel_np.fuse(x, config)
  assert _mismatches(got_tf, got_np) == []
  if ids or seeds == "absent":
    # The duplicated candidate (same id) ties exactly in both kernels; the stable order
    # above kept it second in both. Without ids the position is hashed, so no tie.
    for out in (got_tf, got_np):
      np.testing.assert_array_equal(out["score"][:, 5], out["score"][:, 4])
  if seeds == "mixed":
    off = x["seed"] < 0
    assert not got_np["exploration"][off].any() and not got_tf["exploration"][off].any()
    assert got_np["exploration"][~off].any()


def test_column_index_inputs_are_accepted_by_both():
  x = _request(7, "mixed", "binary", True, True, False)
  x["segment"], x["activity"] = x["segment"][:, None], x["activity"][:, None]
  x["seed"] = x["seed"][:, None]
  assert _mismatches(_tf(x, CUSTOM), kernel_np.fuse(x, CUSTOM)) == []


def test_missing_inputs_are_named_by_both():
  x = _request(8, "absent", "binary", False, False, False)
  del x["exposure"]
  with pytest.raises(ValueError, match="exposure"):
    kernel_np.fuse(x)
  with pytest.raises(ValueError, match="exposure"):
    _tf(x, FusionConfig())
  x = _request(8, "absent", "binary", False, False, False)
  x["override"] = np.ones(B, bool)
  with pytest.raises(ValueError, match="override_weights"):
    kernel_np.fuse(x)


def _without_seed_mask(x):
  """The seeds an implementation without the seed < 0 mask would hash."""
  return dict(x, seed=np.mod(x["seed"], exploration.HASH_MOD))


def _nan_override_as_zero(x):
  return dict(x, override_weights=np.nan_to_num(x["override_weights"], nan=0.0))


MUTANTS = {
    "kappa": (lambda x: x, dataclasses.replace(
        FusionConfig(), activity_familiarity=dict(FusionConfig().activity_familiarity,
                                                  focus=0.0301))),
    "epsilon": (lambda x: x, dataclasses.replace(FusionConfig(), exploration=0.0201)),
    "weight": (lambda x: x, dataclasses.replace(
        FusionConfig(), segment_weights=dict(FusionConfig().segment_weights,
                                             trial=(0.62, 0.3001, 0.08)))),
    "zero_beta": (lambda x: x, dataclasses.replace(FusionConfig(), zero_beta_segments=())),
    "seed_mask": (_without_seed_mask, FusionConfig()),
    "override_rule": (_nan_override_as_zero, FusionConfig()),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_a_change_to_one_kernel_breaks_parity(mutant):
  """Each mutant changes what the numpy side computes by one small rule or constant."""
  x = _request(11, "mixed", "mixed", True, True, False)
  change_inputs, np_config = MUTANTS[mutant]
  assert _mismatches(_tf(x, FusionConfig()), kernel_np.fuse(x, FusionConfig())) == []
  assert _mismatches(_tf(x, FusionConfig()), kernel_np.fuse(change_inputs(x), np_config))
