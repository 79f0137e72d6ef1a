"""Tests of the ranking model's sequence ablations (``ModelConfig.sequence_model``), the
most-recent-play summary (``recent_play``) and the promo-only exposure head
(``promo_gated_exposure``).
"""

import numpy as np
import pytest

from features import feature_spec
from ranking import config as config_lib
from ranking import model as model_lib
from ranking import tasks
from melody_testing import synthetic_batches

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

SMALL = dict(d_model=16, num_layers=1, num_heads=2, expert_units=(16,), tower_units=(8,))
PROMO = feature_spec.xf("cand_is_promo")


@pytest.fixture(scope="module")
def batch():
  return synthetic_batches.synthetic_batch(32, seed=5)


_MODELS = {}


def _model(**kwargs):
  """A small model of the given config, built once per module (the tests only read it)."""
  key = tuple(sorted(kwargs.items()))
  if key not in _MODELS:
    tf.keras.utils.set_random_seed(0)
    _MODELS[key] = model_lib.RankingModel(config_lib.ModelConfig(**dict(SMALL, **kwargs)))
  return _MODELS[key]


def _tensors(b):
  return {k: tf.constant(v) for k, v in b.items()}


def test_sequence_model_is_validated_and_sets_the_transformer_layers():
  with pytest.raises(ValueError, match="sequence_model must be one of .* got 'rnn'"):
    config_lib.ModelConfig(sequence_model="rnn")
  assert config_lib.ModelConfig().transformer_layers == (2, 1)
  for name in ("pooled", "target_attention"):
    cfg = config_lib.ModelConfig(sequence_model=name, recent_play=True)
    assert cfg.transformer_layers == (0, 0)
    assert config_lib.ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["pooled", "target_attention"])
def test_ablations_drop_the_blocks_and_keep_encode_once_scoring(batch, name):
  model = _model(sequence_model=name)
  listener = synthetic_batches.take(batch, slice(0, 1), model_lib.LISTENER_FEATURES)
  candidates = synthetic_batches.take(batch, slice(0, 12), model_lib.CANDIDATE_FEATURES)
  tiled = {k: np.repeat(v, 12, axis=0) for k, v in listener.items()}
  tiled.update(candidates)
  broadcast = model.score_candidates(_tensors(listener), _tensors(candidates))
  per_candidate = model(_tensors(tiled), training=False)
  for k in broadcast:
    np.testing.assert_allclose(broadcast[k], per_candidate[k], atol=1e-5, rtol=0)
  assert not model.history_encoder.blocks and not model.session_encoder.encoder.blocks
  attention = [v for v in model.trainable_variables if "target_attention" in v.name]
  assert bool(attention) == (name == "target_attention")
  assert (model.target_attention is None) == (name == "pooled")
  assert not any("block_" in v.name for v in model.trainable_variables)


def test_without_blocks_a_play_is_encoded_alone(batch):
  """Position 0 (the most recent play) of a pooled model is that play's token alone:
  changing an older play leaves it unchanged; the Transformer's position 0 attends to
  the older play and moves."""
  b = _tensors(synthetic_batches.take(batch, slice(0, 4), model_lib.LISTENER_FEATURES))
  model = _model(sequence_model="pooled")
  enc = model.encode_listener(b, training=False)
  h = enc["history"].numpy()
  # Position 0 of a pooled model is the token of the most recent play alone: changing an
  # older play leaves it unchanged; the Transformer's position 0 attends to that play.
  changed = dict(b)
  ids = b[feature_spec.xf("hist_track_ids")].numpy().copy()
  ids[:, 3] = np.where(ids[:, 3] > 0, (ids[:, 3] % 1000) + 1, ids[:, 3])
  changed[feature_spec.xf("hist_track_ids")] = tf.constant(ids)
  np.testing.assert_allclose(model.encode_listener(changed, training=False)["history"][:, 0],
                             h[:, 0], atol=1e-6)
  full = _model()
  before = full.encode_listener(b, training=False)["history"][:, 0].numpy()
  after = full.encode_listener(changed, training=False)["history"][:, 0].numpy()
  assert np.abs(before - after).max() > 1e-4


def test_recent_play_adds_the_most_recent_encoded_play_to_the_listener_part(batch):
  plain, recent = _model(), _model(recent_play=True)
  tensors = _tensors(batch)
  plain(tensors, training=False)
  recent(tensors, training=False)

  def size(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)

  # The extra input rows of the mixture's first layers: d_model per first-layer unit.
  grown = size(recent) - size(plain)
  assert grown > 0 and grown % SMALL["d_model"] == 0


def test_exposure_is_zero_and_untrained_on_organic_candidates(batch):
  model = _model()
  tensors = _tensors(batch)
  preds = model(tensors, training=False)
  promo = batch[PROMO].reshape(-1) > 0
  assert promo.any() and (~promo).any()
  np.testing.assert_array_equal(preds["exposure"].numpy()[~promo], 0.0)
  assert (preds["exposure"].numpy()[promo] > 0).all()
  # Organic rows send no gradient through the exposure head: with only them weighted,
  # the exposure loss has a zero gradient for every weight.
  organic_only = dict(tensors)
  organic_only["exposure_weight"] = tf.constant((~promo).astype(np.float32))
  organic_only["exposure"] = tf.constant(np.where(promo, 0.0, 0.7).astype(np.float32))
  with tf.GradientTape() as tape:
    encoding = model.encode_listener(organic_only)
    logits = model._logits(encoding, organic_only)   # pylint: disable=protected-access
    loss = model.task_losses(organic_only, logits)["exposure"]
  grads = tape.gradient(loss, model.trainable_variables)
  assert loss.numpy() > 0      # the organic labels are wrong, yet nothing learns from them
  assert all(g is None or not np.any(tf.convert_to_tensor(g).numpy()) for g in grads)
  ungated = _model(promo_gated_exposure=False)(tensors, training=False)["exposure"].numpy()
  assert (ungated[~promo] > 0).all()


def test_gate_promo_only_touches_only_promo_only_labels():
  logits = {"exposure": tf.constant([1.0, 2.0]), "interest_skip": tf.constant([1.0, 2.0])}
  out = tasks.gate_promo_only(logits, tf.constant([0, 1]))
  assert tasks.link("exposure", out["exposure"]).numpy().tolist()[0] == 0.0
  assert out["exposure"].numpy()[1] == 2.0
  np.testing.assert_array_equal(out["interest_skip"], logits["interest_skip"])
