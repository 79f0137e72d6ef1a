"""Tests for the dual encoder's loss and fine-tuning, the preference optimization and the
intent trainer (``run_fn`` end to end on a tiny BERT checkpoint of the same format)."""

import json
import types

import numpy as np
import pandas as pd
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from features.datasets import jamendo_splits
from features.datasets import registry
from pipeline import intent_trainer
from ranking.intent import catalog as catalog_lib
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import intents
from ranking.intent import lexicon
from ranking.intent import preference as pref
from ranking.intent import retrieval
from ranking.intent import synthesis
from ranking.intent import tokenizer as tok_lib
from simulation import world as world_lib
from simulation.world_config import WorldConfig


@pytest.fixture(scope="module")
def catalog():
  return world_lib.World(WorldConfig(n_tracks=120), seed=11).tracks


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, catalog):
  """A random 2-layer BERT whose word-level vocabulary covers the catalog and templates."""
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  words = set()
  texts = catalog_lib.catalog_texts(catalog) + list(lexicon.TRAIN_TEMPLATES
                                                    + lexicon.HELDOUT_TEMPLATES)
  for phrases, _ in list(lexicon.MOODS.values()) + list(lexicon.SITUATIONS.values()):
    texts += list(phrases)
  for t in texts:
    words |= set(re.findall(r"[a-z0-9]+", t.lower()))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + list(",.:?!-'&")
  config = ckpt_lib.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=80)
  rng = np.random.default_rng(0)
  tensors = {k: (rng.normal(0, 0.2, s) + (1.0 if k.endswith("LayerNorm.weight") else 0.0)
                 ).astype(np.float32) for k, s in ckpt_lib.expected_shapes(config).items()}
  path = tmp_path_factory.mktemp("tiny_bert")
  st_numpy.save_file(tensors, str(path / "model.safetensors"))
  (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
  (path / "config.json").write_text(json.dumps(config.to_dict()), encoding="utf-8")
  return str(path)


# ---------------------------------------------------------------------- dual encoder
def _np_loss(q, t, rows, log_q, tau):
  logits = q @ t.T / tau - log_q[None, :]
  for i in range(len(rows)):
    for j in range(len(rows)):
      if i != j and rows[i] == rows[j]:
        logits[i, j] = -1e9
  logits = logits - logits.max(1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  return -np.mean(np.diag(logp))


def test_in_batch_loss_matches_numpy_with_logq_and_duplicates():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(5, 8)).astype(np.float32)
  t = rng.normal(size=(5, 8)).astype(np.float32)
  rows = np.array([3, 1, 3, 0, 2], np.int32)
  log_q = np.log(rng.uniform(0.01, 0.5, 5)).astype(np.float32)
  got = dual_encoder.in_batch_loss(tf.constant(q), tf.constant(t), tf.constant(rows),
                         tf.constant(log_q), 0.5).numpy()
  assert got == pytest.approx(_np_loss(q.astype(np.float64), t.astype(np.float64), rows,
                                       log_q.astype(np.float64), 0.5), rel=1e-5)
  no_q = dual_encoder.in_batch_loss(tf.constant(q), tf.constant(t), tf.constant(rows), None, 0.5)
  assert float(no_q) != pytest.approx(float(got))


def test_positive_log_q_grows_with_frequency():
  lq = dual_encoder.positive_log_q(np.array([0, 0, 0, 1]), num_tracks=3, batch_size=4)
  assert lq[0] > lq[1] > lq[2]
  assert np.all(lq < 0)


def test_untrained_dual_encoder_is_the_zero_shot_encoder(tiny_checkpoint):
  ck = ckpt_lib.load(tiny_checkpoint)
  tok = tok_lib.WordPieceTokenizer(ck.vocab, 16)
  model = dual_encoder.IntentDualEncoder(ck.config, num_tracks=4, listener_dim=3)
  model.encoder.load_checkpoint(ck)
  tokens = tok(tf.constant(["chill rock", "party"]))
  np.testing.assert_allclose(model.query(tokens, tf.ones([2, 3])).numpy(),
                             model.encoder(tokens).numpy(), atol=1e-6)
  e = np.random.default_rng(1).normal(size=(4, 32)).astype(np.float32)
  np.testing.assert_allclose(model.track_vectors(e, tf.constant([0, 1, -1, 9])).numpy(),
                             e / np.linalg.norm(e, axis=1, keepdims=True), atol=1e-6)
  clone = dual_encoder.IntentDualEncoder.from_config(model.get_config())
  assert clone.get_config() == model.get_config()


def test_intent_config_validation_and_round_trip():
  cfg = dual_encoder.IntentConfig(steps=7, batch_size=8)
  assert dual_encoder.IntentConfig.from_dict(cfg.to_dict()) == cfg
  with pytest.raises(ValueError, match="batch_size"):
    dual_encoder.IntentConfig(batch_size=1)
  with pytest.raises(ValueError, match="temperature"):
    dual_encoder.IntentConfig(temperature=0.0)
  with pytest.raises(ValueError, match="unknown IntentConfig fields"):
    dual_encoder.IntentConfig.from_dict({"stepz": 3})


def test_contrastive_fit_lowers_the_loss(tiny_checkpoint, catalog):
  ck = ckpt_lib.load(tiny_checkpoint)
  tok = tok_lib.WordPieceTokenizer(ck.vocab, 24)
  model = dual_encoder.IntentDualEncoder(ck.config, num_tracks=len(catalog), trainable_layers=2)
  model.encoder.load_checkpoint(ck)
  text_emb = dual_encoder.encode_texts(model.encoder, tok_lib.WordPieceTokenizer(ck.vocab, 48),
                                       catalog_lib.catalog_texts(catalog))
  syn = synthesis.RequestSynthesizer(catalog, seed=0)
  train = syn.triplets(64, n_listeners=1)
  cfg = dual_encoder.IntentConfig(steps=40, batch_size=16, encoder_learning_rate=1e-3,
                        head_learning_rate=1e-2, seed=0)
  losses = dual_encoder.contrastive_fit(model, cfg, dual_encoder.tokenize(tok, train.texts),
                                        train.track, text_emb)
  assert len(losses) == 40
  assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.2


# ------------------------------------------------------------------------ preference
def test_group_advantages_are_normalised_per_group():
  r = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
  a = pref.group_advantages(r)
  np.testing.assert_allclose(a.mean(1), 0.0, atol=1e-6)
  assert a[0].std() == pytest.approx(1.0, abs=1e-4)
  np.testing.assert_allclose(a[1], 0.0)
  assert np.all(np.diff(a[0]) > 0)


def test_rewards_combine_intent_personal_and_constraints():
  keys = [frozenset({"rock"}), frozenset({"jazz"}), frozenset({"rock", "sad"})]
  req = intents.Request("rock", (frozenset({"rock"}),), frozenset(), 0, False)
  personal = np.array([[1.0, -1.0, 0.5]], np.float32)
  sampled = np.array([[0, 0, 1, 2, 7]])
  cfg = pref.PreferenceConfig(intent_weight=1.0, personal_weight=0.5, constraint_weight=2.0)
  r = pref.hybrid_rewards([req], keys, sampled, np.array([0]), personal, cfg,
                          available=np.array([True, True, False]))
  np.testing.assert_allclose(r["intent"], [[1, 1, 0, 1, 0]])
  np.testing.assert_allclose(r["personal"], [[1, 1, -1, 0.5, 0]])
  np.testing.assert_allclose(r["constraint"], [[0, -1, 0, -1, -1]])
  np.testing.assert_allclose(r["total"], [[1.5, -0.5, -0.5, -0.75, -2]])


def test_grpo_loss_gradient_is_advantage_weighted_log_prob_and_kl_vanishes_at_ref():
  rng = np.random.default_rng(0)
  logits = tf.Variable(rng.normal(size=(2, 5)).astype(np.float32))
  sampled = tf.constant([[0, 3, 3], [1, 2, 4]])
  adv = tf.constant(rng.normal(size=(2, 3)).astype(np.float32))
  logp = tf.nn.log_softmax(logits)
  old = tf.gather(logp, sampled, batch_dims=1)
  with tf.GradientTape() as tape:
    out = pref.grpo_loss(logits, old, tf.stop_gradient(logp), sampled, adv, 0.2, 0.3)
  grad = tape.gradient(out["loss"], logits).numpy()
  assert float(out["kl"]) == pytest.approx(0.0, abs=1e-6)
  p = tf.nn.softmax(logits).numpy()
  want = np.zeros((2, 5))
  for b in range(2):
    for j in range(3):
      onehot = np.eye(5)[sampled.numpy()[b, j]]
      want[b] -= adv.numpy()[b, j] * (onehot - p[b]) / 6.0
  np.testing.assert_allclose(grad, want, atol=1e-5)


def test_preference_config_names_bad_values():
  with pytest.raises(ValueError, match="group_size"):
    pref.PreferenceConfig(group_size=1)
  with pytest.raises(ValueError, match="kl_weight"):
    pref.PreferenceConfig(kl_weight=-1.0)


# --------------------------------------------------------------------------- trainer
def _tiny_train_config(model_dir, steps=6, po_steps=3):
  return intent_trainer.IntentTrainConfig(intent=dual_encoder.IntentConfig(steps=steps,
                                                                           batch_size=8,
                                                                           max_length=16,
                                                                           track_max_length=32),
                                          preference=pref.PreferenceConfig(steps=po_steps,
                                                                           batch_size=4,
                                                                           group_size=4),
                                          num_train_requests=40,
                                          model_dir=model_dir)


def test_train_config_round_trips_through_custom_config(tiny_checkpoint):
  cfg = _tiny_train_config(tiny_checkpoint)
  assert intent_trainer.IntentTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.slow
def test_preference_stage_keeps_id_embeddings_and_returns_history(tiny_checkpoint, catalog):
  rng = np.random.default_rng(0)
  lv = rng.normal(size=(3, 5)).astype(np.float32)
  interest = rng.normal(size=(3, len(catalog))).astype(np.float32)
  run = intent_trainer.IntentRun(catalog, _tiny_train_config(tiny_checkpoint), lv, interest)
  run.fine_tune()
  ids_before = run.model.track_ids.embeddings.numpy().copy()
  proj_before = run.model.listener_projection.kernel.numpy().copy()
  hist = run.optimize_preferences()
  assert len(hist["reward"]) == 3 and all(k >= -1e-6 for k in hist["kl"])
  np.testing.assert_array_equal(run.model.track_ids.embeddings.numpy(), ids_before)
  assert not np.array_equal(run.model.listener_projection.kernel.numpy(), proj_before)


@pytest.mark.slow
def test_run_fn_saves_a_module_whose_signature_matches_the_in_process_run(
    tiny_checkpoint, catalog, tmp_path):
  path = tmp_path / "tracks.parquet"
  catalog.to_parquet(path)
  # The pipeline step serves another catalog (through the catalog refresh): the training
  # tracks reordered plus new ones.
  serving = pd.concat([catalog.iloc[::-1], catalog.iloc[:3].assign(
      track_id=["new_a", "new_b", "new_c"])], ignore_index=True)
  serving.to_parquet(tmp_path / "serving.parquet")
  cfg = _tiny_train_config(tiny_checkpoint).to_dict()
  fn_args = types.SimpleNamespace(
      custom_config=dict(cfg, catalog_path=str(path),
                         serving_catalog_path=str(tmp_path / "serving.parquet")),
      serving_model_dir=str(tmp_path / "serving"), train_steps=4)
  run = intent_trainer.run_fn(fn_args)
  assert len(run.history["contrastive_loss"]) == 4
  loaded = tf.saved_model.load(fn_args.serving_model_dir)
  texts = tf.constant(["chill rock for a road trip", "songs for a house party"])
  served = loaded.signatures[retrieval.SIGNATURE](text=texts, k=tf.constant(7))
  module = run.refresh(serving)   # keep a reference: tf.function methods hold their owner
  rows, _ = module.candidates(texts, tf.constant(7))
  np.testing.assert_array_equal(served["catalog_rows"].numpy(), rows.numpy())
  assert served["catalog_rows"].numpy().max() < len(serving)
  # The refresh against the reference: known tracks keep the training run's vectors, new
  # ones are the pretrained text embedding through the head alone (no id embedding).
  got = module.track_matrix.numpy()
  np.testing.assert_allclose(got[:len(catalog)], run.track_vectors()[::-1], atol=1e-5)
  e = run.track_text_embeddings[:3]
  unseen = e + e @ run.model.track_projection.kernel.numpy()
  np.testing.assert_allclose(got[len(catalog):],
                             unseen / np.linalg.norm(unseen, axis=1, keepdims=True), atol=1e-5)
  assert np.abs(run.model.track_ids.embeddings.numpy()).max() > 0   # ids were trained
  wrong = dual_encoder.encode_texts(run.model.encoder, run.track_tokenizer, run.texts[:3])
  assert np.abs(wrong - e).max() > 1e-4   # the fine-tuned encoder's vectors would differ
  meta = json.loads((tmp_path / "serving" / "assets.extra" / "intent.json").read_text())
  assert meta["num_tracks"] == len(serving) and meta["num_training_tracks"] == len(catalog)
  with pytest.raises(ValueError, match="catalog_path"):
    intent_trainer.run_fn(types.SimpleNamespace(custom_config={}, serving_model_dir="x"))


# ---------------------------------------------------------------- data hygiene, refresh
def test_every_training_track_is_of_the_train_or_validation_split(fixtures_dir):
  _, jam, _ = registry.load("jamendo", fixtures_dir + "/jamendo")
  jam = jamendo_splits.with_splits(jam, fixtures_dir + "/jamendo")
  train = catalog_lib.mixed_catalog(jam, n_jamendo=10_000, seed=0)
  listed = {}
  for split in ("train", "validation", "test"):
    with open(f"{fixtures_dir}/jamendo/autotagging-{split}.tsv", encoding="utf-8") as f:
      listed.update({line.split("\t")[0].strip(): split for line in list(f)[1:]})
  assert len(train) == sum(s in ("train", "validation") for s in listed.values())
  assert all(listed[t] in ("train", "validation") for t in train["track_id"])
  intent_trainer.check_training_splits(train)
  with pytest.raises(ValueError, match="test"):
    intent_trainer.check_training_splits(jam)
