"""Tests of ranking.weighting: static-weight validation, the staged schedule, uncertainty
weighting and the completion-floor Lagrange multiplier."""

import numpy as np
import pytest

from ranking import config as config_lib
from ranking import weighting

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


def test_static_weights_interest_first():
  ok = weighting.validate_static_weights({"interest": 1, "subscription": 1, "exposure": 0.2})
  assert ok == {"interest": 1.0, "subscription": 1.0, "exposure": 0.2}
  with pytest.raises(ValueError, match=r"commercial task 'exposure' \(1.5\) exceeds the "
                                       r"interest weight \(1.0\)"):
    weighting.validate_static_weights({"interest": 1.0, "exposure": 1.5})
  with pytest.raises(ValueError, match="weight of task 'subscription' must be >= 0, got -1"):
    weighting.validate_static_weights({"interest": 1.0, "subscription": -1})
  with pytest.raises(ValueError, match="unknown task 'ctr'"):
    weighting.validate_static_weights({"ctr": 1.0})
  # A commercial-only model (single task) has no interest weight to compare with.
  assert weighting.validate_static_weights({"exposure": 3.0}) == {"exposure": 3.0}


def test_staged_schedule_values():
  sched = weighting.StagedSchedule({"interest": 1.0, "subscription": 0.5, "exposure": 0.4},
                                   interest_only_steps=100, ramp_steps=50)
  def at(step):
    return {k: float(v) for k, v in sched.weights_at(step).items()}
  assert at(0) == {"interest": 1.0, "subscription": 0.0, "exposure": 0.0}
  assert at(100) == {"interest": 1.0, "subscription": 0.0, "exposure": 0.0}
  assert at(125) == pytest.approx({"interest": 1.0, "subscription": 0.25, "exposure": 0.2})
  assert at(150) == pytest.approx({"interest": 1.0, "subscription": 0.5, "exposure": 0.4})
  assert at(10_000) == pytest.approx({"interest": 1.0, "subscription": 0.5, "exposure": 0.4})
  step = weighting.StagedSchedule({"interest": 1.0, "exposure": 1.0}, 10, 0)
  assert float(step.weights_at(9)["exposure"]) == 0.0
  assert float(step.weights_at(tf.constant(10))["exposure"]) == 1.0
  with pytest.raises(ValueError, match="interest_only_steps must be >= 0, got -5"):
    weighting.StagedSchedule({"interest": 1.0}, -5, 0)


def test_uncertainty_weighting_formula():
  uw = weighting.UncertaintyWeighting(("interest", "exposure"))
  uw.log_vars["exposure"].assign(np.log(4.0))
  got = float(uw({"interest": tf.constant(2.0), "exposure": tf.constant(8.0)},
                 {"interest": 1.0, "exposure": 0.5}))
  expected = 1.0 * (0.5 * 2.0) + 0.5 * (0.5 * 8.0 / 4.0 + 0.5 * np.log(4.0))
  assert got == pytest.approx(expected, rel=1e-6)
  assert len(uw.trainable_weights) == 2


def test_completion_floor_multiplier_grows_only_under_the_floor():
  cf = weighting.CompletionFloor(floor=0.6, lr=0.5)
  values = [float(cf.update(0.4)) for _ in range(3)]        # 0.2 under the floor
  assert values == pytest.approx([0.1, 0.2, 0.3])
  assert float(cf.penalty(0.4)) == pytest.approx(0.3 * 0.2)
  before = float(cf.multiplier)
  assert float(cf.update(0.7)) < before                       # above: no growth, decays
  for _ in range(10):
    cf.update(0.9)
  assert float(cf.multiplier) == 0.0                          # projected: never negative
  fresh = weighting.CompletionFloor(floor=0.6, lr=0.5)
  fresh.update(0.8)
  assert float(fresh.multiplier) == 0.0
  with pytest.raises(ValueError, match=r"floor must be in \[0, 1\], got 1.2"):
    weighting.CompletionFloor(floor=1.2)


def test_completion_floor_penalty_gradient_pushes_completion_up():
  cf = weighting.CompletionFloor(floor=0.6, lr=1.0)
  cf.update(0.3)
  c = tf.Variable(0.3)
  with tf.GradientTape() as tape:
    p = cf.penalty(c)
  assert float(tape.gradient(p, c)) == pytest.approx(-float(cf.multiplier))


def test_floor_from_reference():
  assert weighting.floor_from_reference(0.62, 0.05) == pytest.approx(0.589)
  with pytest.raises(ValueError, match="tolerance must be in"):
    weighting.floor_from_reference(0.5, 1.0)


def test_loss_combiner():
  tc = config_lib.TrainConfig(task_weights={"interest": 1.0, "subscription": 0.5},
                              interest_only_steps=2, ramp_steps=2, completion_floor=0.5,
                              floor_lr=1.0)
  comb = weighting.LossCombiner(("interest", "subscription"), tc)
  losses = {"interest": tf.constant(1.0), "subscription": tf.constant(4.0)}
  assert float(comb(losses, 0)) == pytest.approx(1.0)
  assert float(comb(losses, 3)) == pytest.approx(1.0 + 0.25 * 4.0)
  total = float(comb(losses, 10, organic_completion=tf.constant(0.3), training=True))
  assert total == pytest.approx(3.0)                     # multiplier was 0 before the step
  assert float(comb.floor.multiplier) == pytest.approx(0.2)
  with pytest.raises(ValueError, match=r"no weight for tasks \['exposure'\]"):
    weighting.LossCombiner(("interest", "exposure"),
                           config_lib.TrainConfig(task_weights={"interest": 1.0}))


def test_organic_mean_completion():
  p = tf.constant([0.2, 0.9, 0.4, 0.8])
  promo = tf.constant([0, 1, 0, 1], tf.int64)
  assert float(weighting.organic_mean_completion(p, promo)) == pytest.approx(0.3)
  all_promo = tf.ones(4, tf.int64)
  assert float(weighting.organic_mean_completion(p, all_promo, default=0.6)) == \
      pytest.approx(0.6)
