"""Tests of the skip structure (``simulation.skip_dynamics``, ``simulation.skip_stats``):
the statistics on hand-made logs, and on one fixed-seed simulated log every structural
property against its target in ``simulation.skip_targets`` (momentum decaying with
lag, skip runs, skipped-through sessions, context and shuffle, position), interest
still lowering skips, skip profiles consistent with completion, and a listener who
gives up playing nothing further down a list."""

import numpy as np
import pytest

from features import events
from simulation import calibration_skip_report
from simulation import skip_dynamics
from simulation import skip_stats
from simulation import skip_targets
from simulation.world import World
from simulation.world_config import DEFAULT_START_TS, WorldConfig

TARGETS = {t.name: t for t in skip_targets.TARGETS}


@pytest.fixture(scope="module")
def world():
  return World(seed=7)     # the calibrated catalogue: the fitted levels depend on it


@pytest.fixture(scope="module")
def log(world):
  """1,500 listeners x 3 days of the logging policy (about 60,000 plays)."""
  rng = np.random.default_rng(np.random.SeedSequence([7, 99]))
  cols = world.simulate(world.sample_users(1500, rng), 3, DEFAULT_START_TS, rng)
  return cols, calibration_skip_report.stats(cols)


def _on_target(stats, name):
  t = TARGETS[name]
  return abs(t.read(stats) - t.value) <= t.tolerance, t.read(stats)


# --------------------------------------------------------------- hand-made logs
def test_momentum_runs_and_session_shares_by_hand():
  session = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
  skip = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], bool)
  # Lag-1 pairs inside sessions: after a skip 6 of 7 skipped, after a play 2 of 2.
  assert skip_stats.momentum(session, skip, lags=(1,))[1] == pytest.approx(6 / 7 - 1.0)
  assert list(skip_stats.skip_runs(session, skip)) == [2, 1, 2, 5]
  lengths, shares = skip_stats.session_skip_shares(session, skip)
  assert list(lengths) == [4, 3, 5]
  np.testing.assert_allclose(shares, [0.75, 2 / 3, 1.0])
  assert skip_stats.all_skip_share(session, skip, min_len=3) == pytest.approx(1 / 3)
  assert skip_stats.all_skip_share(session, skip, min_len=5) == 1.0
  np.testing.assert_allclose(skip_stats.position_rates(np.arange(12) % 4, skip, last=4),
                             [2 / 3, 1.0, 2 / 3, 1.0])


# ------------------------------------------------------ structure vs targets
def test_momentum_is_on_target_and_decays_with_lag(log):
  _, stats = log
  ok, lag1 = _on_target(stats, "skip momentum at lag 1")
  assert ok, lag1
  m = stats["momentum"]
  assert m[1] > m[2] > m[3] > m[5] > 0.1
  assert _on_target(stats, "skip momentum lag 3 / lag 1 (decay)")[0], m


def test_skip_runs_are_on_target(log):
  _, stats = log
  for name in ("mean run of consecutive skips (plays)", "share of skip runs of 3 or more"):
    ok, value = _on_target(stats, name)
    assert ok, (name, value)


def test_a_share_of_sessions_is_skipped_through(log):
  cols, stats = log
  ok, value = _on_target(stats, "sessions (>= 5 plays) with >= 90% skipped")
  assert ok, value
  # Session modes make session skip shares bimodal: many sessions are mostly played.
  lengths, shares = skip_stats.session_skip_shares(cols["session"], cols["skip"])
  assert (shares[lengths >= 5] <= 0.2).mean() > 0.1
  # Plays made in the skip-through mode are almost all skipped early.
  st = cols["mode"] == skip_dynamics.SKIP_THROUGH
  assert cols["skip"][st].mean() > 0.9 > 0.6 > cols["skip"][~st].mean()


@pytest.mark.parametrize("name", [
    "skip rate library minus search (collection vs catalogue)",
    "skip rate shuffle on minus off",
    "skip rate focus minus explore (background listening)",
    "skip rate later plays (5+) minus first play"])
def test_context_shuffle_and_position_effects(log, name):
  _, stats = log
  ok, value = _on_target(stats, name)
  assert ok, value
  assert np.sign(value) == np.sign(TARGETS[name].value)


