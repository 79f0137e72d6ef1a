"""Tests of simulation.rollout, slates and policies: determinism (same seed -> identical
report numbers, other seeds differ), outcome ranges, the simulator's fusion boundary
against the graph layer, the numpy mixing twin against the graph layer and the
plain-Python mixing oracle, the promo-share controller, Beam vs in-process totals, and
the SavedModel policy over a ``rank``-shaped signature."""

import dataclasses

import numpy as np
import pytest

from features import feature_spec
from melody_testing.mixing_reference import mix_reference
from ranking.fusion import spec as fusion_spec
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig
from simulation import policies
from simulation import rollout as rollout_lib
from simulation import saved_model_policy
from simulation import slates as slates_lib
from simulation.world import World
from simulation.world_config import SIM_ACTIVITIES, WorldConfig

SMALL = rollout_lib.RolloutConfig(users=600, days=3, seed=5, chunk_users=300)


@pytest.fixture(scope="module")
def world():
  return World(seed=7)


@pytest.fixture(scope="module")
def result(world):
  return rollout_lib.rollout(world, policies.FusionPolicy(), SMALL)


def test_same_seed_gives_identical_report_numbers(world, result):
  again = rollout_lib.rollout(world, policies.FusionPolicy(), SMALL)
  np.testing.assert_array_equal(again.cube, result.cube)
  assert again.summary() == result.summary()
  assert again.by_segment() == result.by_segment()


def test_different_seeds_differ(world, result):
  other = rollout_lib.rollout(world, policies.FusionPolicy(), dataclasses.replace(SMALL, seed=6))
  assert other.summary()["completion_rate"] != result.summary()["completion_rate"]
  assert not np.array_equal(other.cube, result.cube)


def test_outcome_ranges(result):
  s = result.summary()
  for key in ("completion_rate", "skip_rate", "like_rate", "return_rate", "promo_share"):
    assert 0.0 < s[key] < 1.0, key
  # Listeners who give up play fewer than slate_len tracks; most play them all.
  assert 0.8 * s["sessions"] * SMALL.slate_len < s["impressions"] <= (
      s["sessions"] * SMALL.slate_len)
  # Default mixing: at most 2 promos in any 10 positions, and slates are 10 long.
  assert s["promo_share"] <= 0.2
  assert 0 < s["minutes_per_session"] < SMALL.slate_len * 15
  assert s["exposure_per_session"] > 0 and s["fatigue"] >= 0
  assert s["conversions"] >= 0 and s["expected_conversions_per_1k_sessions"] > 0
  t = result.totals()
  m = {k: i for i, k in enumerate(rollout_lib.METRICS)}
  assert t[m["returned"]] <= t[m["active"]]
  assert result.by_segment()["paid"]["conversions"] == 0
  assert set(result.by_activity()) <= set(SIM_ACTIVITIES)


def test_interest_only_weights_complete_more_than_exposure_only(world):
  cfg = dataclasses.replace(SMALL, days=1)

  def run(w):
    fusion = dataclasses.replace(FusionConfig(), segment_weights={
        s: (w[0], 0.0 if s == "paid" else w[1], w[2]) for s in feature_spec.SEGMENTS})
    return rollout_lib.rollout(world, policies.FusionPolicy(fusion=fusion), cfg).summary()

  interest, exposure = run((1.0, 0.0, 0.0)), run((0.0, 0.0, 1.0))
  assert interest["completion_rate"] > exposure["completion_rate"] + 0.05
  assert exposure["exposure_per_session"] > 2 * interest["exposure_per_session"]


