"""Tests of the optional skip-profile head (``ModelConfig.skip_profile_head``): its output,
its masked loss, its config round trip, and that it learns the simulator's skip profiles.

The learning test turns a small fixed-seed simulator log into model inputs without a TFT
run (which costs close to a minute): ids get dense codes per vocabulary, categoricals
their ``feature_spec`` index, gaps and durations their buckets, numbers pass as they are.
"""

import numpy as np
import pytest

from features import feature_spec
from features import raw_features
from ranking import config as config_lib
from ranking import model as model_lib
from ranking import tasks as tasks_lib
from melody_testing import synthetic_batches

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

SMALL = dict(d_model=16, num_layers=1, num_heads=2, num_experts=2, expert_units=(16,),
             tower_units=(16,), user_id_dropout=0.0)
SKIP = tasks_lib.SKIP_PROFILE
UNKNOWN = feature_spec.UNKNOWN_CLASS


def _model(seed=0, **kwargs):
  tf.keras.utils.set_random_seed(seed)
  cfg = dict(SMALL)
  cfg.update(kwargs)
  return model_lib.RankingModel(config_lib.ModelConfig(**cfg), config_lib.TrainConfig())


def _tensors(batch):
  return {k: tf.constant(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def batch():
  return synthetic_batches.synthetic_batch(64, seed=11)


def test_head_is_off_by_default_and_adds_a_softmax_output(batch):
  assert not config_lib.ModelConfig().skip_profile_head
  plain = _model()
  out = plain(_tensors(batch))
  assert SKIP not in out
  assert plain.towers["interest"].num_outputs == len(feature_spec.TASKS["interest"])
  model = _model(skip_profile_head=True)
  probs = model(_tensors(batch))[SKIP].numpy()
  assert probs.shape == (64, len(feature_spec.SKIP_PROFILES))
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match="skip_profile_head needs the interest task"):
    config_lib.ModelConfig(tasks=("subscription",), skip_profile_head=True)


def test_config_round_trip_keeps_the_head(batch):
  model = _model(skip_profile_head=True)
  config = model.get_config()
  assert config["config"]["skip_profile_head"] is True
  clone = model_lib.RankingModel.from_config(config)
  assert clone.config == model.config and clone.config.skip_profile_head
  x = _tensors(batch)
  model(x)
  clone(x)
  clone.set_weights(model.get_weights())
  np.testing.assert_allclose(clone(x)[SKIP], model(x)[SKIP], atol=1e-6)


def test_unknown_classes_weigh_nothing(batch):
  logits = tf.constant(np.random.default_rng(0).normal(size=(4, 4)), tf.float32)
  target = tf.constant([2, UNKNOWN, 0, UNKNOWN], tf.int64)
  known = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.constant([2, 0], tf.int64), logits=tf.gather(logits, [0, 2]))
  assert float(tasks_lib.class_label_loss(logits, target)) == pytest.approx(
      float(tf.reduce_sum(known)) / 4, rel=1e-6)
  assert float(tasks_lib.class_label_loss(logits, tf.fill([4], tf.constant(UNKNOWN, tf.int64)))
               ) == 0.0
  # In the model: the head's loss joins the interest task only where the class is known.
  model = _model(skip_profile_head=True)
  x = dict(batch)
  x[SKIP] = np.full(64, UNKNOWN, np.int64)
  x = _tensors(x)
  logits = model._logits(model.encode_listener(x), x)   # pylint: disable=protected-access
  labels_only = sum(float(tasks_lib.label_loss(lab, logits[lab], x[lab],
                                               x[feature_spec.weight_key(lab)]))
                    for lab in feature_spec.TASKS["interest"])
  assert float(model.task_losses(x, logits)["interest"]) == pytest.approx(labels_only, rel=1e-6)
  x[SKIP] = tf.constant(batch[SKIP])
  assert float(model.task_losses(x, logits)["interest"]) > labels_only + 0.1


