"""Tests of score fusion: segment goldens, context signs, exploration and its seed mask,
overrides, reason codes, round trips. TF/numpy parity is in ``test_fusion_parity``."""

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from features import feature_spec
from ranking.fusion import exploration
from ranking.fusion import reasons
from ranking.fusion import spec as fusion_spec
from ranking.fusion.kernel_tf import ScoreFusion
from ranking.fusion.spec import FusionConfig

SEG = {name: i for i, name in enumerate(feature_spec.SEGMENTS)}
ACT = {name: i for i, name in enumerate(feature_spec.ACTIVITIES)}


def _inputs(segments, activities, n=4, s_int=0.6, s_sub=0.5, s_exp=0.3, **extra):
  b = len(segments)
  x = {"interest": tf.fill([b, n], s_int), "subscription": tf.fill([b, n], s_sub),
       "exposure": tf.fill([b, n], s_exp),
       "segment": tf.constant([SEG[s] for s in segments], tf.int64),
       "activity": tf.constant([ACT[a] for a in activities], tf.int64)}
  x.update({k: tf.constant(v) for k, v in extra.items()})
  return x


def test_golden_scores_per_segment():
  out = ScoreFusion()(_inputs(list(feature_spec.SEGMENTS), ["unknown"] * 5))
  # alpha*0.6 + beta*0.5 + gamma*0.3, plus the unseeded novelty bonus 0.02 * (1 - 0.5).
  expected = {"new": 0.585, "free": 0.564, "free_veteran": 0.545, "trial": 0.556,
              "paid": 0.550}
  np.testing.assert_allclose(out["score"].numpy(),
                             np.array([[expected[s]] * 4 for s in feature_spec.SEGMENTS]),
                             atol=1e-6)
  np.testing.assert_allclose(out["weights"].numpy(), [
      [0.85, 0.10, 0.05], [0.70, 0.22, 0.08], [0.55, 0.35, 0.10], [0.62, 0.30, 0.08],
      [0.80, 0.00, 0.20]], atol=1e-7)
  np.testing.assert_array_equal(out["context"].numpy(), np.zeros((5, 4)))


def test_default_table_shape_of_the_policy():
  cfg = FusionConfig()
  alpha = {s: cfg.weights_for(s)[0] for s in feature_spec.SEGMENTS}
  beta = {s: cfg.weights_for(s)[1] for s in feature_spec.SEGMENTS}
  assert max(alpha, key=alpha.get) == "new"
  assert beta["paid"] == 0.0 and cfg.weights_for("paid")[2] > 0
  assert beta["free"] < beta["trial"] < beta["free_veteran"]
  for s in feature_spec.SEGMENTS:
    assert sum(cfg.weights_for(s)) == pytest.approx(1.0)


def test_paid_beta_is_zero_even_under_override():
  fusion = ScoreFusion()
  high_sub = fusion(_inputs(["paid", "paid"], ["unknown"] * 2, s_sub=0.9,
                            override_weights=[[0.5, 0.9, 0.1], [-1.0, -1.0, -1.0]],
                            override=[True, False]))
  low_sub = fusion(_inputs(["paid", "paid"], ["unknown"] * 2, s_sub=0.0,
                           override_weights=[[0.5, 0.9, 0.1], [-1.0, -1.0, -1.0]],
                           override=[True, False]))
  np.testing.assert_array_equal(high_sub["weights"].numpy()[:, 1], [0.0, 0.0])
  np.testing.assert_allclose(high_sub["weights"].numpy()[0], [0.5, 0.0, 0.1])
  np.testing.assert_array_equal(high_sub["score"].numpy(), low_sub["score"].numpy())