def test_fitted_levels_hold_on_a_fresh_log(log):
  _, stats = log
  for t in skip_targets.TARGETS:
    if t.fitted:
      assert abs(t.read(stats) - t.value) <= t.tolerance, (t.name, t.read(stats))


# ----------------------------------------------------------- interest and lists
def test_interest_still_lowers_skips(world, log):
  _, stats = log
  assert stats["interest_gap"] > 0.3
  rng = np.random.default_rng(3)
  n = 3000
  L = world.sample_users(n, rng)
  cand = rng.integers(0, world.config.n_tracks, (n, 40))
  z = world.expected_response(L, cand, "explore")["utility"]
  order = np.argsort(-z, axis=1)
  best = np.take_along_axis(cand, order[:, :10], 1)
  worst = np.take_along_axis(cand, order[:, -10:], 1)
  played = {name: world.play_slate(L.take(np.arange(n)), t, "explore",
                                   np.random.default_rng(4))
            for name, t in (("best", best), ("best_last", best[:, ::-1]), ("worst", worst))}
  rate = {k: v["skip"].sum() / v["played"].sum() for k, v in played.items()}
  assert rate["best"] < rate["worst"] - 0.2
  # The same ten tracks, best first, are skipped less than best last: a bad start
  # carries over (momentum, skip-through) and listeners give up before the good part.
  assert rate["best"] < rate["best_last"]
  assert played["best"]["played"].sum() > played["best_last"]["played"].sum()


def test_first_play_of_a_list_matches_the_expected_response(world):
  rng = np.random.default_rng(5)
  n = 20_000
  L = world.sample_users(n, rng)
  t = rng.integers(0, world.config.n_tracks, (n, 1))
  expected = world.expected_response(L, t, "commute")
  out = world.play_slate(L.take(np.arange(n)), t, "commute", np.random.default_rng(6))
  assert out["skip"].mean() == pytest.approx(expected["p_skip"].mean(), abs=0.01)
  assert out["completion"].mean() == pytest.approx(expected["p_complete"].mean(), abs=0.01)


# -------------------------------------------------------- profiles and quitting
def test_skip_profiles_agree_with_completion_and_the_skip_label(world, log):
  cols, _ = log
  prof = cols["skip_profile"]
  listened, comp = cols["listened"], cols["completion"]
  vb, br = prof == skip_dynamics.VERY_BRIEF, prof == skip_dynamics.BRIEF
  most, full = prof == skip_dynamics.MOST, prof == skip_dynamics.FULL
  assert (cols["skip"] == (vb | br)).all()
  assert (listened[vb] <= 5 + 1e-4).all() and (listened[br] >= 5 - 1e-4).all()
  assert (listened[br] <= 30 + 1e-4).all()
  assert (comp[most] >= 0.5).all() and (comp[most] < 1).all() and (comp[full] == 1).all()
  assert tuple(skip_dynamics.SKIP_PROFILES) == events.SKIP_PROFILES
  table = next(world.iter_events(40, 1))
  assert set(table.column("skip_profile").to_pylist()) <= set(events.SKIP_PROFILES)
  assert table.column("shuffle").null_count == 0


def test_a_listener_who_gives_up_plays_nothing_further(world):
  rng = np.random.default_rng(7)
  n = 4000
  L = world.sample_users(n, rng)
  t = rng.integers(0, world.config.n_tracks, (n, 10))
  out = world.play_slate(L, t, "explore", np.random.default_rng(8))
  played = out["played"].astype(bool)
  assert 0 < (~played).mean() < 0.3
  assert (np.diff(played.astype(int), axis=1) <= 0).all()      # a prefix of the list
  for key in ("completion", "skip", "like", "subscription", "exposure"):
    assert (out[key][~played] == 0).all(), key
  assert (out["skip_profile"][~played] == -1).all()


def test_skip_config_validation_names_the_bad_value():
  with pytest.raises(ValueError, match="mode_bias"):
    WorldConfig(mode_bias=(0.0, 1.0))
  with pytest.raises(ValueError, match="shuffle_prob"):
    WorldConfig(shuffle_prob=(0.1, 0.1, 0.0, 1.5, 0.5, 0.1))
  with pytest.raises(ValueError, match="skip_through_quit"):
    WorldConfig(skip_through_quit=2.0)