def test_promo_controller_lowers_share_when_completion_is_below_floor(world):
  mixing = MixingConfig(max_promos_per_window=4)
  cfg = dataclasses.replace(SMALL, days=4)
  strict = policies.PromoShareController(floor=0.95, mixing=mixing)
  res = rollout_lib.rollout(world, strict, cfg)
  shares = np.array(strict.history)                 # [days + 1, segments]
  assert (shares[0] == 0.4).all()
  assert (np.diff(shares, axis=0) <= 0).all() and (shares[-1] < shares[0]).all()
  by_day = [d["promo_share"] for d in res.by_day()]
  assert by_day[-1] < by_day[0]
  # A floor every segment clears leaves the share alone.
  lax = policies.PromoShareController(floor=0.1, mixing=mixing)
  rollout_lib.rollout(world, lax, cfg)
  assert (np.array(lax.history) == 0.4).all()


def test_numpy_mixing_matches_the_reference():
  rng = np.random.default_rng(0)
  configs = (MixingConfig(), MixingConfig(1, 3, 1),
             MixingConfig(3, 4, 2), MixingConfig(0, 4, 1),
             MixingConfig(1, 40, 3, unknown_artist_id=-1))
  for cfg in configs:
    b, n, k = 60, 14, 12
    scores = np.round(rng.normal(size=(b, n)), 1)        # rounding makes ties
    scores[rng.random((b, n)) < 0.05] = np.nan
    promo = rng.random((b, n)) < 0.35
    artist = rng.integers(0, 4, (b, n))
    valid = rng.random((b, n)) < 0.9
    got = slates_lib.mix_top(scores, promo, artist, valid, cfg, k)
    for i in range(b):
      ref = mix_reference(scores[i], promo[i], artist[i], valid[i], cfg.max_promos_per_window,
                          cfg.window, cfg.max_per_artist, cfg.unknown_artist_id).order[:k]
      want = ref + [-1] * (k - len(ref))
      assert got[i].tolist() == want, (cfg, i)


def test_simulator_fusion_boundary_matches_the_graph_layer():
  """``slates.fuse`` takes simulator activities and full weight rows; the graph layer
  gets the same listeners as ``feature_spec.ACTIVITIES`` indices and overrides."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from ranking.fusion.kernel_tf import ScoreFusion  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  b, n = 8, 6
  heads = rng.random((b, n, 3))
  seg = rng.integers(0, len(feature_spec.SEGMENTS), b)
  act = rng.integers(0, len(SIM_ACTIVITIES), b)
  fam = (rng.random((b, n)) < 0.5).astype(float)
  ids = rng.integers(0, 5000, (b, n))
  seed = rng.integers(0, 2**31 - 1, b)
  override = rng.random((b, 3))
  out = ScoreFusion()({
      "interest": tf.constant(heads[..., 0], tf.float32),
      "subscription": tf.constant(heads[..., 1], tf.float32),
      "exposure": tf.constant(heads[..., 2], tf.float32),
      "segment": tf.constant(seg),
      "activity": tf.constant([feature_spec.ACTIVITIES.index(SIM_ACTIVITIES[a]) for a in act]),
      "familiar": tf.constant(fam, tf.float32), "candidate_ids": tf.constant(ids),
      "seed": tf.constant(seed), "override_weights": tf.constant(override, tf.float32),
      "override": tf.ones([b], tf.bool)})
  got = slates_lib.fuse(heads, seg, act, fam, FusionConfig(), weights=override, seed=seed,
                        candidate_ids=ids)
  np.testing.assert_allclose(got, out["score"].numpy(), rtol=0, atol=2e-6)


def test_beam_rollout_equals_in_process(world):
  cfg = dataclasses.replace(SMALL, days=2)
  direct = rollout_lib.rollout(world, policies.FusionPolicy(), cfg)
  beam = rollout_lib.rollout_beam(7, WorldConfig(), policies.FusionPolicy, cfg)
  np.testing.assert_allclose(beam.cube, direct.cube)
  with pytest.raises(ValueError, match="learns across listeners"):
    rollout_lib.rollout_beam(7, WorldConfig(), policies.PromoShareController, cfg)


def test_config_errors_name_the_value():
  with pytest.raises(ValueError, match="users must be >= 1, got 0"):
    rollout_lib.RolloutConfig(users=0)
  with pytest.raises(ValueError, match="slate_len=50"):
    rollout_lib.RolloutConfig(slate_len=50)
  with pytest.raises(ValueError, match="floor"):
    policies.PromoShareController(floor=1.5)


# ------------------------------------------------------------- SavedModel policy
def _mimic_model(path):
  """A tiny module with the real ``rank`` input signature: it puts the candidates the
  listener has in their history first, then the others, each group in reverse input
  order (padding last); no fusion weights of its own."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from serving import request_schema  # pylint: disable=import-outside-toplevel

  class Mimic(tf.Module):

    @tf.function(input_signature=[request_schema.rank_input_spec()])
    def rank(self, inputs):
      ids = inputs["candidate_ids"]
      n = tf.shape(ids)[1]
      seen = tf.reduce_any(tf.equal(ids[:, :, None], inputs["hist_track_ids"][:, None, :])
                           & tf.not_equal(ids, "")[:, :, None], axis=2)
      score = (tf.cast(seen, tf.float32) * 1000.0
               + tf.cast(tf.range(n), tf.float32)[None, :]
               - tf.cast(tf.equal(ids, ""), tf.float32) * 1e6)
      order = tf.argsort(score, axis=1, direction="DESCENDING", stable=True)
      return {"order": tf.cast(order, tf.int32), "fused_score": score,
              "weights": inputs["alpha_beta_gamma"]}

  m = Mimic()
  tf.saved_model.save(m, path, signatures={"rank": m.rank})
  return path