def test_override_replaces_the_table_for_that_row_only():
  out = ScoreFusion()(_inputs(
      ["free"] * 4, ["unknown"] * 4,
      override_weights=np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.3, -1.0, np.nan],
                                 [0.1, 0.8, 0.1]], np.float32),
      override=[False, True, True, False]))
  np.testing.assert_allclose(out["weights"].numpy(), [
      [0.70, 0.22, 0.08],
      [0.10, 0.80, 0.10],
      [0.30, 0.22, 0.08],     # negative / NaN components keep the table value
      [0.70, 0.22, 0.08]], atol=1e-7)
  np.testing.assert_allclose(out["score"].numpy()[1], [0.06 + 0.4 + 0.03 + 0.01] * 4,
                             atol=1e-6)


def test_context_commute_raises_familiar_and_explore_raises_novel():
  familiar = np.array([[1.0, 0.0, 0.5, 0.75]] * 3, np.float32)
  out = ScoreFusion()(_inputs(["free"] * 3, ["commute", "explore", "unknown"],
                              familiar=familiar, novelty=np.zeros_like(familiar)))
  ctx, score = out["context"].numpy(), out["score"].numpy()
  np.testing.assert_allclose(ctx, [[0.06, -0.06, 0.0, 0.03], [-0.08, 0.08, 0.0, -0.04],
                                   [0.0, 0.0, 0.0, 0.0]], atol=1e-7)
  assert score[0, 0] > score[0, 2] > score[0, 1]    # commute: familiar first
  assert score[1, 1] > score[1, 2] > score[1, 0]    # explore: novel first
  assert score[2, 0] == score[2, 1]                 # no context, no preference


def test_exploration_is_seeded_row_independent_and_bounded():
  fusion = ScoreFusion(FusionConfig(exploration=0.05))
  novelty = np.array([[1.0, 1.0, 0.5, 0.0]] * 2, np.float32)
  ids = np.array([[10, 11, 12, 13], [10, 11, 12, 13]], np.int64)
  both = fusion(_inputs(["new"] * 2, ["unknown"] * 2, novelty=novelty, candidate_ids=ids,
                        seed=np.array([7, 8], np.int64)))
  alone = fusion(_inputs(["new"], ["unknown"], novelty=novelty[:1], candidate_ids=ids[:1],
                         seed=np.array([7], np.int64)))
  eps = both["exploration"].numpy()
  np.testing.assert_array_equal(eps[0], alone["exploration"].numpy()[0])
  assert not np.array_equal(eps[0], eps[1])        # another seed, another draw
  expected = 0.05 * novelty[0] * exploration.uniform_np([7], ids[:1])[0]
  np.testing.assert_allclose(eps[0], expected, rtol=1e-6)
  assert eps[0, 3] == 0.0 and np.all(eps >= 0) and np.all(eps <= 0.05 * novelty)
  # Bonus follows the candidate id, not its position in the list.
  shuffled = fusion(_inputs(["new"], ["unknown"], novelty=novelty[:1, ::-1].copy(),
                            candidate_ids=ids[:1, ::-1].copy(),
                            seed=np.array([7], np.int64)))
  np.testing.assert_array_equal(shuffled["exploration"].numpy()[0], eps[0, ::-1])


def test_negative_seed_turns_exploration_off_for_that_row_only():
  novelty = np.ones((3, 4), np.float32)
  x = _inputs(["free"] * 3, ["unknown"] * 3, novelty=novelty,
              candidate_ids=np.arange(12, dtype=np.int64).reshape(3, 4),
              seed=np.array([4, -1, -9], np.int64))
  out = ScoreFusion()(x)
  eps = out["exploration"].numpy()
  assert np.all(eps[0] > 0)
  np.testing.assert_array_equal(eps[1:], np.zeros((2, 4)))
  np.testing.assert_allclose(out["score"].numpy()[1:], np.full((2, 4), 0.554), atol=1e-6)
  unseeded = ScoreFusion()(_inputs(["free"], ["unknown"], novelty=novelty[:1]))
  np.testing.assert_allclose(unseeded["exploration"].numpy(), [[0.02] * 4])


