"""The noise-aware blessing gate: the paired bootstrap of the AUC change, the TFMA
evaluation that gates on it, and the sentences that say why a model was not blessed."""

import itertools
import os

import numpy as np
import pytest

import pipeline  # noqa: F401  (Keras 2 before TensorFlow)
from pipeline import paired_auc


def _reference_auc(labels, weights, preds):
  """Weighted AUC over all (positive, negative) pairs; ties count one half."""
  num = den = 0.0
  for (li, wi, pi), (lj, wj, pj) in itertools.product(zip(labels, weights, preds), repeat=2):
    w = wi * li * wj * (1 - lj)
    den += w
    num += w * (1.0 if pi > pj else 0.5 if pi == pj else 0.0)
  return num / den


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_matches_the_pairwise_definition(seed):
  rng = np.random.default_rng(seed)
  n = 40
  labels = (rng.random(n) < 0.4).astype(float)
  weights = rng.choice([0.0, 0.5, 1.0, 2.0], n)
  preds = np.round(rng.random(n), 1)  # many ties
  assert paired_auc.weighted_auc(labels, weights, preds) == pytest.approx(
      _reference_auc(labels, weights, preds), abs=1e-12)


def test_bootstrap_of_identical_models_is_zero_and_order_free():
  rng = np.random.default_rng(3)
  n = 300
  labels = (rng.random(n) < 0.3).astype(float)
  weights = np.ones(n)
  base = labels * 0.4 + rng.random(n)
  same = paired_auc.bootstrap_auc_change(labels, weights, base, base)
  assert same.delta == 0.0 and same.upper_bound == 0.0 and same.examples == n
  cand = base + 0.5 * (rng.random(n) - 0.5)
  change = paired_auc.bootstrap_auc_change(labels, weights, cand, base)
  perm = rng.permutation(n)
  shuffled = paired_auc.bootstrap_auc_change(labels[perm], weights[perm], cand[perm],
                                             base[perm])
  assert change == shuffled
  assert change.upper_bound > change.delta


def test_bootstrap_bound_of_a_clearly_worse_model_is_negative():
  rng = np.random.default_rng(4)
  n = 300
  labels = (rng.random(n) < 0.3).astype(float)
  base = labels * 0.6 + rng.random(n)
  worse = paired_auc.bootstrap_auc_change(labels, np.ones(n), rng.random(n), base)
  assert worse.upper_bound < -0.1
  with pytest.raises(ValueError, match="replicas"):
    paired_auc.bootstrap_auc_change(labels, np.ones(n), base, base, replicas=0)


_N = 400


def _write_examples(path):
  """Labels, and the scores the toy models read: a baseline, a candidate that differs
  from it by noise only (skip head) and a degraded candidate (like head)."""
  import tensorflow as tf
  rng = np.random.default_rng(1)
  labels = (rng.random(_N) < 0.4).astype(np.float32)
  base = labels * 0.5 + rng.random(_N)
  cand_skip = base + 0.5 * (rng.random(_N) - 0.5)
  cand_like = base + 3.0 * rng.random(_N)
  # Heads output probabilities (TFMA's AUC buckets scores in [0, 1]); a monotonic map
  # keeps every AUC as it is.
  base, cand_skip, cand_like = (1 / (1 + np.exp(-(s - 1.0))) for s in (base, cand_skip,
                                                                         cand_like))
  with tf.io.TFRecordWriter(path) as w:
    for i in range(_N):
      ex = tf.train.Example()
      f = ex.features.feature
      for head in ("interest_skip", "interest_like"):
        f[head].float_list.value.append(labels[i])
        f[head + "_weight"].float_list.value.append(1.0)
      f["base"].float_list.value.append(base[i])
      f["cand_skip"].float_list.value.append(cand_skip[i])
      f["cand_like"].float_list.value.append(cand_like[i])
      f["user_segment"].bytes_list.value.append(b"casual" if i % 2 else b"heavy")
      f["context_activity"].bytes_list.value.append(b"commute")
      w.write(ex.SerializeToString())
  return labels, base, cand_skip