def test_saved_model_policy_calls_the_rank_signature(world, tmp_path):
  model = saved_model_policy.SavedModelPolicy(_mimic_model(str(tmp_path / "mimic")), slate_len=5,
                               weights=np.full((len(feature_spec.SEGMENTS), 3), 0.5), batch_size=64)
  cfg = rollout_lib.RolloutConfig(users=120, days=2, seed=3, chunk_users=120, slate_len=5)
  res = rollout_lib.rollout(world, model, cfg)
  assert res.summary()["sessions"] > 0

  # One ranking call by hand: the request carries the listener's history and session,
  # and the slate is the signature's order.
  rng = np.random.default_rng(0)
  L = world.sample_users(4, rng)
  tracks = np.tile(np.arange(10, 18), (4, 1))
  hist = {"track": np.array([[12, 15, -1], [3, -1, -1], [-1, -1, -1], [17, 16, 15]]),
          "completion": np.ones((4, 3)), "skip": np.zeros((4, 3)),
          "ts": np.array([[9990, 100, 0], [500, 0, 0], [0, 0, 0], [9995, 9990, 10]]),
          "length": np.array([2, 1, 0, 3])}
  state = policies.ListenerState(world, L, hist)
  ctx = policies.Context(activity=np.array([0, 1, 2, 3]), hour=np.full(4, 8),
                    weekday=np.zeros(4, int), ts=np.full(4, 10_000), seed=np.arange(4))
  cands = policies.Candidates(tracks, np.ones((4, 8), bool))
  req = model.requests(state, cands, ctx)
  assert req["hist_len"].tolist() == [2, 1, 0, 3]
  assert req["hist_track_ids"][0, :2].tolist() == ["t000012", "t000015"]
  assert req["hist_track_ids"].shape == (4, feature_spec.HISTORY_LEN)
  assert req["sess_len"].tolist() == [1, 0, 0, 2]      # plays of the last 30 minutes
  assert req["sess_track_ids"][3, :3].tolist() == ["t000017", "t000016", ""]
  assert req["hist_gap_s"][3, :3].tolist() == [5, 10, 9990]
  assert req["context_activity"].tolist() == list(SIM_ACTIVITIES)
  assert req["override"].tolist() == [1, 1, 1, 1]
  slates = model.rank(state, cands, ctx)
  assert slates.tracks[0].tolist() == [15, 12, 17, 16, 14]
  assert slates.tracks[2].tolist() == [17, 16, 15, 14, 13]
  np.testing.assert_allclose(slates.weights, 0.5)


