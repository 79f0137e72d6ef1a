"""A noise-aware AUC comparison of a candidate against the baseline, as a TFMA metric.

Two models scored on the same eval split differ by ``delta = AUC(candidate) -
AUC(baseline)``, and part of that difference is the luck of the split. A paired
bootstrap measures how much: each replica re-weights every example by a Poisson(1) draw
(the same draw for both models, so the comparison stays paired), recomputes both AUCs
and their difference. The metric reports the one-sided upper confidence bound of
``delta`` over the replicas: a bound below ``-tolerance`` means the candidate is worse
than the baseline by more than the tolerance even in the split's most favourable
readings, i.e. worse beyond noise. ``pipeline.eval_config`` gates the blessing on it
with a TFMA change threshold, so the Evaluator's own ``ModelBlessing`` carries the
decision and ``LatestBlessedModelStrategy`` works unchanged.

The metric exists only when the Evaluator has a baseline (TFMA drops change thresholds
and this computation on a first run). AUCs here are exact (Mann-Whitney, ties count
one half) and weighted by the label weight, as TFMA's ``AUC`` is.
"""

from typing import Iterable, List, NamedTuple, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util
from tensorflow_model_analysis.utils import model_util

METRIC_NAME = "auc_change_upper_bound"


class AucChange(NamedTuple):
  """The paired comparison of two models' AUCs on one eval split."""
  candidate: float
  baseline: float
  delta: float          # candidate - baseline on the whole split
  upper_bound: float    # one-sided upper confidence bound of delta
  examples: int


def _groups(predictions: np.ndarray):
  """Tie groups in ascending prediction order: (group id per example, group count)."""
  _, inverse = np.unique(predictions, return_inverse=True)
  inverse = inverse.ravel()
  return inverse, (int(inverse.max()) + 1 if inverse.size else 0)


def _grouped_auc(group: np.ndarray, n_groups: int, pos_w: np.ndarray,
                 neg_w: np.ndarray) -> float:
  pos = np.bincount(group, pos_w, n_groups)
  neg = np.bincount(group, neg_w, n_groups)
  total = pos.sum() * neg.sum()
  if total <= 0:
    return float("nan")
  neg_below = np.cumsum(neg) - neg
  return float(np.sum(pos * (neg_below + 0.5 * neg)) / total)


def weighted_auc(labels, weights, predictions) -> float:
  """Exact weighted ROC AUC; a label in (0, 1) counts as that fraction positive.

  Returns:
    The AUC, or NaN when either class has no weight.
  """
  labels = np.clip(np.asarray(labels, np.float64).ravel(), 0.0, 1.0)
  weights = np.asarray(weights, np.float64).ravel()
  group, n_groups = _groups(np.asarray(predictions, np.float64))
  return _grouped_auc(group, n_groups, weights * labels, weights * (1.0 - labels))


def bootstrap_auc_change(labels, weights, candidate, baseline, replicas: int = 200,
                         confidence: float = 0.95, seed: int = 0) -> AucChange:
  """Paired Poisson bootstrap of ``AUC(candidate) - AUC(baseline)``.

  The examples are put in a canonical order first, so the result does not depend on
  the order in which Beam delivered them.

  Args:
    labels, weights, candidate, baseline: one value per example.
    replicas: bootstrap replicas.
    confidence: one-sided confidence of the upper bound (0.95: the 95th percentile).
    seed: random seed of the Poisson draws.

  Returns:
    Both AUCs, their difference and its upper bound (NaN when a class is empty).
  """
  if replicas <= 0:
    raise ValueError(f"replicas must be positive, got {replicas}")
  if not 0.5 <= confidence < 1.0:
    raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
  arrays = [np.asarray(a, np.float64).ravel() for a in (labels, weights, candidate, baseline)]
  if len({a.size for a in arrays}) != 1:
    raise ValueError(f"arrays differ in length: {[a.size for a in arrays]}")
  keep = arrays[1] > 0
  labels, weights, candidate, baseline = (a[keep] for a in arrays)
  order = np.lexsort((baseline, candidate, weights, labels))
  labels, weights, candidate, baseline = (a[order] for a in (labels, weights, candidate,
                                                              baseline))
  labels = np.clip(labels, 0.0, 1.0)
  cand_groups, base_groups = _groups(candidate), _groups(baseline)

  def aucs(w):
    pos_w, neg_w = w * labels, w * (1.0 - labels)
    return (_grouped_auc(*cand_groups, pos_w, neg_w),
            _grouped_auc(*base_groups, pos_w, neg_w))

  auc_c, auc_b = aucs(weights)
  rng = np.random.default_rng(seed)
  deltas = np.empty(replicas)
  for r in range(replicas):
    c, b = aucs(weights * rng.poisson(1.0, labels.size))
    deltas[r] = c - b
  deltas = deltas[np.isfinite(deltas)]
  upper = float(np.quantile(deltas, confidence)) if deltas.size else float("nan")
  return AucChange(auc_c, auc_b, auc_c - auc_b, upper, int(labels.size))


