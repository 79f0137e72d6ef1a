"""Tests of the calibration (``simulation.calibration*``): the statistics helpers on small
hand-made inputs, and the calibration on the real shared data (KS distances below the
documented limits, and the committed ``calibrated_params.json`` equal to a fresh fit)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simulation import calibration
from simulation import calibration_data
from simulation import calibration_fit
from simulation import calibration_report
from simulation import calibration_stats
from simulation import skip_targets
from simulation import world_config
from simulation.world import World
# ------------------------------------------------------------------- helpers
def test_ks_distance_matches_scipy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0, 1, 500), rng.normal(0.3, 1.2, 700)
  assert calibration_stats.ks_distance(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic,
                                                              abs=1e-12)
  assert calibration_stats.ks_distance(a, a) == 0.0
  with pytest.raises(ValueError, match="non-empty"):
    calibration_stats.ks_distance([], a)


def test_lorenz_curve():
  np.testing.assert_allclose(calibration_stats.lorenz([1, 1, 1, 1], grid=5), [0, .25, .5, .75, 1])
  # One item of four holds 9 of 12 plays: the other three hold a quarter.
  assert calibration_stats.lorenz([1, 1, 1, 9], grid=5)[3] == pytest.approx(0.25)
  # Unplayed items are ignored, as they are absent from a play log.
  np.testing.assert_allclose(calibration_stats.lorenz([0, 0, 9], grid=5),
                             calibration_stats.lorenz([9], grid=5))
  assert calibration_stats.lorenz_ks([5, 5], [1, 1, 1]) == pytest.approx(0.0)
  with pytest.raises(ValueError, match="positive"):
    calibration_stats.lorenz([0, 0])


def test_fit_catalog_on_a_tiny_frame():
  tracks = pd.DataFrame({
      "tags": [["genre---rock", "instrument---guitar"]] * 6
              + [["genre---pop", "mood/theme---happy"]] * 3 + [["genre---rock"]],
      "duration_s": np.linspace(100, 300, 10),
      "popularity": [np.nan] * 5 + list(np.arange(5.0)),
  })
  p = calibration_fit.fit_catalog(tracks)
  # Most frequent first; ties broken by the full "category---name" text.
  assert p["tags"]["names"] == ["rock", "guitar", "pop", "happy"]
  assert p["tags"]["categories"] == ["genre", "instrument", "genre", "mood"]
  np.testing.assert_allclose(p["tags"]["freq"], np.array([7, 6, 3, 3]) / 19, atol=1e-7)
  # rock & guitar together in 6 of 10 tracks: lift = 0.6 / (0.7 * 0.6).
  lifts = {(a, b): l for a, b, l in p["tags"]["cooc"]}
  assert lifts[(0, 1)] == pytest.approx(0.6 / 0.42, abs=1e-3)
  assert (2, 3) not in lifts            # seen 3 times: below the 5-pair noise floor
  np.testing.assert_allclose(p["tags_per_track"][:2], [0.1, 0.9])
  assert p["popularity_quantiles"][0] == 0 and p["popularity_quantiles"][-1] == 4
  assert np.exp(p["duration_log_quantiles"][0]) == pytest.approx(100, rel=1e-4)
  assert np.exp(p["duration_log_quantiles"][-1]) == pytest.approx(300, rel=1e-4)
  with pytest.raises(ValueError, match="empty"):
    calibration_fit.fit_catalog(tracks.iloc[:0])


def test_scrobble_view_drops_short_plays_and_folds_their_time_in():
  cols = {
      "session": np.array([0, 0, 0, 0, 1, 1]),
      "listened": np.array([200.0, 10.0, 150.0, 20.0, 250.0, 240.0]),
      "duration": np.array([220.0, 200.0, 160.0, 300.0, 260.0, 480.0]),
      "gap": np.array([210, 15, 160, 25, 300, 250]),
  }
  lengths, gaps, rate = calibration_stats.scrobble_view(cols)
  assert list(lengths) == [2, 2]
  assert list(gaps) == [225.0, 300.0]   # the skipped play's 15 s is inside the first gap
  assert rate == 0.0


# ---------------------------------------------------------- on the real data
@pytest.fixture(scope="module")
def fitted():
  # Same location rule as the ``shared_data`` fixture (module scope cannot use it).
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path = os.path.abspath(os.environ.get("MELODY_DATA_DIR",
                                        os.path.join(repo, "..", "shared", "data")))
  if not os.path.isdir(path):
    pytest.skip(f"real datasets not found at {path} (set MELODY_DATA_DIR)")
  real = calibration_data.load_real(path)
  params = calibration_fit.fit(real, seed=7, say=lambda msg: None)
  return real, params, calibration_report.compare(params, real, seed=7)


@pytest.mark.realdata
def test_real_data_summaries(shared_data, fitted):
  real, _, _ = fitted
  assert len(real.session_lengths) == 9519
  assert real.gaps_s.min() >= 30            # the 30Music log is censored at 30 s
  assert real.skip_proxy_rate == 0.0
  assert len(real.artist_plays) > 17_000
  assert real.like_rate == pytest.approx(0.6243, abs=1e-4)


@pytest.mark.realdata
def test_ks_distances_below_the_documented_limits(shared_data, fitted):
  _, _, rows = fitted
  by_name = {r.name: r for r in rows}
  assert set(by_name) == set(calibration_report.THRESHOLDS)
  failures = [f"{r.name}: KS {r.ks:.3f} > {r.threshold}" for r in rows
              if not r.ks <= r.threshold]
  assert not failures, "\n".join(failures)


@pytest.mark.realdata
def test_committed_params_equal_a_fresh_fit(shared_data, fitted):
  _, params, _ = fitted
  committed = world_config.load_params()
  assert committed["tags"] == params["tags"]
  assert committed["popularity_quantiles"] == params["popularity_quantiles"]
  for k, v in params["behaviour"].items():
    assert committed["behaviour"][k] == pytest.approx(v, rel=1e-3, abs=1e-3), k
  assert committed["targets"]["like_rate_kkbox"] == params["targets"]["like_rate_kkbox"]


@pytest.mark.realdata
def test_fitted_rates_hit_their_targets(shared_data, fitted):
  real, params, _ = fitted
  # The calibration seed's catalog, listeners it has not seen: on target.
  cols = calibration_stats.simulate_plays(World(seed=7, params=params), 1500, 3, 11)
  assert cols["skip"].mean() == pytest.approx(skip_targets.EARLY_SKIP, abs=0.03)
  assert cols["like"][~cols["skip"]].mean() == pytest.approx(real.like_rate, abs=0.02)
  # Another catalog seed: the links were fitted on seed 7's catalog, so rates move a
  # little with the catalog draw.
  cols = calibration_stats.simulate_plays(World(seed=11, params=params), 1500, 3, 11)
  assert cols["skip"].mean() == pytest.approx(skip_targets.EARLY_SKIP, abs=0.06)
  assert cols["like"][~cols["skip"]].mean() == pytest.approx(real.like_rate, abs=0.05)


@pytest.mark.slow
@pytest.mark.realdata
def test_run_writes_report_png_and_params(shared_data, tmp_path, capsys):
  out = tmp_path / "report"
  params_out = tmp_path / "params.json"
  assert calibration.run(shared_data, str(out), seed=7, params_out=str(params_out)) == 0
  for name in ("calibration.md", "calibration.png", "calibration.json"):
    assert (out / name).stat().st_size > 0
  printed = capsys.readouterr().out
  assert "session length (plays)" in printed and "KS" in printed
  assert "skip behaviour vs published targets" in printed and "Lamere" in printed
  with open(params_out, encoding="utf-8") as f:
    assert json.load(f)["behaviour"] == world_config.load_params()["behaviour"]


def test_run_reports_missing_data(tmp_path):
  assert calibration.run(str(tmp_path / "nowhere"), str(tmp_path / "out"),
                 params_out=str(tmp_path / "p.json")) == 2
  assert not (tmp_path / "p.json").exists()


def test_world_keeps_the_real_tag_co_occurrence():
  # Uses only the committed parameters: pairs that go together in MTG-Jamendo (lift > 1)
  # mostly go together in the simulated catalog too.
  agreement = calibration_report.cooc_agreement(world_config.load_params(), seed=7)
  assert agreement["pairs"] > 500
  assert agreement["share_above_1"] > 0.8
  assert agreement["spearman"] > 0.45
