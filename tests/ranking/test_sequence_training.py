"""Sequence-level training: the chunks, causality, and parity with the serving path."""

import numpy as np
import pytest
import tensorflow as tf

from features import feature_spec
from features import sequence_examples
from melody_testing import synthetic_batches
from ranking import config as config_lib
from ranking import model as model_lib
from ranking import sequence_training

X = feature_spec.xf
LISTENERS, PLAYS = 5, 24


def _impressions(seed: int = 3):
  """Per-impression arrays of a few listeners whose histories are their earlier rows,
  shuffled; returns (arrays, the true chains)."""
  n = LISTENERS * PLAYS
  arrays = synthetic_batches.synthetic_batch(n, seed=seed)
  rng = np.random.default_rng(seed)
  L, S = feature_spec.HISTORY_LEN, feature_spec.SESSION_LEN
  for key in ("hist_track_ids", "hist_artist_ids", "hist_completion", "hist_skip"):
    arrays[X(key)] = np.zeros_like(arrays[X(key)])
  arrays[X("user_id")] = np.repeat(np.arange(1, LISTENERS + 1), PLAYS).astype(np.int64)
  steps = np.tile(np.arange(PLAYS), LISTENERS)
  arrays[X("hist_len")] = np.minimum(steps, L).astype(np.int64)
  arrays[X("sess_len")] = np.minimum(rng.integers(0, S + 1, n), steps).astype(np.int64)
  for row in range(n):
    for i in range(min(steps[row], L)):
      prev = row - 1 - i
      arrays[X("hist_track_ids")][row, i] = arrays[X("cand_track_id")][prev]
      arrays[X("hist_artist_ids")][row, i] = arrays[X("cand_artist_id")][prev]
      arrays[X("hist_completion")][row, i] = arrays["interest_completion"][prev]
      arrays[X("hist_skip")][row, i] = arrays["interest_skip"][prev]
  order = rng.permutation(n)
  inverse = np.argsort(order)
  shuffled = {k: np.asarray(v)[order] for k, v in arrays.items()}
  chains = [inverse[u * PLAYS:(u + 1) * PLAYS] for u in range(LISTENERS)]
  return shuffled, chains


@pytest.fixture(scope="module")
def data():
  arrays, chains = _impressions()
  return arrays, chains, sequence_examples.build(arrays, max_len=12, context=4)


@pytest.fixture(scope="module")
def model(data):
  tf.keras.utils.set_random_seed(5)
  config = config_lib.ModelConfig(d_model=16, num_layers=2, num_heads=2, expert_units=(16,),
                                  tower_units=(16,), sequence_model="causal",
                                  user_id_dropout=0.0)
  m = sequence_training.SequenceRankingModel(config)
  m.score_steps({k: v[:2] for k, v in data[2].items()})
  m.build_variables()
  return m


def test_chains_rebuilt_from_histories(data):
  arrays, chains, _ = data
  got = sorted(sequence_examples.listener_chains(arrays), key=lambda c: c[0])
  want = sorted(chains, key=lambda c: c[0])
  assert [c.tolist() for c in got] == [c.tolist() for c in want]


def test_chunks_train_every_impression_once_after_context(data):
  arrays, _, seq = data
  index, weight = sequence_examples.chunk_chains(
      [np.arange(PLAYS)], max_len=12, context=4)
  assert index.shape == (3, 12)      # steps 0-11, 8-19, 16-23 (padded)
  trained = index[weight > 0]
  assert sorted(trained.tolist()) == list(range(PLAYS))
  assert weight[1, :4].sum() == 0 and weight[1, 4:].sum() == 8
  assert seq[sequence_examples.STEP_WEIGHT].sum() == LISTENERS * PLAYS
  # A step's play is its candidate with its completion and skip labels.
  np.testing.assert_array_equal(seq[sequence_examples.PLAY_TRACK], seq[X("cand_track_id")])
  assert X("hist_track_ids") not in seq and X("sess_len") in seq


def test_later_plays_do_not_change_earlier_scores(model, data):
  seq = {k: v[:1] for k, v in data[2].items()}
  base = model.score_steps(seq)
  changed = {k: np.array(v) for k, v in seq.items()}
  cut = 7
  rng = np.random.default_rng(0)
  changed[sequence_examples.PLAY_TRACK][0, cut:] = rng.integers(1, 500, 12 - cut)
  changed[sequence_examples.PLAY_COMPLETION][0, cut:] = 1.0 - changed[
      sequence_examples.PLAY_COMPLETION][0, cut:]
  changed[sequence_examples.PLAY_SKIP][0, cut:] = 1.0 - changed[sequence_examples.PLAY_SKIP][
      0, cut:]
  after = model.score_steps(changed)
  for label in ("interest_completion", "interest_skip", "subscription"):
    np.testing.assert_allclose(after[label][:cut], base[label][:cut], rtol=0, atol=1e-6)
    assert np.abs(after[label][cut + 1:] - base[label][cut + 1:]).max() > 1e-5


def test_sequence_scores_equal_the_serving_path(model, data):
  seq = data[2]
  chunk = 1
  steps = int(seq[sequence_examples.STEP_VALID][chunk].sum())
  by_steps = model.score_steps({k: v[chunk:chunk + 1] for k, v in seq.items()})
  serving = model_lib.RankingModel(model.config, model.train_config).build_variables()
  serving.set_weights(model.get_weights())
  for step in (0, 1, 5, steps - 1):
    features = sequence_training.impression_at(seq, chunk, step)
    one = serving.score_candidates(
        {k: features[k] for k in model_lib.LISTENER_FEATURES},
        {k: features[k] for k in model_lib.CANDIDATE_FEATURES})
    for label in feature_spec.LABEL_KEYS + ("interest",):
      np.testing.assert_allclose(one[label].numpy()[0], by_steps[label].numpy()[step],
                                 rtol=1e-5, atol=1e-5, err_msg=f"{label} at step {step}")


@pytest.mark.slow   # one training-step trace: ~20-30 s on a loaded 2-core host
def test_a_few_steps_train_every_head(data):
  tf.keras.utils.set_random_seed(1)
  config = config_lib.ModelConfig(d_model=16, num_layers=1, num_heads=2, expert_units=(16,),
                                  tower_units=(16,), sequence_model="causal")
  train_config = config_lib.TrainConfig(learning_rate=3e-3)
  m = sequence_training.SequenceRankingModel(config, train_config)
  m.compile(optimizer=model_lib.make_optimizer(m, train_config))
  m.score_steps({k: v[:1] for k, v in data[2].items()})
  before = {t: m.towers[t].get_weights()[-1].copy() for t in config.tasks}
  ds = sequence_examples.sequence_dataset(data[2], batch_size=4, seed=1)
  history = m.fit(ds, steps_per_epoch=4, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  assert int(m.step_counter.numpy()) == 4
  for t in config.tasks:   # every task's loss reached its tower
    assert np.abs(m.towers[t].get_weights()[-1] - before[t]).max() > 0, t
  # The per-impression eval path of the same model still runs.
  ev = m.evaluate(tf.data.Dataset.from_tensor_slices(dict(data[0])).batch(60), verbose=0,
                  return_dict=True)
  assert np.isfinite(ev["loss"])


def test_sequence_training_needs_the_causal_model():
  with pytest.raises(ValueError, match="causal"):
    sequence_training.SequenceRankingModel(config_lib.ModelConfig(d_model=16))
