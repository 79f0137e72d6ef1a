"""Tests of simulation.world: determinism, the exact event schema, label ranges,
segment mix, context/drift/fatigue effects (golden numbers on fixed seeds), the
ground-truth response functions and the fresh-clone start from the committed JSON."""

import os
import io
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pytest

from features import events
from features import feature_spec
from simulation import world_config
from simulation.world import World
from simulation.world_config import SIM_ACTIVITIES, WorldConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def world():
  return World(seed=7)


@pytest.fixture(scope="module")
def tables(world):
  return list(world.iter_events(1500, 4, chunk_users=500))


@pytest.fixture(scope="module")
def frame(tables):
  return pa.concat_tables(tables).to_pandas()


# ------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_events(world, tables):
  again = list(World(seed=7).iter_events(1500, 4, chunk_users=500))
  assert len(again) == len(tables)
  assert all(a.equals(b) for a, b in zip(tables, again))


def test_different_seed_gives_different_events(tables):
  other = next(World(seed=8).iter_events(1500, 4, chunk_users=500))
  assert not other.equals(tables[0])


def test_catalog_is_seeded(world):
  assert World(seed=7).tracks.equals(world.tracks)
  assert not World(seed=8).tracks.equals(world.tracks)


# ----------------------------------------------------------------------- schema
def test_chunks_have_exactly_the_event_schema(tables):
  assert len(tables) == 3
  for t in tables:
    assert t.schema.equals(events.EVENT_SCHEMA, check_metadata=True)
    assert t.schema.names == events.EVENT_SCHEMA.names


def test_chunks_are_sorted_and_hold_whole_users(tables):
  seen = set()
  for t in tables:
    df = t.to_pandas()
    users = df["user_id"].to_numpy()
    ts = df["ts"].to_numpy()
    assert (users[1:] >= users[:-1]).all()
    same = users[1:] == users[:-1]
    assert (ts[1:][same] > ts[:-1][same]).all()
    chunk_users = set(users)
    assert not chunk_users & seen
    seen |= chunk_users
    # Sessions are contiguous and never overlap.
    s = df["session_id"].to_numpy()
    assert (s[1:] != s[:-1]).sum() + 1 == df["session_id"].nunique()


def test_events_pass_the_common_validator(frame):
  valid, report = events.validate_events(frame, max_bad_fraction=0.0)
  assert report.bad == 0
  assert len(valid) == len(frame)


def test_tracks_table_has_track_schema(world):
  t = world.tracks_table()
  assert t.schema.equals(events.TRACK_SCHEMA)
  assert len(t) == 5000
  tracks = world.tracks
  assert {"is_promo", "exposure_value"} <= set(tracks.columns)
  assert (tracks["exposure_value"] >= 0).all()
  assert (tracks.loc[~tracks["is_promo"], "exposure_value"] == 0).all()
  assert tracks["tags"].map(len).between(1, feature_spec.MAX_TAGS).all()
  vocab = set(world.tag_names)
  assert all(set(tags) <= vocab for tags in tracks["tags"])


# ----------------------------------------------------------------------- labels
def test_label_ranges_and_constant_columns(frame):
  assert frame["completion"].between(0, 1).all()
  for col in ("skip", "like", "subscription"):
    assert set(np.unique(frame[col])) <= {0.0, 1.0}
  assert (frame["exposure"] >= 0).all()
  assert (frame.loc[~frame["is_promo"], "exposure"] == 0).all()
  assert (frame.loc[frame["is_promo"], "exposure"] > 0).all()
  assert (frame["plays"] == 1).all()
  assert (frame["source"] == "sim").all()
  assert set(frame["context_surface"]) <= set(feature_spec.SURFACES) - {"unknown"}
  assert frame.loc[frame["context_surface"] == "promo", "is_promo"].all()
  assert set(frame["context_activity"]) == set(SIM_ACTIVITIES)
  # A skipped play ends within 30 s; liked plays are never skipped.
  assert (frame.loc[frame["like"] == 1, "skip"] == 0).all()
  # At most one conversion per listener, and nothing but "paid" after it.
  conv = frame[frame["subscription"] == 1]
  assert conv["user_id"].is_unique
  for uid, ts in zip(conv["user_id"], conv["ts"]):
    later = frame[(frame["user_id"] == uid) & (frame["ts"] > ts)]
    assert (later["user_segment"] == "paid").all()


