"""Tests of the mixing rules: graph op vs the plain-Python reference, rules, goldens."""

import functools

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from ranking.fusion.kernel_tf import ScoreFusion
from ranking.layers import mixing
from ranking.layers.mixing import Mixing, MixingConfig, mix
from melody_testing.mixing_reference import mix_reference

N_MAX = 32
BATCH = 3
CONFIGS = (
    MixingConfig(),                                          # P=2, W=10, R=2
    MixingConfig(max_promos_per_window=1, window=3, max_per_artist=1),
    MixingConfig(max_promos_per_window=2, window=5, max_per_artist=1),
    MixingConfig(max_promos_per_window=3, window=4, max_per_artist=2),   # W <= 2P
    MixingConfig(max_promos_per_window=0, window=4, max_per_artist=1),   # no promos
    MixingConfig(max_promos_per_window=1, window=1, max_per_artist=1),
    MixingConfig(max_promos_per_window=1, window=40, max_per_artist=3, unknown_artist_id=-1),
)


@functools.lru_cache(maxsize=None)
def _graph(config: MixingConfig, batch: int = BATCH, n: int = N_MAX):
  """One traced function per config and shape, shared by every example."""
  spec = [tf.TensorSpec([batch, n], tf.float32), tf.TensorSpec([batch, n], tf.bool),
          tf.TensorSpec([batch, n], tf.int64), tf.TensorSpec([batch, n], tf.bool)]
  return tf.function(lambda s, p, a, v: mix(s, p, a, v, config), input_signature=spec)


def _run(config, scores, promo, artists, valid):
  scores, promo, artists, valid = (np.asarray(x) for x in (scores, promo, artists, valid))
  out = _graph(config, *scores.shape)(
      tf.constant(scores, tf.float32), tf.constant(promo, tf.bool),
      tf.constant(artists, tf.int64), tf.constant(valid, tf.bool))
  return {k: v.numpy() for k, v in out.items()}


def _key(score, i):
  return (np.inf if np.isnan(score) else -score, i)


def _check_rules(cfg, scores, promo, artists, valid, order, dropped, relaxed, num_placed):
  """The output contract, checked from the definition (not from the reference)."""
  p, w, r = cfg.max_promos_per_window, cfg.window, cfg.max_per_artist
  nv = int(np.sum(valid))
  listed = [int(i) for i in order[:nv]]
  assert sorted(listed) == sorted(np.flatnonzero(valid).tolist())
  assert all(i == -1 for i in order[nv:])
  assert 0 <= num_placed <= nv
  assert list(dropped[:nv]) == [t >= num_placed for t in range(nv)]
  head, tail = listed[:num_placed], listed[num_placed:]
  flags = [bool(promo[i]) for i in head]
  for t in range(num_placed):
    if flags[t]:
      assert t == 0 or not flags[t - 1], f"adjacent promos at {t}"
    assert sum(flags[max(0, t - w + 1):t + 1]) <= p, f"promo window cap broken at {t}"
  # The tail holds only promos, in score order, and none of them fits after the head.
  assert all(promo[i] for i in tail)
  assert tail == sorted(tail, key=lambda i: _key(scores[i], i))
  t = num_placed
  for i in tail:
    after_promo = t > 0 and flags[t - 1]
    window_full = sum(flags[max(0, t - w + 1):t]) >= p
    artist_full = t < w and artists[i] != cfg.unknown_artist_id and sum(
        1 for j in head if artists[j] == artists[i]) >= r
    assert after_promo or window_full or artist_full, f"dropped promo {i} fits at {t}"
  # Artist cap in the top W, except at flagged positions, which only exist when every
  # remaining candidate broke a rule there.
  for t in range(min(w, num_placed)):
    i = head[t]
    before = sum(1 for j in head[:t] if artists[j] == artists[i])
    capped = artists[i] != cfg.unknown_artist_id and before >= r
    assert bool(relaxed[t]) == capped, f"relaxed flag wrong at {t}"
    if capped:
      assert not promo[i]
      for j in listed[t + 1:]:
        j_capped = artists[j] != cfg.unknown_artist_id and sum(
            1 for x in head[:t] if artists[x] == artists[j]) >= r
        promo_blocked = promo[j] and (
            (t > 0 and flags[t - 1]) or sum(flags[max(0, t - w + 1):t]) >= p)
        assert j_capped or promo_blocked, f"{j} fitted at relaxed position {t}"
  assert not np.any(relaxed[min(w, num_placed):])