def _save_model(path, skip_key, like_key):
  import tensorflow as tf

  class Scores(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def score_examples(self, examples):
      spec = {k: tf.io.FixedLenFeature([], tf.float32) for k in {skip_key, like_key}}
      parsed = tf.io.parse_example(examples, spec)
      return {"interest_skip": parsed[skip_key], "interest_like": parsed[like_key]}

  module = Scores()
  tf.saved_model.save(module, path, signatures={
      "score_examples": module.score_examples.get_concrete_function()})


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
  """A TFMA run of Melody's eval config (interest heads) with a baseline model."""
  import tensorflow_model_analysis as tfma
  from pipeline import eval_config
  root = tmp_path_factory.mktemp("blessing")
  data = str(root / "eval.tfrecord")
  arrays = _write_examples(data)
  _save_model(str(root / "baseline"), "base", "base")
  _save_model(str(root / "candidate"), "cand_skip", "cand_like")
  config = eval_config.create_eval_config(
      {"interest_skip": "interest_skip", "interest_like": "interest_like"},
      eval_config.Floors(skip_auc=0.6, like_auc=0.6))
  config.model_specs[0].name = tfma.CANDIDATE_KEY
  baseline = config.model_specs.add()
  baseline.CopyFrom(config.model_specs[0])
  baseline.name, baseline.is_baseline = tfma.BASELINE_KEY, True
  models = [tfma.default_eval_shared_model(str(root / name), eval_config=config,
                                           model_name=name)
            for name in (tfma.CANDIDATE_KEY, tfma.BASELINE_KEY)]
  out = str(root / "evaluation")
  tfma.run_model_analysis(eval_shared_model=models, eval_config=config,
                          data_location=data, output_path=out)
  return out, arrays


def test_a_drop_within_noise_passes_and_a_clear_drop_fails_with_its_values(evaluation):
  from pipeline import eval_config, evaluation_results
  out, (labels, base, cand_skip) = evaluation
  values = evaluation_results.metrics(out)
  overall = lambda model, head: values[evaluation_results.MetricId(
      model, head, "overall", "auc")]
  # The skip candidate is below its baseline by more than the old fixed 0.002 ...
  skip_drop = overall("baseline", "interest_skip") - overall("candidate", "interest_skip")
  assert skip_drop > eval_config.AUC_DROP_TOLERANCE
  # ... but within what the paired bootstrap of 400 examples can tell from luck.
  change = paired_auc.bootstrap_auc_change(labels, np.ones(_N), cand_skip, base)
  assert change.upper_bound > -eval_config.AUC_DROP_TOLERANCE
  failures = evaluation_results.threshold_failures(out)
  assert len(failures) == 1, failures
  (like,) = failures
  assert like.startswith("interest_like auc (overall): candidate ")
  cand_like, base_like = (overall(m, "interest_like") for m in ("candidate", "baseline"))
  assert f"candidate {cand_like:.4f}, baseline {base_like:.4f}" in like
  assert f"change {cand_like - base_like:+.4f}" in like
  assert "upper 95% bound of the change -0." in like
  assert f">= -{eval_config.AUC_DROP_TOLERANCE:.4f}" in like
  assert "worse beyond noise" in like


def test_a_floor_failure_names_the_value_and_the_floor(evaluation):
  from tensorflow_model_analysis.proto import validation_result_pb2
  from pipeline import evaluation_results
  out, _ = evaluation
  failure = validation_result_pb2.ValidationFailure()
  failure.metric_key.name = "auc"
  failure.metric_key.output_name = "interest_skip"
  failure.metric_key.model_name = "candidate"
  failure.metric_value.double_value.value = 0.51
  failure.metric_threshold.value_threshold.lower_bound.value = 0.55
  values = evaluation_results.metrics(out)
  text = evaluation_results.describe_failure(failure, "overall", values)
  cand = values[evaluation_results.MetricId("candidate", "interest_skip", "overall", "auc")]
  base = values[evaluation_results.MetricId("baseline", "interest_skip", "overall", "auc")]
  assert text == (f"interest_skip auc (overall): candidate {cand:.4f}, "
                  f"baseline {base:.4f}; fails >= 0.5500")
  assert os.path.isdir(out)


def test_pairs_pack_rows_in_blocks_and_merge_in_any_split():
  rows = [(float(i % 2), 1.0, i / 10_000, (i * 7 % 10_000) / 10_000) for i in range(10_000)]
  whole = paired_auc._Pairs()  # pylint: disable=protected-access
  for row in rows:
    whole.add([row])
  assert len(whole.blocks) == 2 and len(whole.pending) == 10_000 - 2 * 4096
  first, second = paired_auc._Pairs(), paired_auc._Pairs()  # pylint: disable=protected-access
  first.add(rows[:3000])
  second.add(rows[3000:])
  first.extend(second)
  for a, b in zip(first.arrays(), whole.arrays()):
    np.testing.assert_array_equal(a, b)
  assert [a.tolist() for a in whole.arrays()] == [list(c) for c in zip(*rows)]