def test_calibrated_rates_on_fixed_seed(frame):
  # Golden numbers (seed 7, 1,500 listeners x 4 days); the early-skip target is 0.517.
  assert len(frame) == 80_325
  assert frame["skip"].mean() == pytest.approx(0.5360, abs=5e-4)
  assert frame["completion"].mean() == pytest.approx(0.4500, abs=5e-4)
  assert frame["is_promo"].mean() == pytest.approx(0.0601, abs=5e-4)
  assert frame["shuffle"].mean() == pytest.approx(0.2400, abs=5e-4)
  shares = frame["skip_profile"].value_counts(normalize=True)
  assert shares["very_brief"] == pytest.approx(0.3732, abs=5e-4)
  assert shares["full"] == pytest.approx(0.3175, abs=5e-4)


# ----------------------------------------------------------------- segment mix
def test_segment_mix_follows_config(world):
  L = world.sample_users(40_000, np.random.default_rng(3))
  share = np.bincount(L.segment, minlength=len(feature_spec.SEGMENTS)) / len(L)
  np.testing.assert_allclose(share, world.config.segment_mix, atol=0.01)
  assert (L.converted == (L.segment == world_config.PAID)).all()
  custom = world.sample_users(1000, np.random.default_rng(3),
                              segment_mix=(0, 0, 0, 1.0, 0))
  assert (custom.segment == feature_spec.SEGMENTS.index("trial")).all()


def test_logged_segments_cover_all(frame):
  assert set(frame["user_segment"]) == set(feature_spec.SEGMENTS)


# -------------------------------------------------------------- context / drift
def _familiar_tracks(world, L, rng):
  return world.catalog.artist_sampler.draw(L.known_artists[:, 0], rng.random(len(L)))


def test_commute_raises_familiar_completion_vs_explore(world):
  rng = np.random.default_rng(0)
  L = world.sample_users(4000, rng)
  fam = _familiar_tracks(world, L, rng)
  assert world.is_familiar(L, np.arange(len(L)), fam).all()
  commute = world.expected_response(L, fam[:, None], activity="commute")["p_complete"]
  explore = world.expected_response(L, fam[:, None], activity="explore")["p_complete"]
  assert commute.mean() == pytest.approx(0.6004, abs=1e-3)
  assert explore.mean() == pytest.approx(0.3862, abs=1e-3)
  # The sampled world agrees with the ground truth.
  c = world.play_slate(L.take(np.arange(len(L))), fam[:, None], "commute",
                       np.random.default_rng(1))["completion"].mean()
  e = world.play_slate(L.take(np.arange(len(L))), fam[:, None], "explore",
                       np.random.default_rng(1))["completion"].mean()
  assert c - e > 0.15


def test_explore_favours_novel_music(world):
  rng = np.random.default_rng(0)
  L = world.sample_users(3000, rng)
  t = rng.integers(0, world.config.n_tracks, (3000, 8))
  novel = ~world.is_familiar(L, np.arange(3000)[:, None], t)
  p = {a: world.expected_response(L, t, activity=a)["p_complete"][novel].mean()
       for a in ("commute", "explore")}
  assert p["explore"] > p["commute"] + 0.1


def test_workout_and_focus_follow_tag_words(world):
  rng = np.random.default_rng(0)
  L = world.sample_users(2000, rng)
  energetic = np.flatnonzero((world.track_energy > 0) & (world.track_calm == 0))
  calm = np.flatnonzero((world.track_calm > 0) & (world.track_energy == 0))
  t = np.stack([rng.choice(energetic, 2000), rng.choice(calm, 2000)], axis=1)
  w = world.expected_response(L, t, activity="workout")["p_complete"].mean(0)
  f = world.expected_response(L, t, activity="focus")["p_complete"].mean(0)
  assert w[0] > w[1] and f[1] > f[0]


def test_a_run_of_one_style_raises_that_style(world):
  rng = np.random.default_rng(0)
  n = 4000
  L = world.sample_users(n, rng)
  final = _familiar_tracks(world, L, rng)
  style = world.track_style[final]
  same = np.stack([world.catalog.style_sampler.draw(style, rng.random(n)) for _ in range(6)], 1)
  others = world.style_tags[rng.integers(0, len(world.style_tags), (n, 6))]
  diff = world.catalog.style_sampler.draw(others.reshape(-1), rng.random(6 * n)).reshape(n, 6)
  slate_same = np.concatenate([same, final[:, None]], 1)
  slate_diff = np.concatenate([diff, final[:, None]], 1)
  skip_same = world.play_slate(L.take(np.arange(n)), slate_same, "explore",
                               np.random.default_rng(2))["skip"][:, -1].mean()
  skip_diff = world.play_slate(L.take(np.arange(n)), slate_diff, "explore",
                               np.random.default_rng(2))["skip"][:, -1].mean()
  assert skip_same == pytest.approx(0.5335, abs=2e-3)
  assert skip_diff == pytest.approx(0.6035, abs=2e-3)
  with_run = world.expected_response(L, final[:, None], "explore", run_style=style,
                                     run_len=np.full(n, 3))["p_complete"]
  without = world.expected_response(L, final[:, None], "explore")["p_complete"]
  assert (with_run >= without).all() and with_run.mean() > without.mean() + 0.1


