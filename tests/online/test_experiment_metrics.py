"""Tests of the per-session observations the sequential test and the promo controller read
(online.experiment_metrics)."""

import numpy as np
import pytest

from online import experiment_metrics as metrics
from online import promo_controller
from online import sequential_test


def _play(user, session, arm, segment, completion, skip, subscription=0.0, like=None):
  return {"user_id": user, "session_id": session, "arm": arm, "user_segment": segment,
          "completion": completion, "skip": skip, "subscription": subscription,
          "like": like}


EVENTS = [
    # u1's session s1 has three plays, but counts as one observation.
    _play("u1", "s1", "stable", "free", 1.0, 0.0),
    _play("u1", "s1", "stable", "free", 0.4, 1.0, like=1.0),
    _play("u1", "s1", "stable", "free", 0.7, 0.0, subscription=1.0),
    _play("u1", "s2", "stable", "free", 0.2, 1.0),
    _play("u2", "s1", "canary", "paid", 0.9, 0.0, like=1.0),
    _play("u3", "s1", "canary", "free", None, None),   # a session without labels
]


def test_one_observation_per_session_and_arm():
  obs = metrics.arm_observations(EVENTS)
  assert sorted(obs) == ["canary", "stable"]
  stable = obs["stable"]
  np.testing.assert_allclose(stable["completion"], [0.7, 0.2])
  np.testing.assert_allclose(stable["skip_rate"], [1 / 3, 1.0])
  np.testing.assert_allclose(stable["conversion"], [1.0, 0.0])
  np.testing.assert_allclose(stable["likes"], [1.0, 0.0])
  # The unlabelled session has no completion, but it did not convert.
  np.testing.assert_allclose(obs["canary"]["completion"], [0.9])
  np.testing.assert_allclose(obs["canary"]["conversion"], [0.0, 0.0])


def test_segment_completion_is_over_sessions_of_all_arms():
  assert metrics.segment_completion(EVENTS) == {"free": (2, pytest.approx(0.45)),
                                                "paid": (1, pytest.approx(0.9))}
  assert metrics.segment_completion([]) == {}
  assert metrics.arm_observations([]) == {}


def test_latencies_of_answered_requests_per_arm():
  requests = [{"arm": "stable", "latency_ms": 10.0, "code": "OK"},
              {"arm": "canary", "latency_ms": 30.0, "code": "OK"},
              {"arm": "canary", "latency_ms": 900.0, "code": "INTERNAL"},
              {"arm": "", "latency_ms": 5.0}]
  got = metrics.arm_latencies(requests)
  assert sorted(got) == ["canary", "none", "stable"]
  np.testing.assert_allclose(got["canary"], [30.0])


def test_they_feed_the_sequential_test_and_the_controller():
  test = sequential_test.CanaryTest("completion", [
      sequential_test.Guardrail("skip_rate"), sequential_test.Guardrail("latency_ms")])
  for arm, observations in metrics.arm_observations(EVENTS).items():
    test.add(arm, {k: v for k, v in observations.items() if k in ("completion",
                                                                 "skip_rate")})
  for arm, values in metrics.arm_latencies([{"arm": "stable", "latency_ms": 1.0}]).items():
    test.add(arm, {"latency_ms": values})
  decision = test.decide()
  assert decision.evidence["completion"].n_stable == 2
  assert decision.evidence["completion"].n_canary == 1
  controller = promo_controller.PromoController(promo_controller.ControllerConfig(
      min_sessions=1, completion_floor=0.5))
  actions = controller.observe(0, metrics.segment_completion(EVENTS))
  assert [(a.segment, a.kind, a.sessions) for a in actions] == [("free", "lower", 2)]
