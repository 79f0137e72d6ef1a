"""Tests of ranking.layers: math against numpy references, masking, names, validation,
``from_config(get_config())`` round trips and SavedModel save/load equality."""

import numpy as np
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
from ranking import metrics as metrics_lib
from ranking.layers import embeddings
from ranking.layers import experts
from ranking.layers import mmoe
from ranking.layers import ple
from ranking.layers import sequence_encoder
from ranking.layers import session_encoder
from ranking.layers import shared_bottom
from ranking.layers import target_attention
from ranking.layers import towers

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

B, L, D = 3, 6, 8


def _seq_inputs(seed=0, lengths=(6, 2, 0)):
  rng = np.random.default_rng(seed)
  mask = np.arange(L)[None, :] < np.array(lengths)[:, None]
  return (tf.constant(rng.normal(size=(B, L, D)), tf.float32),
          tf.constant(rng.random((B, L)), tf.float32),
          tf.constant((rng.random((B, L)) < 0.3).astype(np.float32)),
          tf.constant(rng.integers(0, 5, (B, L)), tf.int64),
          tf.constant(mask))


def _assert_round_trip(layer, args, tmp_path, **call_kwargs):
  """get_config round trip, registration, and SavedModel outputs equal to the layer's."""
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config
  assert tf.keras.utils.get_registered_name(type(layer)).startswith("melody>")
  expected = layer(*args, **call_kwargs)
  module = tf.Module()
  module.layer = layer
  module.f = tf.function(lambda *a: layer(*a, **call_kwargs),
                         input_signature=[tf.TensorSpec.from_tensor(a) for a in args])
  path = str(tmp_path / type(layer).__name__)
  tf.saved_model.save(module, path)
  loaded = tf.saved_model.load(path)
  got = loaded.f(*args)
  tf.nest.map_structure(lambda e, g: np.testing.assert_allclose(e, g, atol=1e-6),
                        expected, got)


def test_item_embedding_shares_tables_and_zeroes_padding(tmp_path):
  emb = embeddings.ItemEmbedding(dim=D, track_vocab=20, artist_vocab=10)
  hist = emb(tf.constant([[3, 5, 0]]), tf.constant([[1, 2, 0]]))
  cand = emb(tf.constant([5]), tf.constant([2]))
  np.testing.assert_allclose(hist[0, 1], cand[0])     # one table for history and candidate
  np.testing.assert_array_equal(hist[0, 2], np.zeros(D))
  expected = emb.track_table.embeddings[3] + emb.artist_table.embeddings[1]
  np.testing.assert_allclose(hist[0, 0], expected, rtol=1e-6)
  _assert_round_trip(emb, (tf.constant([[3, 0]], tf.int64), tf.constant([[1, 0]], tf.int64)),
                     tmp_path)
  with pytest.raises(ValueError, match="dim must be positive, got 0"):
    embeddings.ItemEmbedding(dim=0)


def test_masked_mean_embedding(tmp_path):
  layer = embeddings.MaskedMeanEmbedding(vocab=10, dim=4)
  out = layer(tf.constant([[2, 4, 0], [0, 0, 0]]))
  table = layer.table.embeddings.numpy()
  np.testing.assert_allclose(out[0], (table[2] + table[4]) / 2, rtol=1e-6)
  np.testing.assert_array_equal(out[1], np.zeros(4))
  _assert_round_trip(layer, (tf.constant([[1, 0]], tf.int64),), tmp_path)
  with pytest.raises(ValueError, match="vocab must be positive, got -1"):
    embeddings.MaskedMeanEmbedding(vocab=-1, dim=4)