# ------------------------------------------------------- promos and conversion
def test_promo_fatigue_lowers_conversion(world):
  rng = np.random.default_rng(5)
  n = 20_000
  L = world.sample_users(n, rng, segment_mix=(0, 0, 0, 1.0, 0))
  promos = world.catalog.promo_tracks[rng.integers(0, len(world.catalog.promo_tracks), (n, 10))]
  fresh = L.take(np.arange(n))
  tired = L.take(np.arange(n))
  tired.fatigue[:] = 15.0
  h_fresh = world.expected_response(fresh, promos)["conversion_hazard"]
  h_tired = world.expected_response(tired, promos)["conversion_hazard"]
  assert (h_tired < h_fresh).all()
  conv_fresh = world.play_slate(fresh, promos, "explore", np.random.default_rng(6))
  conv_tired = world.play_slate(tired, promos, "explore", np.random.default_rng(6))
  n_fresh = conv_fresh["subscription"].sum()
  n_tired = conv_tired["subscription"].sum()
  assert n_fresh == 204
  assert n_tired == 15
  assert fresh.converted.sum() == n_fresh
  # Every played promo impression adds fatigue (a listener who gave up plays fewer).
  assert (fresh.fatigue == conv_fresh["played"].sum(1)).all()


def test_well_placed_promos_convert_better(world):
  rng = np.random.default_rng(1)
  n = 3000
  L = world.sample_users(n, rng, segment_mix=(0, 1.0, 0, 0, 0))
  promo = world.catalog.promo_tracks
  fit = world.placement(L, np.arange(n)[:, None], promo[None, :])
  best = promo[np.argmax(fit, axis=1)][:, None]
  worst = promo[np.argmin(fit, axis=1)][:, None]
  h_best = world.expected_response(L, best)["conversion_hazard"]
  h_worst = world.expected_response(L, worst)["conversion_hazard"]
  assert h_best.mean() > 1.5 * h_worst.mean()


def test_engagement_raises_conversion_and_return(world):
  L = world.sample_users(1000, np.random.default_rng(2), segment_mix=(0, 1.0, 0, 0, 0))
  t = np.zeros((1000, 1), np.int64)
  low, high = L.take(np.arange(1000)), L.take(np.arange(1000))
  low.engagement[:] = 0.3
  high.engagement[:] = 0.9
  assert (world.expected_response(high, t)["conversion_hazard"]
          > world.expected_response(low, t)["conversion_hazard"]).all()
  assert (world.return_probability(high) > world.return_probability(low)).all()


def test_paid_listeners_never_convert(frame):
  paid_first = frame.groupby("user_id")["user_segment"].first() == "paid"
  converted = set(frame.loc[frame["subscription"] == 1, "user_id"])
  assert not converted & set(paid_first[paid_first].index)


# ------------------------------------------------------------- ground truth API
def test_expected_response_shapes_and_ranges(world):
  L = world.sample_users(50, np.random.default_rng(0))
  t = np.random.default_rng(1).integers(0, world.config.n_tracks, (50, 7))
  r = world.expected_response(L, t, activity=np.array(["commute"] * 25 + ["focus"] * 25))
  assert set(r) == {"utility", "p_skip", "p_complete", "p_like", "exposure",
                    "conversion_hazard"}
  for k, v in r.items():
    assert v.shape == (50, 7), k
  for k in ("p_skip", "p_complete", "p_like", "conversion_hazard"):
    assert ((r[k] >= 0) & (r[k] <= 1)).all(), k
  promo = world.track_promo[t]
  assert (r["exposure"][~promo] == 0).all() and (r["exposure"][promo] > 0).all()
  paid = L.segment == world_config.PAID
  assert (r["conversion_hazard"][paid] == 0).all()


def test_end_day_updates_state(world):
  L = world.sample_users(200, np.random.default_rng(0))
  L.fatigue[:] = 10.0
  tenure = L.tenure_days.copy()
  back = world.end_day(L, np.full(200, 0.9), np.ones(200, bool), np.random.default_rng(1))
  assert back.dtype == bool and back.shape == (200,)
  np.testing.assert_allclose(L.fatigue, 10.0 * world.config.fatigue_decay, rtol=1e-6)
  np.testing.assert_allclose(L.tenure_days, tenure + 1)


