"""Tests for the in-graph tokenizer, the checkpoint loader and the BERT text encoder.

The central check is parity with an independent plain-numpy forward pass of the same
pretrained weights (all-MiniLM-L6-v2 from its installed package) on fixed sentences.
"""

import math
import os

import numpy as np
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import text_encoder
from ranking.intent import tokenizer as tok_lib

SENTENCES = [
    "calm piano for a rainy commute",
    "Upbeat but NOT cheesy, for cleaning the flat!",
    "Café música électronique — late night drive",
    "metal",
    "something chill and acoustic to study to on a sunday morning with coffee and rain "
    "outside the window while the city wakes up slowly and the buses hum along the "
    "wet streets",   # longer than 32 word pieces
]
MAX_LEN = 32


@pytest.fixture(scope="module")
def pretrained():
  encoder, checkpoint = text_encoder.pretrained_encoder()
  return encoder, checkpoint, tok_lib.WordPieceTokenizer(checkpoint.vocab, MAX_LEN)


# ------------------------------------------------------------- numpy reference
_erf = np.vectorize(math.erf)


def _layer_norm(x, g, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def numpy_forward(weights, config, ids, mask):
  """Plain-numpy BERT forward + mean pooling + L2 normalisation (float64)."""
  w = {k: v.astype(np.float64) for k, v in weights.items()}
  h, nh = config.hidden_size, config.num_attention_heads
  hd = h // nh
  t = ids.shape[1]
  x = (w["embeddings.word_embeddings.weight"][ids]
       + w["embeddings.position_embeddings.weight"][:t][None]
       + w["embeddings.token_type_embeddings.weight"][0])
  x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                  config.layer_norm_eps)
  neg = (1.0 - mask[:, None, None, :]) * -1e9
  for n in range(config.num_hidden_layers):
    p = f"encoder.layer.{n}."
    lin = lambda v, name: v @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # noqa: E731
    def split(v):
      return v.reshape(v.shape[0], t, nh, hd).transpose(0, 2, 1, 3)
    q = split(lin(x, "attention.self.query"))
    k = split(lin(x, "attention.self.key"))
    v = split(lin(x, "attention.self.value"))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + neg
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    ctx = (s @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    a = _layer_norm(x + lin(ctx, "attention.output.dense"),
                    w[p + "attention.output.LayerNorm.weight"],
                    w[p + "attention.output.LayerNorm.bias"], config.layer_norm_eps)
    inner = lin(a, "intermediate.dense")
    if config.hidden_act == "gelu":
      inner = 0.5 * inner * (1.0 + _erf(inner / np.sqrt(2.0)))
    else:
      inner = np.maximum(inner, 0.0)
    x = _layer_norm(a + lin(inner, "output.dense"), w[p + "output.LayerNorm.weight"],
                    w[p + "output.LayerNorm.bias"], config.layer_norm_eps)
  m = mask[..., None].astype(np.float64)
  pooled = (x * m).sum(1) / m.sum(1)
  return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


# --------------------------------------------------------------------- tokenizer
def test_tokenizer_adds_special_tokens_pads_and_truncates(pretrained):
  _, ck, tok = pretrained
  out = tok(tf.constant(SENTENCES))
  ids, mask = out["input_ids"].numpy(), out["input_mask"].numpy()
  assert ids.shape == mask.shape == (len(SENTENCES), MAX_LEN)
  assert ids.dtype == np.int32
  cls, sep, pad = ck.vocab.index("[CLS]"), ck.vocab.index("[SEP]"), ck.vocab.index("[PAD]")
  for row_ids, row_mask in zip(ids, mask):
    n = int(row_mask.sum())
    assert row_ids[0] == cls and row_ids[n - 1] == sep
    assert np.all(row_mask[:n] == 1) and np.all(row_mask[n:] == 0)
    assert np.all(row_ids[n:] == pad)
    assert cls not in row_ids[1:n - 1] and sep not in row_ids[1:n - 1]
  assert mask[-1].sum() == MAX_LEN          # the long sentence was cut to the width
  assert mask[3].sum() == 3                 # "metal" is one word piece


def test_tokenizer_cuts_long_texts_at_a_word_boundary_and_flags_them(pretrained):
  _, ck, _ = pretrained
  tok = tok_lib.WordPieceTokenizer(ck.vocab, 8)
  out = tok(tf.constant(["hyperventilating saxophones everywhere tonight", "calm piano",
                         "supercalifragilisticexpialidocious"]))
  pieces = [[ck.vocab[i] for i in row if i] for row in out["input_ids"].numpy()]
  # 6 slots: "hyper ##vent ##ila ##ting saxophone ##s" fits whole, "everywhere" does not.
  assert pieces[0] == ["[CLS]", "hyper", "##vent", "##ila", "##ting", "saxophone", "##s",
                       "[SEP]"]
  assert pieces[1] == ["[CLS]", "calm", "piano", "[SEP]"]
  assert len(pieces[2]) == 8 and pieces[2][1] == "super"   # one word wider than the width
  assert out["cut"].numpy().tolist() == [1, 0, 1]
  tok5 = tok_lib.WordPieceTokenizer(ck.vocab, 5)
  cut = [ck.vocab[i] for i in tok5(tf.constant(["hyperventilating saxophones"]))[
      "input_ids"].numpy()[0] if i]
  assert cut == ["[CLS]", "hyper", "##vent", "##ila", "[SEP]"]   # cut inside the only word


def test_tokenizer_lowercases_and_strips_accents(pretrained):
  _, ck, tok = pretrained
  a = tok(tf.constant(["CAFÉ Électronique"]))["input_ids"].numpy()
  b = tok(tf.constant(["cafe electronique"]))["input_ids"].numpy()
  np.testing.assert_array_equal(a, b)
  piano = tok(tf.constant(["Piano"]))["input_ids"].numpy()[0]
  assert piano[1] == ck.vocab.index("piano")


def test_tokenizer_rejects_bad_arguments(pretrained):
  _, ck, _ = pretrained
  with pytest.raises(ValueError, match="max_length"):
    tok_lib.WordPieceTokenizer(ck.vocab, 2)
  with pytest.raises(ValueError, match=r"\[CLS\]"):
    tok_lib.WordPieceTokenizer([t for t in ck.vocab if t != "[CLS]"], 8)


# ----------------------------------------------------------------------- encoder
def test_encoder_matches_numpy_forward_pass(pretrained):
  encoder, ck, tok = pretrained
  tokens = tok(tf.constant(SENTENCES))
  got = encoder(tokens).numpy()
  want = numpy_forward(ck.weights, ck.config, tokens["input_ids"].numpy(),
                       tokens["input_mask"].numpy().astype(np.float64))
  assert got.shape == (len(SENTENCES), ck.config.hidden_size)
  assert np.max(np.abs(got - want)) <= 1e-4
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_pretrained_weights_give_meaningful_similarities(pretrained):
  encoder, _, tok = pretrained
  e = encoder(tok(tf.constant(["relaxing piano music", "calm piano songs",
                               "aggressive heavy metal"]))).numpy()
  assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_padding_does_not_change_the_embedding(pretrained):
  encoder, ck, _ = pretrained
  short = tok_lib.WordPieceTokenizer(ck.vocab, 12)
  wide = tok_lib.WordPieceTokenizer(ck.vocab, 48)
  text = tf.constant(["calm piano for a rainy commute"])
  np.testing.assert_allclose(encoder(short(text)).numpy(), encoder(wide(text)).numpy(),
                             atol=1e-5)


def test_trainable_layers_freeze_the_lower_blocks(pretrained):
  _, ck, _ = pretrained
  enc = text_encoder.BertTextEncoder(ck.config, trainable_layers=2)
  ids = tf.zeros([1, 3], tf.int32)
  enc({"input_ids": ids, "input_mask": tf.ones_like(ids)})
  names = {v.name.split("/")[1] for v in enc.trainable_variables}
  assert names == {"block_4", "block_5"}
  with pytest.raises(ValueError, match="trainable_layers"):
    text_encoder.BertTextEncoder(ck.config, trainable_layers=7)


def _tiny_checkpoint(tmp_path, prefix="bert.", act="relu"):
  """A random BERT checkpoint of other sizes (2 layers, hidden 32) in the same format."""
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "calm", "piano", "rain", "##y",
           "rock", "for", "a"]
  config = ckpt_lib.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=40, hidden_act=act)
  rng = np.random.default_rng(3)
  tensors = {prefix + k: (rng.normal(0, 0.3, s) + (1.0 if k.endswith("LayerNorm.weight")
                                                   else 0.0)).astype(np.float32)
             for k, s in ckpt_lib.expected_shapes(config).items()}
  tensors[prefix + "embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
  st_numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
  cfg = dict(config.to_dict(), model_type="bert", architectures=["BertModel"])
  (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
  return str(tmp_path)


def test_loader_takes_any_bert_checkpoint_of_the_same_format(tmp_path):
  model_dir = _tiny_checkpoint(tmp_path)
  encoder, ck = text_encoder.pretrained_encoder(model_dir)
  assert ck.config.hidden_size == 32 and ck.config.num_hidden_layers == 2
  tok = tok_lib.WordPieceTokenizer(ck.vocab, 10)
  tokens = tok(tf.constant(["calm piano for a rainy", "rock"]))
  got = encoder(tokens).numpy()
  want = numpy_forward(ck.weights, ck.config, tokens["input_ids"].numpy(),
                       tokens["input_mask"].numpy().astype(np.float64))
  assert got.shape == (2, 32)
  assert np.max(np.abs(got - want)) <= 1e-4


def test_loader_names_missing_and_misshaped_tensors(tmp_path):
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  model_dir = _tiny_checkpoint(tmp_path, prefix="")
  path = os.path.join(model_dir, "model.safetensors")
  tensors = st_numpy.load_file(path)
  bad = dict(tensors)
  bad["encoder.layer.1.output.dense.bias"] = np.zeros(5, np.float32)
  st_numpy.save_file(bad, path)
  with pytest.raises(ValueError, match="encoder.layer.1.output.dense.bias"):
    ckpt_lib.load(model_dir)
  del bad["encoder.layer.1.output.dense.bias"]
  st_numpy.save_file(bad, path)
  with pytest.raises(ValueError, match="lacks tensor"):
    ckpt_lib.load(model_dir)
  with pytest.raises(FileNotFoundError):
    ckpt_lib.load(os.path.join(model_dir, "nowhere"))


def test_config_validation_names_bad_values():
  with pytest.raises(ValueError, match="hidden_size 30"):
    ckpt_lib.BertConfig(hidden_size=30, num_attention_heads=4)
  with pytest.raises(ValueError, match="hidden_act"):
    ckpt_lib.BertConfig(hidden_act="swish")
  assert ckpt_lib.BertConfig.from_dict({"hidden_size": 64, "num_attention_heads": 4,
                                        "model_type": "bert"}).hidden_size == 64


def test_encoder_config_round_trip(pretrained):
  encoder, _, tok = pretrained
  clone = text_encoder.BertTextEncoder.from_config(encoder.get_config())
  tokens = tok(tf.constant(SENTENCES[:2]))
  clone(tokens)
  clone.set_weights(encoder.get_weights())
  np.testing.assert_allclose(clone(tokens).numpy(), encoder(tokens).numpy(), atol=1e-6)