def test_exploration_hash_golden_and_roughly_uniform():
  seed, ids = [7, -3], [[0, 1, 2**40], [5, 6, 7]]
  u = exploration.uniform_tf(tf.constant(seed, tf.int64), tf.constant(ids, tf.int64)).numpy()
  np.testing.assert_allclose(u, [[0.27532685, 0.71304423, 0.47263575],
                                 [0.74717075, 0.22503453, 0.66346741]], atol=1e-7)
  np.testing.assert_array_equal(exploration.uniform_np(seed, ids), u)   # bit-identical
  grid = exploration.uniform_tf(
      tf.range(50, dtype=tf.int64),
      tf.broadcast_to(tf.range(400, dtype=tf.int64), [50, 400])).numpy()
  assert grid.min() >= 0.0 and grid.max() < 1.0
  assert abs(grid.mean() - 0.5) < 0.01
  assert np.histogram(grid, bins=10, range=(0, 1))[0].min() > 1700   # 2000 per bin ideal


def test_tables_as_arrays():
  cfg = FusionConfig()
  np.testing.assert_array_equal(fusion_spec.segment_table(cfg), [
      [0.85, 0.10, 0.05], [0.70, 0.22, 0.08], [0.55, 0.35, 0.10], [0.62, 0.30, 0.08],
      [0.80, 0.00, 0.20]])
  np.testing.assert_array_equal(fusion_spec.kappa_table(cfg), [0.0, 0.06, 0.04, 0.03, -0.08])
  np.testing.assert_array_equal(fusion_spec.zero_beta_mask(cfg),
                                [s == "paid" for s in feature_spec.SEGMENTS])


def test_reason_codes_encode_flags_in_code_order():
  codes = reasons.REASON_CODES
  assert codes == ("promo", "exploration", "intent_match", "session_style_match",
                   "familiar_track", "familiar_artist", "new_for_you")
  table = reasons.code_table().numpy()
  assert len(table) == 2 ** len(codes) and table[0] == b"" and table[-1] == ",".join(
      codes).encode()
  flags = {c: tf.constant([[False, False]]) for c in codes}
  flags["promo"] = tf.constant([[True, False]])
  flags["new_for_you"] = tf.constant([[True, True]])
  np.testing.assert_array_equal(reasons.encode(flags).numpy(),
                                [[b"promo,new_for_you", b"new_for_you"]])
  with pytest.raises(ValueError, match="exactly the keys"):
    reasons.encode({"promo": flags["promo"]})
  bonus = tf.constant([[0.0, 0.00999, 0.01, 0.02]])
  np.testing.assert_array_equal(reasons.exploration_flag(bonus, 0.02).numpy(),
                                [[False, False, True, True]])
  assert not reasons.exploration_flag(bonus, 0.0).numpy().any()


def test_out_of_range_indices_fall_back_to_index_zero():
  fusion = ScoreFusion()
  x = _inputs(["new", "new"], ["commute", "commute"], familiar=[[1.0] * 4] * 2)
  x["segment"] = tf.constant([[-1], [99]], tf.int64)    # [B, 1] is accepted too
  x["activity"] = tf.constant([17, -4], tf.int64)
  out = fusion(x)
  np.testing.assert_allclose(out["weights"].numpy(), [[0.85, 0.10, 0.05]] * 2, atol=1e-7)
  np.testing.assert_array_equal(out["context"].numpy(), np.zeros((2, 4)))


def test_missing_inputs_are_named():
  x = _inputs(["new"], ["unknown"])
  del x["exposure"]
  with pytest.raises(ValueError, match="exposure"):
    ScoreFusion()(x)
  x = _inputs(["new"], ["unknown"], override=[True])
  with pytest.raises(ValueError, match="override_weights"):
    ScoreFusion()(x)