# ------------------------------------------------------------- simulator examples
def _model_inputs(batch):
  """Transformed-feature stand-ins of a raw record batch (see the module docstring)."""
  raw = {name: batch.column(name).flatten().to_numpy(zero_copy_only=False)
         for name in batch.schema.names}
  codes = {v: {feature_spec.PAD_TOKEN: 0} for v in feature_spec.VOCABS}
  fixed = {"user_segment": feature_spec.SEGMENTS, "context_activity": feature_spec.ACTIVITIES,
           "context_surface": feature_spec.SURFACES}
  buckets = {"hist_gap_s": feature_spec.GAP_BOUNDARIES_S,
             "sess_gap_s": feature_spec.GAP_BOUNDARIES_S,
             "cand_duration_s": feature_spec.DURATION_BOUNDARIES_S}
  out = {}
  for name, (dtype, length, _) in feature_spec.TRANSFORMED_FEATURES.items():
    spec = feature_spec.RAW_BY_NAME[name[:-len(feature_spec.XF_SUFFIX)]]
    values = raw[spec.name]
    if spec.vocab:
      table = codes[spec.vocab]
      values = np.array([table.setdefault(v, len(table)) for v in values], np.int64)
    elif spec.name in fixed:
      values = np.array([fixed[spec.name].index(v.decode()) if v.decode() in fixed[spec.name]
                         else 0 for v in values], np.int64)
    elif spec.name in buckets:
      values = np.searchsorted(np.asarray(buckets[spec.name]), values, side="right")
    elif spec.name in ("user_tenure_days", "cand_popularity"):
      values = np.log1p(np.maximum(values, 0.0))
    shape = (-1, length) if length > 1 else (-1,)
    out[name] = values.reshape(shape).astype(np.int64 if dtype == "int64" else np.float32)
  for key in feature_spec.PASSTHROUGH_KEYS:
    out[key] = raw[key]
  return out


@pytest.fixture(scope="module")
def simulated():
  """A fixed-seed simulator log as model inputs, split by listener (80% / 20%)."""
  from simulation.world import World  # pylint: disable=g-import-not-at-top
  world = World(seed=7)
  table = next(world.iter_events(200, 2, chunk_users=200))
  inputs = _model_inputs(raw_features.events_to_record_batch(
      table, raw_features.TrackIndex(world.tracks_table())))
  users = inputs[feature_spec.xf("user_id")]
  held_out = users % 5 == 0
  known = inputs[SKIP] != UNKNOWN
  return ({k: v[~held_out & known] for k, v in inputs.items()},
          {k: v[held_out & known] for k, v in inputs.items()})


def _head_loss_and_accuracy(model, data):
  x = _tensors(data)
  probs = model(x, training=False)[SKIP]
  logits = tf.math.log(tf.maximum(probs, 1e-12))
  loss = float(tasks_lib.class_label_loss(logits, x[SKIP]))
  accuracy = float(np.mean(np.argmax(probs.numpy(), axis=1) == data[SKIP]))
  return loss, accuracy


def test_head_learns_the_simulated_skip_profiles(simulated):
  train, held_out = simulated
  n = len(train[SKIP])
  assert n > 2000 and len(held_out[SKIP]) > 500
  prior = np.bincount(train[SKIP], minlength=4) / n
  prior_accuracy = float(np.mean(held_out[SKIP] == np.argmax(prior)))
  model = _model(seed=3, skip_profile_head=True)
  model.compile(tf.keras.optimizers.Adam(5e-3))
  before, _ = _head_loss_and_accuracy(model, held_out)
  data = tf.data.Dataset.from_tensor_slices(train).shuffle(n, seed=0).batch(128).repeat()
  history = model.fit(data, steps_per_epoch=80, epochs=1, verbose=0)
  after, accuracy = _head_loss_and_accuracy(model, held_out)
  assert "skip_profile_accuracy" in history.history
  assert after < before - 0.05      # 1.37 -> 1.26 nats on this seed
  assert accuracy > prior_accuracy + 0.08, (accuracy, prior_accuracy)   # 0.47 vs 0.33
