"""Tests of serving.signatures (the rank / recommend / score_examples graph in process)
and of the request schema it is traced with.

The session's small simulated world (``serving_world`` in tests/conftest.py:
``bench.serving.prepare_world``, i.e. ``simulation.datagen.run`` +
``features.preprocessing.transform_dataset``) and one tiny initialized ranker per
module; the signatures are called as concrete functions, exactly as they are saved.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bench import serving as bench_serving
from features import feature_spec
from melody_testing.mixing_reference import mix_reference
from ranking import model as model_lib
from ranking.fusion import reasons
from ranking.layers import mixing as mixing_lib
from serving import catalog as catalog_lib
from serving import request_schema
from serving import signatures as signatures_lib
from serving import warmup

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

N_MAX = 64


KEYWORD_WIDTH = 12


class KeywordIntent(tf.Module):
  """A minimal intent source honouring the contract: rows depend on the text length."""

  def __init__(self, catalog_size: int):
    super().__init__()
    self.catalog_size = catalog_size

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([], tf.int32)])
  def candidates(self, texts, k):
    start = tf.strings.length(texts)[:, tf.newaxis] * 3
    rows = (start + tf.range(k)[tf.newaxis, :]) % self.catalog_size
    scores = 1.0 / (1.0 + tf.cast(tf.range(k), tf.float32))
    return rows, tf.broadcast_to(scores[tf.newaxis, :], tf.shape(rows))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def text_cut(self, texts):
    # Texts of more than KEYWORD_WIDTH bytes count as cut, as a tokenizer's width would.
    return tf.cast(tf.strings.length(texts) > KEYWORD_WIDTH, tf.int32)


@pytest.fixture(scope="module")
def env(serving_world):
  paths = serving_world
  model = bench_serving.build_model()
  catalog = catalog_lib.Catalog.from_tracks(paths["tracks"])
  module = signatures_lib.RankerServingModule(model, paths["tft"], catalog, n_max=N_MAX)
  intent_module = signatures_lib.RankerServingModule(model, paths["tft"], catalog, n_max=N_MAX,
                                          intent=KeywordIntent(len(catalog)))
  records = warmup.read_examples(paths["examples"], 200)
  parsed = warmup.parse_examples(records)
  # Listeners with some history and a session, for the familiarity-dependent checks.
  rich = [int(i) for i in np.flatnonzero((parsed["hist_len"] >= 10) & (parsed["sess_len"] >= 2))]
  return {"paths": paths, "model": model, "catalog": catalog, "module": module,
          "fns": module.signatures(), "intent_fns": intent_module.signatures(),
          "records": records, "parsed": parsed, "rich": rich}


def _call(fn, inputs):
  return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _rank_request(env, rows, ids, promo=None):
  ids = np.asarray(ids, dtype=object)
  if ids.ndim == 1:
    ids = np.tile(ids, (len(rows), 1))
  inputs = warmup.listener_inputs(env["parsed"], rows)
  inputs.update(request_schema.neutral_controls(len(rows)))
  inputs["candidate_ids"] = ids
  inputs["candidate_is_promo"] = (np.zeros(ids.shape, np.int64) if promo is None else
                                  np.broadcast_to(np.asarray(promo, np.int64), ids.shape).copy())
  return inputs


def test_rank_outputs_shapes_and_a_consistent_order(env):
  cat = env["catalog"]
  ids = np.array([list(cat.track_ids[:6]) + [b""], list(cat.track_ids[10:17])], dtype=object)
  out = _call(env["fns"]["rank"], _rank_request(env, env["rich"][:2], ids))
  for k in signatures_lib.HEAD_OUTPUTS + ("fused_score", "reasons", "order", "ranked_track_ids"):
    assert out[k].shape == (2, 7), k
  assert out["weights"].shape == (2, 3)
  assert out["order"].dtype == np.int32
  # Row 0 has one padding candidate: it is never placed and scores 0.
  assert sorted(out["order"][0][:6]) == list(range(6)) and out["order"][0][6] == -1
  assert out["ranked_track_ids"][0][6] == b"" and out["reasons"][0][6] == b""
  assert sorted(out["order"][1]) == list(range(7))
  np.testing.assert_array_equal(out["ranked_track_ids"][1], ids[1][out["order"][1]])
  for k in feature_spec.BINARY_LABELS + ("interest_completion",):
    assert np.all((out[k][:, :6] > 0) & (out[k][:, :6] < 1)), k
  for reason in out["reasons"][1]:
    codes = reason.decode().split(",")
    assert set(codes) <= set(reasons.REASON_CODES)
    assert sum(c in ("familiar_track", "familiar_artist", "new_for_you") for c in codes) == 1


def test_heads_equal_model_score_candidates_on_tft_features(env):
  """The in-graph listener + catalogue path equals TFT on full examples + the model."""
  cat, parsed = env["catalog"], env["parsed"]
  row = env["rich"][0]
  base = tf.train.Example.FromString(env["records"][row])
  cand_rows = [0, 3, 7, 50, 120, 200]
  promo = [0, 1, 0, 0, 1, 0]
  serialized = []
  for r, p in zip(cand_rows, promo):
    ex = tf.train.Example()
    ex.CopyFrom(base)
    f = ex.features.feature
    f["cand_track_id"].bytes_list.value[:] = [cat.track_ids[r]]
    f["cand_artist_id"].bytes_list.value[:] = [cat.artist_ids[r]]
    f["cand_tags"].bytes_list.value[:] = list(cat.tags[r])
    f["cand_num_tags"].int64_list.value[:] = [int(cat.num_tags[r])]
    f["cand_duration_s"].float_list.value[:] = [float(cat.duration_s[r])]
    f["cand_popularity"].float_list.value[:] = [float(cat.popularity[r])]
    f["cand_is_promo"].int64_list.value[:] = [p]
    serialized.append(ex.SerializeToString())
  xf = env["fns"]["transform_features"](examples=tf.constant(serialized))
  # The examples' history artists are the catalogue's, as the serving graph looks them up.
  hist = parsed["hist_track_ids"][row][:parsed["hist_len"][row]]
  lookup = dict(zip(cat.track_ids, cat.artist_ids))
  assert [lookup.get(t, b"") for t in hist] == list(
      parsed["hist_artist_ids"][row][:parsed["hist_len"][row]])
  listener = {k: xf[k][:1] for k in model_lib.LISTENER_FEATURES}
  candidates = {k: xf[k] for k in model_lib.CANDIDATE_FEATURES}
  direct = env["model"].score_candidates(listener, candidates)
  out = _call(env["fns"]["rank"], _rank_request(env, [row], cat.track_ids[cand_rows], promo))
  for k in signatures_lib.HEAD_OUTPUTS:
    np.testing.assert_allclose(out[k][0], direct[k].numpy(), atol=1e-5, err_msg=k)


def test_mixing_rules_hold_in_the_final_order(env):
  cat = env["catalog"]
  rows = np.arange(60)
  promo = (rows % 2 == 0).astype(np.int64)   # half the candidates are promos
  out = _call(env["fns"]["rank"], _rank_request(env, env["rich"][:2], cat.track_ids[rows], promo))
  config = mixing_lib.MixingConfig()
  for b in range(2):
    placed = out["num_placed"][b]
    order = out["order"][b][:placed]
    is_promo = promo[order].astype(bool)
    assert not np.any(is_promo[1:] & is_promo[:-1]), "adjacent promos"
    for start in range(max(1, placed - config.window + 1)):
      assert is_promo[start:start + config.window].sum() <= config.max_promos_per_window
    artists = cat.artist_ids[rows[order[:config.window]]]
    _, counts = np.unique(artists, return_counts=True)
    assert counts.max() <= config.max_per_artist
    assert sorted(out["order"][b][out["order"][b] >= 0]) == list(range(60))
    assert all(b"promo" in r for r in out["reasons"][b][promo == 1])


def test_override_changes_weights_of_that_row_only(env):
  cat = env["catalog"]
  inputs = _rank_request(env, env["rich"][:2], cat.track_ids[:12])
  inputs["user_segment"] = np.array([b"free", b"free"], dtype=object)
  base = _call(env["fns"]["rank"], inputs)
  inputs["override"] = np.array([1, 0], np.int64)
  inputs["alpha_beta_gamma"] = np.array([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]], np.float32)
  over = _call(env["fns"]["rank"], inputs)
  np.testing.assert_allclose(base["weights"], [[0.70, 0.22, 0.08]] * 2, atol=1e-6)
  np.testing.assert_allclose(over["weights"][0], [0.2, 0.3, 0.5], atol=1e-6)
  np.testing.assert_array_equal(over["weights"][1], base["weights"][1])
  np.testing.assert_array_equal(over["fused_score"][1], base["fused_score"][1])
  assert not np.allclose(over["fused_score"][0], base["fused_score"][0])
  # A negative component keeps the table's value for that component.
  inputs["alpha_beta_gamma"] = np.array([[-1.0, 0.5, -1.0], [0.0, 0.0, 0.0]], np.float32)
  partial = _call(env["fns"]["rank"], inputs)
  np.testing.assert_allclose(partial["weights"][0], [0.70, 0.5, 0.08], atol=1e-6)


def test_unknown_ids_score_as_the_oov_row(env):
  cat = env["catalog"]
  ids = [b"no-such-track", cat.track_ids[5], b"another-unknown-id"]
  out = _call(env["fns"]["rank"], _rank_request(env, env["rich"][:1], ids))
  for k in signatures_lib.HEAD_OUTPUTS:
    assert np.all(np.isfinite(out[k])), k
    assert out[k][0][0] == out[k][0][2], k   # both unknown ids get the one OOV row
  assert sorted(out["order"][0]) == [0, 1, 2]
  assert out["reasons"][0][0] == b"new_for_you"


def test_empty_history_and_session_work(env):
  inputs = _rank_request(env, [0], env["catalog"].track_ids[:20])
  for prefix in ("hist", "sess"):
    inputs[f"{prefix}_len"][:] = 0
    inputs[f"{prefix}_track_ids"][:] = b""
  out = _call(env["fns"]["rank"], inputs)
  assert np.all(np.isfinite(out["fused_score"]))
  assert sorted(out["order"][0]) == list(range(20))
  assert all(r.endswith(b"new_for_you") and b"session_style_match" not in r
             for r in out["reasons"][0])
  rec = dict(inputs)
  del rec["candidate_ids"], rec["candidate_is_promo"]
  rec["k"] = np.int32(5)
  got = _call(env["fns"]["recommend"], rec)
  assert got["ranked_track_ids"].shape == (1, 5)
  assert set(got["ranked_track_ids"][0]) <= set(env["catalog"].track_ids)


def _assert_rows_equal_alone_calls(fn, inputs, batch, scalars=("k",)):
  """Each row of ``batch`` (the answer to ``inputs``) equals its own call, to the bit."""
  for b in range(len(inputs["user_id"])):
    one = _call(fn, {k: v if k in scalars else v[b:b + 1] for k, v in inputs.items()})
    for k, v in one.items():
      np.testing.assert_array_equal(batch[k][b], v[0], err_msg=k)


def test_batch_answers_equal_per_listener_calls(env):
  cat = env["catalog"]
  rows = env["rich"][:3]
  ids = np.stack([cat.track_ids[i * 20:i * 20 + 15] for i in range(3)]).astype(object)
  promo = (np.arange(45).reshape(3, 15) % 4 == 0).astype(np.int64)
  inputs = _rank_request(env, rows, ids, promo)
  inputs["exploration_seed"] = np.array([3, -1, 11], np.int64)
  _assert_rows_equal_alone_calls(env["fns"]["rank"], inputs, _call(env["fns"]["rank"], inputs))
  # recommend: retrieval and the intent source are per listener too.
  inputs = warmup.recommend_inputs(env["parsed"], rows, 12, texts=["calm piano", "", "rain"])
  fn = env["intent_fns"]["recommend"]
  _assert_rows_equal_alone_calls(fn, inputs, _call(fn, inputs))


# Distinct tracks a property-test request draws its candidates from, so most candidates
# are repeats: exact ties, up to the last-bit noise a position in the list may add.
TIE_POOL = 6


@st.composite
def _tie_heavy_requests(draw):
  """2-4 one-listener rank requests of one length N, as plain data (see the test)."""
  n = draw(st.integers(1, 24))
  specs = []
  for _ in range(draw(st.integers(2, 4))):
    specs.append({
        "listener": draw(st.integers(0, 7)),
        "picks": draw(st.lists(st.integers(-1, TIE_POOL), min_size=n, max_size=n)),
        "promo": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        # zero: every weight overridden with 0, so only familiarity separates tracks.
        "weights": draw(st.sampled_from(["table", "zero", "custom"])),
        "seed": draw(st.sampled_from([-1, 0, 12345])),
    })
  return specs, draw(st.permutations(range(len(specs)))), draw(st.integers(0, len(specs) - 1))


def _tie_heavy_input(env, spec):
  """``picks``: -1 is padding, ``TIE_POOL`` an unknown id, else a catalogue track."""
  pool = list(env["catalog"].track_ids[:TIE_POOL]) + [b"no-such-track"]
  ids = [b"" if p < 0 else pool[p] for p in spec["picks"]]
  inputs = _rank_request(env, [env["rich"][spec["listener"]]], ids, [spec["promo"]])
  inputs["override"][:] = spec["weights"] != "table"
  inputs["alpha_beta_gamma"][:] = {"table": -1.0, "zero": 0.0, "custom": [0.5, 0.2, 0.3]}[
      spec["weights"]]
  inputs["exploration_seed"][:] = spec["seed"]
  return inputs


@settings(max_examples=12, deadline=None)
@given(case=_tie_heavy_requests())
def test_a_request_gets_the_same_list_alone_and_in_any_batch(env, case):
  """Tie-heavy requests (repeated tracks, padding, all-zero weights) answer the same,
  bit for bit, alone and in a batch of permuted companions (one of them twice); the
  order is the mixing rule applied to the returned scores, ties to the lower index."""
  specs, perm, twice = case
  fn, module = env["fns"]["rank"], env["module"]
  requests = [_tie_heavy_input(env, spec) for spec in specs]
  alone = [_call(fn, r) for r in requests]
  members = list(perm) + [twice]
  batch = _call(fn, {k: np.concatenate([requests[i][k] for i in members])
                     for k in requests[0]})
  for j, i in enumerate(members):
    for k, v in alone[i].items():
      np.testing.assert_array_equal(batch[k][j], v[0], err_msg=k)
  config = module.mixing_config
  for inputs, out in zip(requests, alone):
    ids = inputs["candidate_ids"][0]
    valid = ids != b""
    artists = module.catalog_artist_index.numpy()[
        module.catalog_rows.lookup(tf.constant(ids)).numpy()]
    ref = mix_reference(out["fused_score"][0], inputs["candidate_is_promo"][0] > 0, artists,
                        valid, config.max_promos_per_window, config.window,
                        config.max_per_artist, config.unknown_artist_id)
    assert out["order"][0].tolist() == ref.order + [-1] * (len(ids) - len(ref.order))


def test_exploration_is_seeded_and_off_for_negative_seeds(env):
  inputs = _rank_request(env, env["rich"][:1], env["catalog"].track_ids[:40])
  off = _call(env["fns"]["rank"], inputs)
  inputs["exploration_seed"] = np.array([42], np.int64)
  on = _call(env["fns"]["rank"], inputs)
  again = _call(env["fns"]["rank"], inputs)
  np.testing.assert_array_equal(on["fused_score"], again["fused_score"])
  assert not any(b"exploration" in r for r in off["reasons"][0])
  assert any(b"exploration" in r for r in on["reasons"][0])
  assert np.all(on["fused_score"] >= off["fused_score"] - 1e-7)


def test_recommend_retrieves_distinct_catalogue_tracks(env):
  rows = env["rich"][:2]
  inputs = warmup.recommend_inputs(env["parsed"], rows, 10)
  out = _call(env["fns"]["recommend"], inputs)
  assert out["ranked_track_ids"].shape == (2, 10)
  for b in range(2):
    ids = list(out["ranked_track_ids"][b])
    assert len(set(ids)) == 10 and set(ids) <= set(env["catalog"].track_ids)
    assert all(out["reasons"][b])
  inputs["k"] = np.int32(10_000)   # bounded by N_max (and the catalogue)
  assert _call(env["fns"]["recommend"], inputs)["ranked_track_ids"].shape == (2, N_MAX)


def test_recommend_mixes_a_pool_larger_than_k(env):
  """The top k come from a larger retrieved pool, so the artist cap holds in them."""
  from ranking.layers import mixing
  cap = mixing.MixingConfig().max_per_artist
  cat = env["catalog"]
  artist_of = dict(zip(cat.track_ids, cat.artist_ids))
  inputs = warmup.recommend_inputs(env["parsed"], env["rich"][:2], 10)
  out = _call(env["fns"]["recommend"], inputs)
  for b in range(2):
    artists = [artist_of[t] for t in out["ranked_track_ids"][b] if artist_of[t]]
    counts = {a: artists.count(a) for a in artists}
    assert max(counts.values()) <= cap, counts


def test_intent_candidates_merge_into_recommend(env):
  fns, cat = env["intent_fns"], env["catalog"]
  assert "intent_candidates" in fns and "intent_candidates" not in env["fns"]
  got = _call(fns["intent_candidates"], {
      "text": np.array([b"calm piano", b"calm piano for the commute"], object),
      "k": np.int32(4)})
  start = len("calm piano") * 3
  np.testing.assert_array_equal(got["track_ids"][0], cat.track_ids[start:start + 4])
  np.testing.assert_array_equal(got["text_cut"], [0, 1])
  inputs = warmup.recommend_inputs(env["parsed"], env["rich"][:2], 30,
                                   texts=["calm piano", " \t "])
  out = _call(fns["recommend"], inputs)
  np.testing.assert_array_equal(out["text_cut"], [0, 0])
  assert "text_cut" not in _call(env["fns"]["recommend"], warmup.recommend_inputs(
      env["parsed"], env["rich"][:1], 5))
  assert any(b"intent_match" in r for r in out["reasons"][0])
  assert not any(b"intent_match" in r for r in out["reasons"][1])
  # Whitespace-only text: the same list as the export without an intent module.
  plain = dict(inputs)
  del plain["request_text"]
  ref = _call(env["fns"]["recommend"], {k: v[1:] if k != "k" else v for k, v in plain.items()})
  np.testing.assert_array_equal(out["ranked_track_ids"][1], ref["ranked_track_ids"][0])


def test_score_examples_and_transform_features(env):
  records = tf.constant(env["records"][:9])
  scored = {k: v.numpy() for k, v in env["fns"]["score_examples"](examples=records).items()}
  assert set(scored) == set(feature_spec.LABEL_KEYS) | {"interest"}
  xf = env["fns"]["transform_features"](examples=records)
  assert set(feature_spec.TRANSFORMED_FEATURES) <= set(xf)
  direct = env["model"](dict(xf), training=False)
  for k in feature_spec.LABEL_KEYS:
    assert scored[k].shape == (9,)
    np.testing.assert_allclose(scored[k], direct[k].numpy(), atol=1e-6, err_msg=k)


def test_bad_requests_are_rejected_naming_the_input(env):
  cat = env["catalog"]
  good = _rank_request(env, [0], cat.track_ids[:5])
  request_schema.validate_rank(good, N_MAX)
  too_many = _rank_request(env, [0], np.resize(cat.track_ids, N_MAX + 1))
  with pytest.raises(ValueError, match="candidate_ids"):
    request_schema.validate_rank(too_many, N_MAX)
  with pytest.raises(tf.errors.InvalidArgumentError, match="candidate_ids"):
    _call(env["fns"]["rank"], too_many)
  mismatch = dict(good, candidate_is_promo=np.zeros((1, 4), np.int64))
  with pytest.raises(ValueError, match="candidate_is_promo"):
    request_schema.validate_rank(mismatch, N_MAX)
  with pytest.raises(tf.errors.InvalidArgumentError, match="candidate_is_promo"):
    _call(env["fns"]["rank"], mismatch)
  long_history = dict(good, hist_len=np.array([feature_spec.HISTORY_LEN + 1], np.int64))
  with pytest.raises(ValueError, match="hist_len"):
    request_schema.validate_rank(long_history, N_MAX)
  with pytest.raises(tf.errors.InvalidArgumentError, match="hist_len"):
    _call(env["fns"]["rank"], long_history)
  with pytest.raises(ValueError, match="candidate_is_promo"):
    request_schema.validate_rank(dict(good, candidate_is_promo=np.full((1, 5), 2, np.int64)), N_MAX)
  rec = warmup.recommend_inputs(env["parsed"], [0], 0)
  with pytest.raises(ValueError, match="'k'"):
    request_schema.validate_recommend(rec, N_MAX)


def test_reasons_follow_the_documented_rules(env):
  """familiar_track / familiar_artist / new_for_you / session_style_match vs Python."""
  cat, parsed = env["catalog"], env["parsed"]
  row = env["rich"][0]
  hist = list(parsed["hist_track_ids"][row][:parsed["hist_len"][row]])
  sess = list(parsed["sess_track_ids"][row][:parsed["sess_len"][row]])
  index = {t: i for i, t in enumerate(cat.track_ids)}
  ids = list(dict.fromkeys(hist[:10] + sess + list(cat.track_ids[:40])))
  out = _call(env["fns"]["rank"], _rank_request(env, [row], ids))
  played = {t for t in hist + sess if t in index}
  played_artists = {cat.artist_ids[index[t]] for t in played} - {b""}
  sess_known = [index[t] for t in sess if t in index]
  sess_artists = {cat.artist_ids[r] for r in sess_known} - {b""}
  sess_tags = {t for r in sess_known for t in cat.tags[r] if t}
  for track, reason in zip(ids, out["reasons"][0]):
    codes = set(reason.decode().split(","))
    r = index[track]
    if track in played:
      want = "familiar_track"
    elif cat.artist_ids[r] in played_artists:
      want = "familiar_artist"
    else:
      want = "new_for_you"
    assert want in codes, (track, codes)
    style = cat.artist_ids[r] in sess_artists or bool(set(cat.tags[r]) & sess_tags - {b""})
    assert ("session_style_match" in codes) == style, (track, codes)


def test_listener_inputs_are_the_feature_spec_listener_features():
  """Names, order, dtypes and shapes of the listener inputs (a signature golden): the
  user, context, history and session raw features less the catalogue-derived artists."""
  h, s = feature_spec.HISTORY_LEN, feature_spec.SESSION_LEN
  assert list(request_schema.LISTENER_INPUTS.items()) == [
      ("user_id", ("string", ())), ("user_segment", ("string", ())),
      ("user_tenure_days", ("float32", ())), ("context_activity", ("string", ())),
      ("context_surface", ("string", ())), ("context_hour", ("int64", ())),
      ("context_weekday", ("int64", ())), ("hist_track_ids", ("string", (h,))),
      ("hist_completion", ("float32", (h,))), ("hist_skip", ("float32", (h,))),
      ("hist_gap_s", ("float32", (h,))), ("hist_len", ("int64", ())),
      ("sess_track_ids", ("string", (s,))), ("sess_completion", ("float32", (s,))),
      ("sess_skip", ("float32", (s,))), ("sess_gap_s", ("float32", (s,))),
      ("sess_len", ("int64", ()))]
  spec = request_schema.rank_input_spec()
  assert set(spec) == (set(request_schema.LISTENER_INPUTS) | {
      "alpha_beta_gamma", "override", "exploration_seed", "fusion", "candidate_ids",
      "candidate_is_promo"})
  assert spec["hist_track_ids"].shape.as_list() == [None, h]
  assert spec["candidate_ids"].shape.as_list() == [None, None]