def _assert_matches_reference(cfg, scores, promo, artists, valid, out):
  for b in range(len(scores)):
    ref = mix_reference(scores[b], promo[b], artists[b], valid[b], cfg.max_promos_per_window,
                        cfg.window, cfg.max_per_artist, cfg.unknown_artist_id)
    n, nv = len(scores[b]), len(ref.order)
    assert out["order"][b].tolist() == ref.order + [-1] * (n - nv)
    assert out["num_placed"][b] == ref.num_placed
    assert out["is_promo"][b].tolist() == ref.is_promo + [False] * (n - nv)
    assert out["dropped"][b].tolist() == ref.dropped + [False] * (n - nv)
    assert out["artist_relaxed"][b].tolist() == ref.artist_relaxed + [False] * (n - nv)
    _check_rules(cfg, scores[b], promo[b], artists[b], valid[b], out["order"][b],
                 out["dropped"][b], out["artist_relaxed"][b], int(out["num_placed"][b]))


@st.composite
def _row(draw):
  n = draw(st.integers(0, 30))
  promo_rate = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]))
  scores = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, -1.0, float("nan"),
                                           -float("inf")]), min_size=n, max_size=n))
  promo = [draw(st.floats(0, 1)) < promo_rate for _ in range(n)]
  artists = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
  valid = draw(st.one_of(
      st.just([True] * n),
      st.lists(st.booleans(), min_size=n, max_size=n)))
  pad = N_MAX - n
  return (scores + [0.0] * pad, promo + [False] * pad, artists + [0] * pad,
          valid + [False] * pad)


@settings(max_examples=120, deadline=None)
@given(cfg=st.sampled_from(CONFIGS), rows=st.lists(_row(), min_size=BATCH, max_size=BATCH))
def test_graph_equals_reference_and_keeps_rules(cfg, rows):
  scores, promo, artists, valid = (np.array([row[k] for row in rows]) for k in range(4))
  out = _run(cfg, scores, promo, artists, valid)
  _assert_matches_reference(cfg, scores, promo, artists, valid, out)


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(_row(), min_size=BATCH, max_size=BATCH), perm=st.permutations(range(BATCH)))
def test_a_row_mixes_the_same_beside_any_rows(rows, perm):
  """Rows are independent: permuting the batch permutes the answers, bit for bit."""
  cfg = CONFIGS[0]
  arrays = [np.array([row[k] for row in rows]) for k in range(4)]
  before = _run(cfg, *arrays)
  after = _run(cfg, *(a[list(perm)] for a in arrays))
  for k, v in before.items():
    np.testing.assert_array_equal(after[k], v[list(perm)], err_msg=k)