class _Pairs:
  """Per-example (label, weight, candidate, baseline) rows of one slice.

  Rows arrive one example at a time; they are kept as small Python lists and packed
  into float64 blocks every ``_BLOCK`` rows, so a large eval split costs 32 bytes per
  example rather than four Python objects.
  """

  _BLOCK = 4096

  def __init__(self):
    self.blocks: List[np.ndarray] = []
    self.pending: List[Tuple[float, float, float, float]] = []

  def add(self, rows) -> None:
    self.pending.extend(rows)
    if len(self.pending) >= self._BLOCK:
      self.compact()

  def compact(self) -> None:
    if self.pending:
      self.blocks.append(np.asarray(self.pending, np.float64).reshape(-1, 4))
      self.pending = []

  def extend(self, other: "_Pairs") -> None:
    self.compact()
    other.compact()
    self.blocks.extend(other.blocks)

  def arrays(self) -> List[np.ndarray]:
    self.compact()
    rows = np.concatenate(self.blocks) if self.blocks else np.zeros((0, 4))
    return [rows[:, i] for i in range(4)]


class _PairedAucCombiner(beam.CombineFn):
  """Collects (label, weight, candidate, baseline) per example; bootstraps at the end."""

  def __init__(self, key: metric_types.MetricKey, eval_config, baseline_model_name: str,
               replicas: int, confidence: float, seed: int):
    self._key = key
    self._eval_config = eval_config
    self._baseline = baseline_model_name
    self._replicas = replicas
    self._confidence = confidence
    self._seed = seed

  def _values(self, element, model_name: str):
    return next(metric_util.to_label_prediction_example_weight(
        element, eval_config=self._eval_config, model_name=model_name,
        output_name=self._key.output_name, sub_key=self._key.sub_key,
        example_weighted=self._key.example_weighted, flatten=False, squeeze=False))

  def create_accumulator(self) -> _Pairs:
    return _Pairs()

  def add_input(self, accumulator: _Pairs, element) -> _Pairs:
    label, cand, weight = self._values(element, self._key.model_name)
    _, base, _ = self._values(element, self._baseline)
    label = np.asarray(label, np.float64).ravel()
    weight = np.broadcast_to(np.asarray(weight, np.float64).ravel(), label.shape)
    accumulator.add(zip(label.tolist(), weight.tolist(),
                        np.asarray(cand, np.float64).ravel().tolist(),
                        np.asarray(base, np.float64).ravel().tolist()))
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[_Pairs]) -> _Pairs:
    accumulators = iter(accumulators)
    result = next(accumulators)
    for other in accumulators:
      result.extend(other)
    return result

  def compact(self, accumulator: _Pairs) -> _Pairs:
    accumulator.compact()
    return accumulator

  def extract_output(self, accumulator: _Pairs):
    change = bootstrap_auc_change(*accumulator.arrays(), replicas=self._replicas,
                                  confidence=self._confidence, seed=self._seed)
    return {self._key: change.upper_bound}


def _computations(name: str, eval_config=None, model_names: Optional[List[str]] = None,
                  output_names: Optional[List[str]] = None, sub_keys=None,
                  aggregation_type=None, example_weighted: bool = False,
                  replicas: int = 200, confidence: float = 0.95,
                  seed: int = 0) -> metric_types.MetricComputations:
  baseline_spec = model_util.get_baseline_model_spec(eval_config)
  if baseline_spec is None:
    return []  # a first run has nothing to compare against
  computations = []
  for model_name in model_names or [""]:
    if model_name == baseline_spec.name:
      continue
    for output_name in output_names or [""]:
      for sub_key in sub_keys or [None]:
        key = metric_types.MetricKey(
            name=name, model_name=model_name, output_name=output_name, sub_key=sub_key,
            aggregation_type=aggregation_type, example_weighted=example_weighted,
            is_diff=True)
        computations.append(metric_types.MetricComputation(
            keys=[key], preprocessors=None,
            combiner=_PairedAucCombiner(key, eval_config, baseline_spec.name, replicas,
                                        confidence, seed)))
  return computations


class PairedAUCChange(metric_types.Metric):
  """Upper confidence bound of ``AUC(candidate) - AUC(baseline)`` (paired bootstrap).

  Gate it with a change threshold, e.g. ``absolute: -0.002, HIGHER_IS_BETTER``: the
  candidate fails only when even this bound is below -0.002.

  Args:
    name: metric name.
    replicas: bootstrap replicas.
    confidence: one-sided confidence of the bound.
    seed: seed of the bootstrap draws (results are reproducible).
  """

  def __init__(self, name: str = METRIC_NAME, replicas: int = 200,
               confidence: float = 0.95, seed: int = 0):
    super().__init__(_computations, name=name, replicas=replicas, confidence=confidence,
                     seed=seed)

  @property
  def compute_confidence_interval(self) -> bool:
    return False  # it is already an interval bound
