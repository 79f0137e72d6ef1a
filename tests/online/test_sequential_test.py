"""Tests of the always-valid canary test (online.sequential_test) on simulated sessions:
A/A false positives under continuous monitoring, power, guardrail rollbacks."""

import json
import math

import numpy as np
import pytest

from online import sequential_test as seq

LOOKS = 20


def _sessions(rng, n, mean):
  """Per-session completion in [0, 1] with the given mean (a Beta with sd about 0.22)."""
  a = 2.0 * mean / 0.5
  b = 2.0 * (1 - mean) / 0.5
  return rng.beta(a, b, n)


def _aa_run(rng, per_look_stable, per_look_canary):
  """One A/A experiment looked at after every batch; the first non-keep decision."""
  test = seq.CanaryTest("completion", [seq.Guardrail("skip_rate", tolerance=0.0)])
  for _ in range(LOOKS):
    test.add("stable", {"completion": _sessions(rng, per_look_stable, 0.5),
                        "skip_rate": rng.binomial(1, 0.25, per_look_stable)})
    test.add("canary", {"completion": _sessions(rng, per_look_canary, 0.5),
                        "skip_rate": rng.binomial(1, 0.25, per_look_canary)})
    decision = test.decide()
    if decision.action != seq.KEEP:
      return decision
  return decision


@pytest.mark.parametrize("per_look", [(100, 100), (180, 20)])
def test_false_positive_rate_under_aa_with_continuous_monitoring(per_look):
  rng = np.random.default_rng(7)
  n_runs, alpha = 400, 0.05
  actions = [_aa_run(rng, *per_look) for _ in range(n_runs)]
  promoted = sum(d.action == seq.PROMOTE for d in actions)
  primary_positive = sum(d.action != seq.KEEP and d.failed_guardrail is None
                         for d in actions)
  guardrail_rollbacks = sum(d.failed_guardrail == "skip_rate" for d in actions)
  slack = 3 * math.sqrt(alpha * (1 - alpha) / n_runs)
  assert promoted / n_runs <= alpha + slack
  assert primary_positive / n_runs <= alpha + slack
  assert guardrail_rollbacks / n_runs <= alpha + slack


def test_the_p_value_never_rises_and_the_sequence_only_narrows():
  rng = np.random.default_rng(3)
  test = seq.MixtureSPRT("completion", min_samples=50)
  previous = test.look()
  assert (previous.p_value, previous.lower, previous.upper) == (1.0, -math.inf, math.inf)
  for _ in range(30):
    test.add("stable", _sessions(rng, 60, 0.5))
    test.add("canary", _sessions(rng, 60, 0.5))
    e = test.look()
    assert e.p_value <= previous.p_value
    assert e.lower >= previous.lower and e.upper <= previous.upper
    previous = e
  assert previous.n_stable == previous.n_canary == 1800
  assert previous.lower < 0 < previous.upper


def test_a_five_percent_gain_is_detected_and_promoted():
  rng = np.random.default_rng(11)
  n_runs, detected, looks_used = 40, 0, []
  for _ in range(n_runs):
    test = seq.CanaryTest("completion", [seq.Guardrail("skip_rate", tolerance=0.01)])
    for look in range(1, 41):
      test.add("stable", {"completion": _sessions(rng, 900, 0.50),
                          "skip_rate": rng.binomial(1, 0.25, 900)})
      test.add("canary", {"completion": _sessions(rng, 100, 0.525),
                          "skip_rate": rng.binomial(1, 0.25, 100)})
      decision = test.decide()
      if decision.action != seq.KEEP:
        break
    if decision.action == seq.PROMOTE:
      detected += 1
      looks_used.append(look)
  assert detected / n_runs >= 0.8
  e = decision.evidence["completion"]
  assert e.lower > 0 and e.p_value <= 0.05
  assert e.mean_canary > e.mean_stable
  assert "completion +" in decision.reason


def test_a_guardrail_breach_rolls_back_even_when_the_primary_wins():
  rng = np.random.default_rng(5)
  test = seq.CanaryTest("completion", [
      seq.Guardrail("skip_rate", tolerance=0.01),
      seq.Guardrail("conversion", higher_is_better=True, tolerance=0.002),
      seq.Guardrail("latency_ms", tolerance=5.0)])
  decision = None
  for _ in range(40):
    for arm, n, skip, latency in (("stable", 500, 0.25, 20.0), ("canary", 500, 0.32, 20.0)):
      test.add(arm, {"completion": _sessions(rng, n, 0.55 if arm == "canary" else 0.5),
                     "skip_rate": rng.binomial(1, skip, n),
                     "conversion": rng.binomial(1, 0.02, n),
                     "latency_ms": rng.gamma(4.0, latency / 4.0, n)})
    decision = test.decide()
    if decision.action != seq.KEEP:
      break
  assert decision.action == seq.ROLLBACK
  assert decision.failed_guardrail == "skip_rate"
  assert decision.evidence["skip_rate"].lower > 0.01
  record = json.loads(json.dumps(decision.as_dict()))
  assert record["failed_guardrail"] == "skip_rate"
  assert set(record["evidence"]) == {"completion", "skip_rate", "conversion", "latency_ms"}
  assert record["evidence"]["skip_rate"]["n_canary"] > 0


def test_a_latency_regression_and_a_conversion_drop_each_fail_their_guardrail():
  rng = np.random.default_rng(9)
  for metric, guardrail, stable, canary in (
      ("latency_ms", seq.Guardrail("latency_ms", tolerance=2.0),
       lambda n: rng.gamma(4.0, 5.0, n), lambda n: rng.gamma(4.0, 7.5, n)),
      ("conversion", seq.Guardrail("conversion", higher_is_better=True, tolerance=0.01),
       lambda n: rng.binomial(1, 0.10, n), lambda n: rng.binomial(1, 0.05, n))):
    test = seq.CanaryTest("completion", [guardrail])
    for _ in range(30):
      test.add("stable", {"completion": _sessions(rng, 300, 0.5), metric: stable(300)})
      test.add("canary", {"completion": _sessions(rng, 300, 0.5), metric: canary(300)})
      decision = test.decide()
      if decision.action != seq.KEEP:
        break
    assert (decision.action, decision.failed_guardrail) == (seq.ROLLBACK, metric)


def test_too_few_samples_keep_and_bad_input_is_named():
  test = seq.CanaryTest("completion")
  test.add("stable", {"completion": [0.5] * 10})
  assert test.decide().action == seq.KEEP
  assert "fewer than 100" in test.decide().reason
  with pytest.raises(ValueError, match="unknown metric"):
    test.add("stable", {"skips": [1.0]})
  with pytest.raises(ValueError, match="arm"):
    test.add("treatment", {"completion": [1.0]})
  with pytest.raises(ValueError, match="finite"):
    test.add("canary", {"completion": [float("nan")]})
  with pytest.raises(ValueError, match="alpha"):
    seq.MixtureSPRT("x", alpha=1.5)


def test_batched_moments_equal_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(3.0, 2.0, 1000)
  moments = seq.ArmMoments()
  for chunk in np.array_split(x, 7):
    moments.add(chunk)
  assert moments.n == 1000
  assert moments.mean == pytest.approx(x.mean(), rel=1e-12)
  assert moments.variance == pytest.approx(x.var(ddof=1), rel=1e-10)