@pytest.mark.parametrize("n", [80, 200, 1100])
def test_graph_equals_reference_on_long_lists(n):
  rng = np.random.default_rng(n)
  cfg = MixingConfig(max_promos_per_window=2, window=7, max_per_artist=2)
  scores = rng.integers(0, 20, (BATCH, n)).astype(np.float32)
  promo = rng.random((BATCH, n)) < np.array([[0.1], [0.4], [0.8]])
  artists = rng.integers(0, 6, (BATCH, n))
  valid = np.arange(n)[None, :] < np.array([[n], [n - 5], [n // 2]])
  out = _run(cfg, scores, promo, artists, valid)
  _assert_matches_reference(cfg, scores, promo, artists, valid, out)
  assert out["dropped"][2].any()   # 80% promos cannot all be placed


def _one(cfg, scores, promo, artists, valid=None):
  n = len(scores)
  valid = [True] * n if valid is None else valid
  out = _run(cfg, [scores], [promo], [artists], [valid])
  return {k: v[0].tolist() for k, v in out.items()}


def test_golden_promo_spacing():
  cfg = MixingConfig(max_promos_per_window=1, window=4, max_per_artist=1)
  out = _one(cfg, [9, 8, 7, 6, 5, 4], [1, 1, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6])
  # Promo 1 waits until position 4: adjacency blocks 1, the window (0..3) blocks 2-3.
  assert out["order"] == [0, 2, 3, 4, 1, 5]
  assert out["is_promo"] == [True, False, False, False, True, False]
  assert out["num_placed"] == 6 and not any(out["dropped"])


def test_golden_only_promos():
  out = _one(MixingConfig(), [3.0, 2.0, 1.0], [1, 1, 1], [1, 2, 3])
  assert out["order"] == [0, 1, 2]
  assert out["num_placed"] == 1
  assert out["dropped"] == [False, True, True]
  assert out["is_promo"] == [True, True, True]


def test_golden_more_promos_than_slots():
  cfg = MixingConfig(max_promos_per_window=1, window=3, max_per_artist=3)
  out = _one(cfg, [9, 8, 7, 6, 5, 4], [1, 1, 1, 1, 0, 0], [1, 2, 3, 4, 5, 6])
  assert out["order"] == [0, 4, 5, 1, 2, 3]
  assert out["num_placed"] == 4
  assert out["dropped"] == [False, False, False, False, True, True]


def test_golden_no_promos_allowed():
  cfg = MixingConfig(max_promos_per_window=0, window=3, max_per_artist=3)
  out = _one(cfg, [9, 8, 7], [1, 0, 1], [1, 2, 3])
  assert out["order"] == [1, 0, 2]
  assert out["dropped"] == [False, True, True]


def test_golden_artist_cap_and_relaxation():
  cfg = MixingConfig(max_promos_per_window=1, window=3, max_per_artist=1)
  out = _one(cfg, [9, 8, 7, 6], [0, 0, 0, 0], [7, 7, 7, 8])
  # Position 2 has only artist 7 left: the cap yields there; from position 3 it is off.
  assert out["order"] == [0, 3, 1, 2]
  assert out["artist_relaxed"] == [False, False, True, False]


def test_golden_unknown_artist_is_not_capped():
  cfg = MixingConfig(max_promos_per_window=1, window=3, max_per_artist=1)
  assert _one(cfg, [3, 2, 1], [0, 0, 0], [0, 0, 0])["order"] == [0, 1, 2]
  capped = MixingConfig(max_promos_per_window=1, window=3, max_per_artist=1,
                        unknown_artist_id=-1)
  assert _one(capped, [3, 2, 1], [0, 0, 0], [0, 0, 0])["artist_relaxed"] == [
      False, True, True]


def test_golden_ties_nan_and_padding():
  cfg = MixingConfig()
  out = _one(cfg, [1.0, float("nan"), 1.0, 5.0, 1.0], [0] * 5, [1, 2, 3, 4, 5],
             [True, True, False, True, True])
  # Ties go to the lower index, NaN ranks as -inf, padding becomes -1 at the end.
  assert out["order"] == [3, 0, 4, 1, -1]
  assert out["is_promo"] == [False] * 5


def test_layer_lengths_equal_valid_mask_and_config_round_trip():
  cfg = MixingConfig(max_promos_per_window=1, window=4, max_per_artist=1)
  layer = Mixing(cfg)
  rng = np.random.default_rng(3)
  scores = tf.constant(rng.random((2, 12)), tf.float32)
  promo = tf.constant(rng.random((2, 12)) < 0.4)
  artists = tf.constant(rng.integers(0, 3, (2, 12)))
  lengths = tf.constant([12, 7])
  by_len = layer({"scores": scores, "is_promo": promo, "artist_ids": artists,
                  "lengths": lengths})
  clone = Mixing.from_config(layer.get_config())
  assert clone.config == cfg
  by_mask = clone({"scores": scores, "is_promo": tf.cast(promo, tf.int64),
                   "artist_ids": artists, "valid": tf.sequence_mask(lengths, 12)})
  for k in by_len:
    np.testing.assert_array_equal(by_len[k].numpy(), by_mask[k].numpy())
  assert by_len["order"].numpy()[1, 7:].tolist() == [-1] * 5


def test_saved_model_round_trip_with_fusion(tmp_path):
  """Fusion then mixing in one serving signature; the reloaded model answers the same."""
  b, n = 2, 16

  class Ranker(tf.Module):

    def __init__(self):
      super().__init__()
      self.fusion = ScoreFusion()
      self.mixing = Mixing(MixingConfig(max_promos_per_window=1, window=5, max_per_artist=1))

    @tf.function(input_signature=[
        tf.TensorSpec([b, n], tf.float32, "interest"),
        tf.TensorSpec([b, n], tf.float32, "subscription"),
        tf.TensorSpec([b, n], tf.float32, "exposure"),
        tf.TensorSpec([b], tf.int64, "segment"),
        tf.TensorSpec([b], tf.int64, "activity"),
        tf.TensorSpec([b, n], tf.int64, "is_promo"),
        tf.TensorSpec([b, n], tf.int64, "artist_ids"),
        tf.TensorSpec([b], tf.int64, "lengths")])
    def rank(self, interest, subscription, exposure, segment, activity, is_promo,
             artist_ids, lengths):
      fused = self.fusion({"interest": interest, "subscription": subscription,
                           "exposure": exposure, "segment": segment, "activity": activity})
      out = self.mixing({"scores": fused["score"], "is_promo": is_promo,
                         "artist_ids": artist_ids, "lengths": lengths})
      return dict(out, weights=fused["weights"])

  rng = np.random.default_rng(11)
  args = [tf.constant(rng.random((b, n)), tf.float32) for _ in range(3)] + [
      tf.constant([0, 4], tf.int64), tf.constant([1, 4], tf.int64),
      tf.constant(rng.integers(0, 2, (b, n))), tf.constant(rng.integers(1, 4, (b, n))),
      tf.constant([16, 9], tf.int64)]
  module = Ranker()
  expected = module.rank(*args)
  tf.saved_model.save(module, str(tmp_path / "ranker"),
                      signatures={"serving_default": module.rank})
  loaded = tf.saved_model.load(str(tmp_path / "ranker"))
  got = loaded.signatures["serving_default"](**dict(zip(
      ["interest", "subscription", "exposure", "segment", "activity", "is_promo",
       "artist_ids", "lengths"], args)))
  assert set(got) == set(expected)
  for k in expected:
    np.testing.assert_array_equal(got[k].numpy(), expected[k].numpy())
  assert got["order"].numpy()[1, 9:].tolist() == [-1] * 7


@pytest.mark.parametrize("kwargs, bad", [
    ({"max_promos_per_window": -1}, "-1"),
    ({"window": 0}, "0"),
    ({"max_per_artist": 0}, "0"),
    ({"window": 2.5}, "2.5"),
    ({"unknown_artist_id": -2}, "-2"),
])
def test_config_rejects_bad_values(kwargs, bad):
  with pytest.raises(ValueError, match=bad):
    MixingConfig(**kwargs)


def test_config_round_trips_and_is_frozen():
  cfg = MixingConfig(max_promos_per_window=1, window=6, max_per_artist=3)
  assert MixingConfig.from_dict(cfg.to_dict()) == cfg
  with pytest.raises(AttributeError):
    cfg.window = 3  # type: ignore[misc]


@pytest.mark.parametrize("n", [0, 1, 2, 5, 1024, 1025, 3000])
def test_prefix_max_matches_numpy_past_the_unrolled_steps(n):
  x = np.random.default_rng(n).integers(-1000, 1000, size=(2, 3, n))
  got = mixing._prefix_max(tf.constant(x)).numpy()   # pylint: disable=protected-access
  np.testing.assert_array_equal(got, np.maximum.accumulate(x, axis=-1) if n else x)