def test_oov_dropout_sends_known_ids_to_their_oov_bucket(tmp_path):
  top_k, oov = 1000, 7
  layer = embeddings.OovDropout(0.3, top_k=top_k, num_oov=oov)
  ids = np.concatenate([np.arange(1, top_k + 1), [0] * 200, np.arange(top_k + 1, top_k + 8)])
  tf.keras.utils.set_random_seed(3)
  out = layer(tf.constant(ids), training=True).numpy()
  known = (ids >= 1) & (ids <= top_k)
  changed = out != ids
  assert not changed[~known].any()                     # padding and OOV ids are kept
  np.testing.assert_array_equal(out[changed], top_k + 1 + ids[changed] % oov)
  assert 0.25 < changed[known].mean() < 0.35           # ~rate of the known ids (n=1000)
  # Outside training (and at rate 0) the ids pass through untouched.
  np.testing.assert_array_equal(layer(tf.constant(ids), training=False), ids)
  np.testing.assert_array_equal(layer(tf.constant(ids)), ids)
  np.testing.assert_array_equal(
      embeddings.OovDropout(0.0, top_k, oov)(tf.constant(ids), training=True), ids)
  # A symbolic learning phase picks the branch at run time.
  phase = tf.function(lambda x, t: layer(x, training=t))
  np.testing.assert_array_equal(phase(tf.constant(ids), tf.constant(False)), ids)
  assert (phase(tf.constant(ids), tf.constant(True)).numpy() != ids).any()
  _assert_round_trip(layer, (tf.constant([5, 0], tf.int64),), tmp_path)
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1.0"):
    embeddings.OovDropout(1.0, top_k, oov)
  with pytest.raises(ValueError, match="top_k and num_oov must be positive"):
    embeddings.OovDropout(0.1, top_k, 0)


def test_play_tokens_math(tmp_path):
  layer = sequence_encoder.PlayTokens(dim=D, max_len=L, num_gap_buckets=5)
  args = _seq_inputs()
  out = layer(*args).numpy()
  item, comp, skip, gap, mask = (a.numpy() for a in args)
  w, b = (v.numpy() for v in layer.feedback.weights)
  pos = layer.positions.embeddings.numpy()
  gaps = layer.gaps.embeddings.numpy()
  fb = np.stack([comp, skip], -1) @ w + b
  expected = (item + pos[None] + gaps[gap] + fb) * mask[..., None]
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  _assert_round_trip(layer, args, tmp_path)


def test_transformer_block_ignores_padded_keys(tmp_path):
  tf.keras.utils.set_random_seed(1)
  block = sequence_encoder.TransformerBlock(dim=D, num_heads=2, ff_dim=16)
  x, _, _, _, mask = _seq_inputs(lengths=(6, 3, 1))
  y = block(x, mask).numpy()
  noisy = np.where(mask.numpy()[..., None], x.numpy(), 123.0).astype(np.float32)
  y2 = block(tf.constant(noisy), mask).numpy()
  m = mask.numpy()
  np.testing.assert_allclose(y[m], y2[m], rtol=1e-5, atol=1e-5)
  _assert_round_trip(block, (x, mask), tmp_path)
  with pytest.raises(ValueError, match="dim must be divisible by num_heads, got 8 and 3"):
    sequence_encoder.TransformerBlock(dim=8, num_heads=3, ff_dim=16)
  with pytest.raises(ValueError, match="activation must be one of .* got 'tanh'"):
    sequence_encoder.TransformerBlock(dim=8, num_heads=2, ff_dim=16, activation="tanh")
  gelu = sequence_encoder.TransformerBlock(dim=D, num_heads=2, ff_dim=16, activation="gelu")
  _assert_round_trip(gelu, (x, mask), tmp_path)


def test_training_layer_norm_matches_keras_values_and_gradients():
  ln = tf.keras.layers.LayerNormalization(epsilon=1e-6)
  ln.build([None, None, D])
  rng = np.random.default_rng(5)
  ln.gamma.assign(rng.normal(size=D).astype(np.float32))
  ln.beta.assign(rng.normal(size=D).astype(np.float32))
  x = tf.constant(rng.normal(3.0, 2.0, size=(B, L, D)), tf.float32)
  dy = tf.constant(rng.normal(size=(B, L, D)), tf.float32)
  results = []
  for training in (False, True):   # False: the Keras layer itself
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = sequence_encoder.layer_norm(ln, x, training=training)
    results.append([y] + tape.gradient(y, [x, ln.gamma, ln.beta], output_gradients=dy))
  for keras_value, ours in zip(*results):
    np.testing.assert_allclose(ours, keras_value, rtol=1e-4, atol=1e-5)