def test_get_config_round_trip():
  cfg = FusionConfig(
      segment_weights={"new": (1.0, 0.0, 0.0), "free": (0.5, 0.5, 0.0),
                       "free_veteran": (0.4, 0.6, 0.0), "trial": (0.5, 0.4, 0.1),
                       "paid": (0.7, 0.0, 0.3)},
      activity_familiarity={"unknown": 0.0, "commute": 0.1, "workout": 0.0, "focus": 0.0,
                            "explore": -0.2},
      exploration=0.03)
  layer = ScoreFusion(cfg, name="fusion")
  clone = ScoreFusion.from_config(layer.get_config())
  assert clone.config == cfg and clone.name == "fusion"
  assert FusionConfig.from_dict(cfg.to_dict()) == cfg
  x = _inputs(["trial", "paid"], ["commute", "explore"],
              familiar=np.array([[0.0, 1.0, 0.3, 0.9]] * 2, np.float32),
              seed=np.array([1, 2], np.int64))
  for k, v in layer(x).items():
    np.testing.assert_array_equal(v.numpy(), clone(x)[k].numpy())
  via_registry = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
  assert isinstance(via_registry, ScoreFusion) and via_registry.config == cfg


def test_saved_model_round_trip(tmp_path):
  b, n = 3, 5

  class Fuse(tf.Module):

    def __init__(self):
      super().__init__()
      self.fusion = ScoreFusion()

    @tf.function(input_signature=[
        tf.TensorSpec([b, n], tf.float32), tf.TensorSpec([b, n], tf.float32),
        tf.TensorSpec([b, n], tf.float32), tf.TensorSpec([b], tf.int64),
        tf.TensorSpec([b], tf.int64), tf.TensorSpec([b, n], tf.float32),
        tf.TensorSpec([b], tf.int64), tf.TensorSpec([b, 3], tf.float32),
        tf.TensorSpec([b], tf.bool)])
    def __call__(self, s_int, s_sub, s_exp, segment, activity, familiar, seed,
                 override_weights, override):
      return self.fusion({"interest": s_int, "subscription": s_sub, "exposure": s_exp,
                          "segment": segment, "activity": activity, "familiar": familiar,
                          "seed": seed, "override_weights": override_weights,
                          "override": override})

  rng = np.random.default_rng(5)
  args = [tf.constant(rng.random((b, n)), tf.float32) for _ in range(3)] + [
      tf.constant([0, 2, 4], tf.int64), tf.constant([1, 4, 0], tf.int64),
      tf.constant(rng.random((b, n)), tf.float32), tf.constant([3, 3, 9], tf.int64),
      tf.constant([[0.2, 0.7, 0.1]] * 3, tf.float32), tf.constant([False, True, True])]
  module = Fuse()
  expected = module(*args)
  tf.saved_model.save(module, str(tmp_path / "fusion"))
  got = tf.saved_model.load(str(tmp_path / "fusion"))(*args)
  for k in ("score", "weights", "context", "exploration"):
    np.testing.assert_array_equal(got[k].numpy(), expected[k].numpy())
  assert got["weights"].numpy()[2, 1] == 0.0     # paid row overridden, beta still 0


@pytest.mark.parametrize("kwargs, bad", [
    ({"segment_weights": {"new": (1, 0, 0)}}, "keys"),
    ({"segment_weights": dict(FusionConfig().segment_weights, free=(0.5, -0.1, 0.0))},
     "-0.1"),
    ({"segment_weights": dict(FusionConfig().segment_weights, free=(0.5, float("nan"), 0))},
     "nan"),
    ({"segment_weights": dict(FusionConfig().segment_weights, paid=(0.5, 0.2, 0.3))},
     "paid"),
    ({"activity_familiarity": dict(FusionConfig().activity_familiarity, commute=1.5)},
     "1.5"),
    ({"exploration": -0.01}, "-0.01"),
    ({"zero_beta_segments": ("gold",)}, "gold"),
])
def test_config_rejects_bad_values(kwargs, bad):
  with pytest.raises(ValueError, match=bad):
    FusionConfig(**kwargs)


def test_config_is_frozen_and_accepts_a_mapping():
  cfg = FusionConfig(segment_weights=dict(FusionConfig().segment_weights))
  assert cfg == FusionConfig()
  with pytest.raises(AttributeError):
    cfg.exploration = 0.5  # type: ignore[misc]