@pytest.mark.slow
def test_saved_model_policy_on_a_real_export(ranker_export):
  """The real ``serving.export`` SavedModel (tiny, untrained) ranks inside rollouts:
  slates come from the candidates, keep the promo rules, and the fusion weights the
  graph reports are its segment table, or the override the policy sends."""
  from bench import serving as bench_serving  # pylint: disable=import-outside-toplevel
  version = ranker_export["v1"]
  world = World(WorldConfig(n_tracks=300), seed=bench_serving.SEED)
  cfg = rollout_lib.RolloutConfig(users=80, days=2, seed=4, chunk_users=80)
  res = rollout_lib.rollout(world, saved_model_policy.SavedModelPolicy(version), cfg)
  assert res.summary()["sessions"] > 0 and 0 < res.summary()["completion_rate"] < 1

  rng = np.random.default_rng(1)
  L = world.sample_users(16, rng)
  pool = slates_lib.CandidatePool(world, slates_lib.CandidateConfig(familiar=8, style=8, popular=8,
                                                    promo=6))
  tracks, valid = pool.draw(L, rng)
  raw = world.sample_context(16, rng)
  ctx = policies.Context(activity=raw["activity"], hour=raw["hour"], weekday=raw["weekday"],
                    ts=raw["ts"], seed=np.arange(16))
  state = policies.ListenerState(world, L, {})
  table = fusion_spec.segment_table(FusionConfig())
  plain = saved_model_policy.SavedModelPolicy(version).rank(
      state, policies.Candidates(tracks, valid), ctx)
  np.testing.assert_allclose(plain.weights, table[L.segment], atol=1e-6)
  # With a 300-track catalog a row can run out of distinct non-promos; promos after
  # num_placed are the graph's dropped tail and may break the rules there.
  placed = plain.info["num_placed"]
  assert (placed >= 8).all()
  for i in range(16):
    assert set(plain.tracks[i]) <= set(tracks[i][valid[i]])
    promo = world.track_promo[plain.tracks[i]][:placed[i]]
    assert not (promo[1:] & promo[:-1]).any() and promo.sum() <= 2
  override = np.tile([[0.2, 0.3, 0.5]], (len(feature_spec.SEGMENTS), 1))
  pushed = saved_model_policy.SavedModelPolicy(version, weights=override).rank(
      state, policies.Candidates(tracks, valid), ctx)
  want = np.where((L.segment == feature_spec.SEGMENTS.index("paid"))[:, None], [0.2, 0.0, 0.5],
                  [0.2, 0.3, 0.5])
  np.testing.assert_allclose(pushed.weights, want, atol=1e-6)


def test_context_rules_set_weights_per_segment_and_activity(world):
  rules = {("free", "explore"): (0.1, 0.2, 0.7), ("paid", "commute"): (0.3, 0.0, 0.7)}
  policy = policies.ContextRulePolicy(rules)
  L = world.sample_users(40, np.random.default_rng(2))
  L.segment = ((np.arange(40) // 4) % len(feature_spec.SEGMENTS)).astype(np.int8)  # every pair
  act = np.arange(40) % len(SIM_ACTIVITIES)
  ctx = policies.Context(activity=act, hour=np.zeros(40, int), weekday=np.zeros(40, int),
                    ts=np.zeros(40, int), seed=np.arange(40))
  w = policy.weights(policies.ListenerState(world, L, {}), ctx)
  table = fusion_spec.segment_table(FusionConfig())
  for i in range(40):
    key = (feature_spec.SEGMENTS[L.segment[i]], SIM_ACTIVITIES[act[i]])
    np.testing.assert_allclose(w[i], rules.get(key, table[L.segment[i]]))
  with pytest.raises(ValueError, match="unknown activity 'gym'"):
    policies.ContextRulePolicy({("free", "gym"): (1, 0, 0)})
  with pytest.raises(ValueError, match="3 finite weights"):
    policies.ContextRulePolicy({("free", "focus"): (1, -1, 0)})
