"""The injected change of taste: from its day on, one segment's listeners find promo
tracks worse and nothing else changes."""

import argparse

import numpy as np
import pytest

from features import feature_spec
from online import promo_controller
from simulation import live_args
from simulation import live_loop
from simulation import live_taste
from simulation import world as world_lib
from simulation import world_config


@pytest.fixture(name="world")
def _world():
  return world_lib.World(world_config.WorldConfig(n_tracks=300), seed=3)


def test_the_segment_dislikes_promo_tracks_from_the_change_day_on(world):
  listeners = world.sample_users(400, np.random.default_rng(1))
  free = listeners.segment == feature_spec.SEGMENTS.index("free")
  assert 0 < free.sum() < len(listeners)
  change = live_taste.TasteChange(day=3, segment="free", promo_cost=1.0)
  promo = np.flatnonzero(world.catalog.track_promo)[:5]
  organic = np.flatnonzero(~world.catalog.track_promo.astype(bool))[:5]
  tracks = np.tile(np.concatenate([promo, organic]), (len(listeners), 1))

  before = world.expected_response(listeners, tracks)
  fatigue = listeners.fatigue.copy()
  assert live_taste.apply(change, world, listeners, day=2) == 0
  np.testing.assert_array_equal(listeners.fatigue, fatigue)

  assert live_taste.apply(change, world, listeners, day=3) == free.sum()
  after = world.expected_response(listeners, tracks)
  # A promo track loses promo_cost of utility for the segment (its fatigue was 0).
  np.testing.assert_allclose(after["utility"][free][:, :5],
                             before["utility"][free][:, :5] - 1.0, atol=1e-5)
  assert (after["p_skip"][free][:, :5] > before["p_skip"][free][:, :5]).all()
  assert (after["p_complete"][free][:, :5] < before["p_complete"][free][:, :5]).all()
  for name in ("utility", "p_skip", "p_complete"):
    np.testing.assert_allclose(after[name][free][:, 5:], before[name][free][:, 5:])
    np.testing.assert_allclose(after[name][~free], before[name][~free])

  # The floor is set again each day (the world's nightly decay would wash it out), and
  # a listener already more tired of promotions keeps their own fatigue.
  listeners.fatigue[free] *= world.config.fatigue_decay
  listeners.fatigue[np.flatnonzero(free)[0]] = 25.0
  assert live_taste.apply(change, world, listeners, day=4) == free.sum()
  assert listeners.fatigue[np.flatnonzero(free)[0]] == 25.0
  assert listeners.fatigue[free].min() == pytest.approx(10.0)
  np.testing.assert_array_equal(listeners.fatigue[~free], fatigue[~free])


@pytest.mark.parametrize("kwargs,field", [({"day": 0}, "promo_dislike_day"),
                                          ({"day": 1, "segment": "vip"},
                                           "promo_dislike_segment"),
                                          ({"day": 1, "promo_cost": 0.0},
                                           "promo_dislike_cost")])
def test_a_bad_change_is_refused_naming_the_flag(kwargs, field):
  with pytest.raises(ValueError, match=field):
    live_taste.TasteChange(**kwargs)


def test_the_flags_make_the_change():
  parser = argparse.ArgumentParser()
  live_args.add_arguments(parser)
  default = live_loop.config_from_args(parser.parse_args([]))
  assert default.taste_change is None
  assert default.completion_floor == promo_controller.ControllerConfig().completion_floor
  config = live_loop.config_from_args(parser.parse_args(
      ["--promo-dislike-day", "2", "--promo-dislike-segment", "paid",
       "--promo-dislike-cost", "0.5", "--completion-floor", "0.4"]))
  assert config.taste_change == live_taste.TasteChange(2, "paid", 0.5)
  assert config.completion_floor == 0.4
  with pytest.raises(ValueError, match="completion_floor"):
    live_loop.LiveConfig(completion_floor=1.2)