def test_transformer_block_bfloat16_training_path(tmp_path):
  """mixed_bfloat16 changes training calls only: the same weights give float32-exact
  inference, bfloat16-close training outputs, and float32 gradients for every weight."""
  x, _, _, _, mask = _seq_inputs(lengths=(6, 3, 1))
  tf.keras.utils.set_random_seed(4)
  fp32, bf16 = (sequence_encoder.TransformerBlock(dim=D, num_heads=2, ff_dim=16,
                                                  train_precision=p)
                for p in ("float32", "mixed_bfloat16"))
  fp32(x, mask), bf16(x, mask)   # builds both
  bf16.set_weights(fp32.get_weights())
  np.testing.assert_array_equal(fp32(x, mask).numpy(), bf16(x, mask).numpy())
  m = mask.numpy()
  train32 = fp32(x, mask, training=True).numpy()
  with tf.GradientTape() as tape:
    y = bf16(x, mask, training=True)
    loss = tf.reduce_sum(tf.square(y))
  grads = tape.gradient(loss, bf16.trainable_weights)
  assert y.dtype == tf.float32
  # bfloat16 keeps 8 mantissa bits: close to float32, but not equal (the path is taken).
  np.testing.assert_allclose(y.numpy()[m], train32[m], rtol=0, atol=0.05)
  assert np.abs(y.numpy()[m] - train32[m]).max() > 1e-6
  assert len(grads) == len(bf16.trainable_weights) == 16
  for g, w in zip(grads, bf16.trainable_weights):
    assert g is not None and g.dtype == tf.float32, w.name
  # Only padded rows may differ in inference (none do here), and the config travels.
  assert bf16.get_config()["train_precision"] == "mixed_bfloat16"
  _assert_round_trip(bf16, (x, mask), tmp_path)
  with pytest.raises(ValueError, match="train_precision must be one of .* got 'fp16'"):
    sequence_encoder.TransformerBlock(dim=D, num_heads=2, ff_dim=16, train_precision="fp16")