# ------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, word", [
    ({"n_tracks": 0}, "n_tracks"),
    ({"promo_fraction": 1.5}, "promo_fraction"),
    ({"segment_mix": (0.5, 0.5, 0.5, 0, 0)}, "segment_mix"),
    ({"familiar_weight": (1.0,)}, "familiar_weight"),
    ({"n_artists": 10_000}, "n_artists"),
])
def test_config_validation_names_the_bad_value(kwargs, word):
  with pytest.raises(ValueError, match=word):
    WorldConfig(**kwargs)


def test_argument_validation(world):
  with pytest.raises(ValueError, match="n_users"):
    next(world.iter_events(0, 1))
  with pytest.raises(ValueError, match="days"):
    next(world.iter_events(10, 0))
  L = world.sample_users(3, np.random.default_rng(0))
  with pytest.raises(ValueError, match="track_idx"):
    world.expected_response(L, np.zeros((2, 2), np.int64))
  with pytest.raises(ValueError, match="activity"):
    world.expected_response(L, np.zeros((3, 2), np.int64), activity="dancing")
  with pytest.raises(ValueError, match="seed"):
    World(seed=-1)


def test_small_catalog_works():
  w = World(WorldConfig(n_tracks=50), seed=1)
  assert w.config.n_artists == 10
  t = next(w.iter_events(20, 2))
  assert t.schema.equals(events.EVENT_SCHEMA) and t.num_rows > 0


def test_small_tag_vocabulary_works():
  w = World(WorldConfig(n_tracks=200, n_tags=5), seed=1)
  assert len(w.tag_names) == 5
  assert w.tracks["tags"].map(len).between(1, 5).all()
  assert set(w.tag_names) <= set(world_config.load_params()["tags"]["names"][:5])
  assert next(w.iter_events(10, 1)).num_rows > 0
  with pytest.raises(ValueError, match="n_tags"):
    World(WorldConfig(n_tags=500))


# ------------------------------------------------------------------ fresh clone
def test_committed_params_hold_only_derived_statistics():
  p = world_config.load_params()
  assert len(p["tags"]["names"]) == 183
  assert {"genre", "instrument", "mood"} == set(p["tags"]["categories"])
  assert abs(sum(p["tags"]["freq"]) - 1) < 1e-4
  assert len(p["popularity_quantiles"]) == len(p["duration_log_quantiles"]) == 101
  assert set(p["behaviour"]) >= {"skip_bias", "like_bias", "popularity_exponent",
                                 "session_len_mu", "think_s_mean"}
  assert os.path.getsize(world_config.PARAMS_PATH) < 200_000


def test_world_runs_from_a_fresh_clone_without_shared_data(tmp_path):
  """``git archive HEAD`` (committed files only), no shared data, no network."""
  if subprocess.run(["git", "-C", REPO, "rev-parse", "--git-dir"],
                    capture_output=True).returncode != 0:
    pytest.skip(f"{REPO} is not a git checkout (Bazel runfiles): `make test` runs this")
  archive = subprocess.run(["git", "-C", REPO, "archive", "HEAD", "simulation", "features",
                            "keras_guard.py"], check=True, capture_output=True).stdout
  with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
    tar.extractall(tmp_path, filter="data")
  code = ("import numpy as np; from simulation.world import World; w = World(); "
          "t = next(w.iter_events(30, 2)); "
          "from features.events import EVENT_SCHEMA; "
          "assert t.schema.equals(EVENT_SCHEMA) and t.num_rows > 0; "
          "assert len(w.tag_names) == 183; print('ok', t.num_rows)")
  env = dict(os.environ, MELODY_DATA_DIR=str(tmp_path / "no_such_dir"),
             PYTHONPATH=str(tmp_path))
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("ok")


def test_sample_context_follows_the_clock(world):
  rng = np.random.default_rng(0)
  monday = world.sample_context(20_000, rng)
  saturday = world.sample_context(20_000,
                                  rng,
                                  day_start=world_config.DEFAULT_START_TS + 5 * world_config.DAY_S)
  assert (monday["weekday"] == 0).all() and (saturday["weekday"] == 5).all()
  assert ((monday["ts"] - world_config.DEFAULT_START_TS) // 3600 == monday["hour"]).all()
  commute = SIM_ACTIVITIES.index("commute")
  assert (monday["activity"] == commute).mean() > 2 * (saturday["activity"] == commute).mean()
  rush = np.isin(monday["hour"], [7, 8, 9])
  assert (monday["activity"][rush] == commute).mean() > 0.4