def test_transformer_block_attention_matches_numpy():
  tf.keras.utils.set_random_seed(2)
  block = sequence_encoder.TransformerBlock(dim=4, num_heads=2, ff_dim=8)
  x = tf.constant(np.random.default_rng(0).normal(size=(1, 3, 4)), tf.float32)
  mask = tf.constant([[True, True, False]])
  got = block._self_attention(x, mask, training=False).numpy()[0]
  wo, bo = (v.numpy() for v in block.attention_output.weights)
  q, k, v = (x.numpy()[0] @ l.kernel.numpy() + l.bias.numpy()
             for l in (block.query, block.key, block.value))
  heads = []
  for h in range(2):
    sl = slice(2 * h, 2 * h + 2)
    s = q[:, sl] @ k[:, sl].T / np.sqrt(2) + np.array([0, 0, -1e9])
    a = np.exp(s - s.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    heads.append(a @ v[:, sl])
  np.testing.assert_allclose(got, np.concatenate(heads, 1) @ wo + bo, rtol=1e-5, atol=1e-6)


def test_sequence_encoder_zero_padding_and_round_trip(tmp_path):
  tf.keras.utils.set_random_seed(3)
  enc = sequence_encoder.SequenceEncoder(dim=D, num_layers=2, num_heads=2, ff_dim=16,
                                         max_len=L, num_gap_buckets=5)
  args = _seq_inputs()
  h = enc(*args).numpy()
  assert h.shape == (B, L, D)
  np.testing.assert_array_equal(h[~args[4].numpy()], 0.0)
  assert np.all(np.isfinite(h))
  assert [b.name for b in enc.blocks] == ["block_0", "block_1"]
  _assert_round_trip(enc, args, tmp_path)
  with pytest.raises(ValueError, match="num_layers must be >= 0, got -1"):
    sequence_encoder.SequenceEncoder(D, -1, 2, 16, L, 5)


def test_length_mask():
  np.testing.assert_array_equal(
      sequence_encoder.length_mask(tf.constant([[2], [0], [9]]), 3).numpy(),
      [[True, True, False], [False, False, False], [True, True, True]])


def test_session_encoder_pools_real_steps(tmp_path):
  tf.keras.utils.set_random_seed(4)
  enc = session_encoder.SessionEncoder(dim=D, num_layers=1, num_heads=2, ff_dim=16,
                                       max_len=L, num_gap_buckets=5)
  args = _seq_inputs()
  s = enc(*args).numpy()
  h = enc.encoder(*args).numpy()
  np.testing.assert_allclose(s[1], h[1, :2].mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(s[2], np.zeros(D))     # empty session
  _assert_round_trip(enc, args, tmp_path)


def test_target_attention_matches_numpy_and_broadcasts(tmp_path):
  tf.keras.utils.set_random_seed(5)
  att = target_attention.TargetAttention(dim=D, num_heads=2)
  rng = np.random.default_rng(1)
  memory = tf.constant(rng.normal(size=(1, L, D)), tf.float32)
  mask = tf.constant([[1, 1, 1, 0, 0, 0]], tf.float32)
  query = tf.constant(rng.normal(size=(4, D)), tf.float32)
  broadcast = att(query, memory, mask).numpy()
  tiled = att(query, tf.repeat(memory, 4, 0), tf.repeat(mask, 4, 0)).numpy()
  np.testing.assert_allclose(broadcast, tiled, atol=1e-6)
  wq, wk, wv = (l.kernel.numpy() for l in (att.query, att.key, att.value))
  wo, bo = (v.numpy() for v in att.output_projection.weights)
  mem = memory.numpy()[0][:3]
  outs = []
  for c in query.numpy():
    q, k, v = c @ wq, mem @ wk, mem @ wv
    heads = []
    for h in range(2):
      sl = slice(4 * h, 4 * h + 4)
      s = k[:, sl] @ q[sl] / 2.0
      a = np.exp(s - s.max())
      heads.append((a / a.sum()) @ v[:, sl])
    outs.append(np.concatenate(heads) @ wo + bo)
  np.testing.assert_allclose(broadcast, np.array(outs), rtol=1e-5, atol=1e-5)
  empty = att(query, memory, tf.zeros_like(mask)).numpy()
  np.testing.assert_array_equal(empty, 0.0)
  _assert_round_trip(att, (query, memory, mask), tmp_path)
  with pytest.raises(ValueError, match="num_heads must be positive and divide dim, got 3"):
    target_attention.TargetAttention(dim=8, num_heads=3)


def test_expert_bank_matches_per_expert_mlps(tmp_path):
  tf.keras.utils.set_random_seed(6)
  bank = experts.ExpertBank(num_experts=3, units=(5, 4))
  x = tf.constant(np.random.default_rng(2).normal(size=(2, 6)), tf.float32)
  out = bank(x).numpy()
  assert out.shape == (2, 3, 4)
  for k in range(3):
    h = np.maximum(x.numpy() @ bank.kernels[0][k].numpy() + bank.biases[0][k].numpy(), 0)
    h = np.maximum(h @ bank.kernels[1][k].numpy() + bank.biases[1][k].numpy(), 0)
    np.testing.assert_allclose(out[:, k], h, rtol=1e-5, atol=1e-6)
  _assert_round_trip(bank, (x,), tmp_path)
  with pytest.raises(ValueError, match="num_experts must be positive, got 0"):
    experts.ExpertBank(0, (4,))
  with pytest.raises(ValueError, match=r"units must be positive widths, got \(4, 0\)"):
    experts.ExpertBank(2, (4, 0))


def test_mmoe_gates_per_task(tmp_path):
  tf.keras.utils.set_random_seed(7)
  layer = mmoe.MMoE(task_names=("interest", "subscription"), num_experts=3, units=(4,))
  x = tf.constant(np.random.default_rng(3).normal(size=(5, 6)), tf.float32)
  out = layer(x)
  assert set(out) == {"interest", "subscription"}
  assert layer.gates["interest"].name == "gate_interest"
  e = layer.experts(x).numpy()
  for t in out:
    g = layer.gates[t](x).numpy()
    np.testing.assert_allclose(g.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[t], np.einsum("bk,bku->bu", g, e), rtol=1e-5, atol=1e-6)
  assert not np.allclose(out["interest"], out["subscription"])
  _assert_round_trip(layer, (x,), tmp_path)
  with pytest.raises(ValueError, match="task_names must name at least one task"):
    mmoe.MMoE((), 2, (4,))


def test_ple_cgc_and_two_levels(tmp_path):
  tf.keras.utils.set_random_seed(8)
  x = tf.constant(np.random.default_rng(4).normal(size=(5, 6)), tf.float32)
  cgc = ple.PLE(("interest", "exposure"), shared_experts=2, task_experts=1, units=(4,))
  out = cgc(x)
  lv = cgc.level_layers[0]
  assert lv["gates"]["exposure"].name == "gate_exposure"
  e = np.concatenate([lv["task_experts"]["exposure"](x).numpy(),
                      lv["shared_experts"](x).numpy()], 1)
  g = lv["gates"]["exposure"](x).numpy()
  assert g.shape == (5, 3)   # own expert + 2 shared, never the other task's
  np.testing.assert_allclose(out["exposure"], np.einsum("bk,bku->bu", g, e), rtol=1e-5,
                             atol=1e-6)
  deep = ple.PLE(("interest", "exposure"), 2, 1, (4,), levels=2)
  out2 = deep(x)
  assert {k: v.shape for k, v in out2.items()} == {"interest": (5, 4), "exposure": (5, 4)}
  _assert_round_trip(deep, (x,), tmp_path)
  with pytest.raises(ValueError, match="levels must be positive, got 0"):
    ple.PLE(("interest",), 1, 1, (4,), levels=0)


def test_shared_bottom_and_towers(tmp_path):
  tf.keras.utils.set_random_seed(9)
  x = tf.constant(np.random.default_rng(5).normal(size=(2, 6)), tf.float32)
  sb = shared_bottom.SharedBottom(("interest", "exposure"), units=(4,))
  out = sb(x)
  np.testing.assert_array_equal(out["interest"], out["exposure"])
  _assert_round_trip(sb, (x,), tmp_path)
  tower = towers.TaskTower("interest", units=(3,), num_outputs=3)
  assert tower.name == "tower_interest"
  z = tower(out["interest"])
  assert z.shape == (2, 3)
  _assert_round_trip(tower, (out["interest"],), tmp_path)
  with pytest.raises(ValueError, match="num_outputs must be positive, got 0"):
    towers.TaskTower("exposure", (3,), 0)


def test_calibration_ratio():
  m = metrics_lib.CalibrationRatio()
  m.update_state([0.5, 0.5, 1.0], [0.6, 0.4, 0.0], sample_weight=[1.0, 1.0, 0.0])
  assert float(m.result()) == pytest.approx(1.0)
  m.update_state([0.5], [1.0])
  assert float(m.result()) == pytest.approx(2.0 / 1.5)
  m.reset_state()
  assert float(m.result()) == 0.0


@pytest.mark.parametrize("make", [
    lambda: mmoe.MMoE(("interest", "exposure"), num_experts=3, units=(4, 3)),
    lambda: ple.PLE(("interest", "exposure"), 2, 1, (4,), levels=2),
    lambda: shared_bottom.SharedBottom(("interest", "exposure"), units=(4,)),
])
def test_mixtures_accept_a_shared_part_computed_once(make):
  tf.keras.utils.set_random_seed(10)
  layer = make()
  rng = np.random.default_rng(6)
  shared = tf.constant(rng.normal(size=(1, 3)), tf.float32)
  per_row = tf.constant(rng.normal(size=(5, 4)), tf.float32)
  split = layer((shared, per_row))
  full = layer(tf.concat([tf.repeat(shared, 5, 0), per_row], -1))
  for t in split:
    assert split[t].shape == (5, full[t].shape[-1])
    np.testing.assert_allclose(split[t], full[t], atol=1e-5)
