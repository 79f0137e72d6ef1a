"""TFMA evaluation of Melody's ranker, per head, sliced, with blessing thresholds.

Per head, by the label's kind (``feature_spec.LABEL_KINDS``): AUC for the binary heads
(skip, like, subscription), RMSE and calibration (mean prediction / mean label) for the
bounded regression (completion), mean absolute error for the non-negative regression
(exposure); every head weighted by its label weight so that a missing label counts for
nothing. Slices:
overall, by user segment, by context activity. A model is blessed only when every
absolute floor holds and neither interest AUC is worse than the last blessed model's
beyond noise: the paired bootstrap bound of the AUC change (``pipeline.paired_auc``)
must not fall below minus the drop tolerance (``Floors.auc_drop_tolerance``, by default
``AUC_DROP_TOLERANCE``). A drop the eval split cannot tell from luck does not block a
scheduled push; a clear drop does. A head the data cannot measure
(``pipeline.measurability``: its label is not recorded, or has one class only) is
reported and never gated.
"""

import dataclasses
import json
from typing import Dict, Iterable, List, Optional

from tensorflow_model_analysis.proto import config_pb2 as tfma

from features import feature_spec
from pipeline import paired_auc

# The largest AUC drop that does not matter even when it is real; the candidate fails
# only when the upper confidence bound of its paired AUC change is below -tolerance.
AUC_DROP_TOLERANCE = 0.002
AUC_CHANGE_CONFIDENCE = 0.95
AUC_CHANGE_REPLICAS = 200
INTEREST_TASK = "interest"
_KIND_ORDER = (feature_spec.BINARY, feature_spec.BOUNDED, feature_spec.NONNEG)
SLICE_FEATURES = ("user_segment", "context_activity")
# The exported model's raw tf.Example signature (serving_default is the dense `rank`).
SIGNATURE = "score_examples"


@dataclasses.dataclass(frozen=True)
class Floors:
  """The thresholds a model must meet to be blessed.

  Absolute floors and ceilings, and ``auc_drop_tolerance``: the largest interest-AUC
  drop against the last blessed model that does not matter even when it is real. The
  bootstrap bound accounts for the eval split's sampling noise, not for the spread of
  two training runs; a schedule whose models are far from convergence (a few dozen
  steps) moves by more than the default between runs, and sets a wider tolerance.
  """
  skip_auc: float = 0.55
  like_auc: float = 0.55
  # Conversions are rare (a few per thousand listeners a day in the simulator, as in real
  # freemium funnels), so a small eval split may hold none and its AUC is undefined.
  # Local runs therefore report subscription AUC without a floor; the scheduled
  # production build sets one (pipeline/kubeflow_v2_runner.py).
  subscription_auc: Optional[float] = None
  completion_rmse: Optional[float] = 0.45
  calibration_low: Optional[float] = 0.75
  calibration_high: Optional[float] = 1.33
  auc_drop_tolerance: float = AUC_DROP_TOLERANCE

  def __post_init__(self):
    if not 0 <= self.auc_drop_tolerance < 1:
      raise ValueError(f"auc_drop_tolerance must be in [0, 1), got {self.auc_drop_tolerance}")


def _metric(class_name: str, threshold: Optional[tfma.MetricThreshold] = None
            ) -> tfma.MetricConfig:
  """A metric whose threshold (if any) gates the overall slice only.

  The slices (segment, activity) are reported, not gated: a small segment's AUC over a
  few dozen examples is noise, and a floor on it would block good models at random.
  """
  if threshold is None:
    return tfma.MetricConfig(class_name=class_name)
  return tfma.MetricConfig(class_name=class_name, per_slice_thresholds=[
      tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)])


def _bounds(lower: Optional[float] = None, upper: Optional[float] = None
            ) -> tfma.MetricThreshold:
  value = tfma.GenericValueThreshold()
  if lower is not None:
    value.lower_bound.value = lower
  if upper is not None:
    value.upper_bound.value = upper
  return tfma.MetricThreshold(value_threshold=value)


def _auc(floor: Optional[float]) -> tfma.MetricConfig:
  return _metric("AUC", None if floor is None else _bounds(lower=floor))


def _auc_change(tolerance: float) -> tfma.MetricConfig:
  """The noise-aware change gate: bootstrap bound of AUC(candidate) - AUC(baseline).

  A change threshold, so TFMA drops it (and the computation) when there is no
  baseline yet.
  """
  config = tfma.MetricConfig(
      class_name=paired_auc.PairedAUCChange.__name__, module=paired_auc.__name__,
      config=json.dumps({"name": paired_auc.METRIC_NAME, "replicas": AUC_CHANGE_REPLICAS,
                         "confidence": AUC_CHANGE_CONFIDENCE, "seed": 0}))
  threshold = tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
      direction=tfma.MetricDirection.HIGHER_IS_BETTER,
      absolute={"value": -tolerance}))
  config.per_slice_thresholds.append(
      tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold))
  return config


def _label_metrics(label: str, floors: Floors, gated: bool = True,
                   count_floor: bool = False) -> List[tfma.MetricConfig]:
  """The TFMA metrics of one label, chosen by its kind (``feature_spec.LABEL_KINDS``).

  Every head also reports its weighted example count (0: the label is not recorded)
  and, when binary, its mean label (0 or 1: an AUC over one class), which is how a
  table tells "not measurable" and "n/a (no positives)" from a value. ``gated=False``
  (a head the data cannot measure, ``pipeline.measurability``) reports the metrics
  without any threshold. ``count_floor`` gates its example count at 1 or more.
  """
  kind = feature_spec.LABEL_KINDS[label]
  counts = [_metric("ExampleCount", _bounds(lower=1) if count_floor else None),
            _metric("WeightedExampleCount")]
  if not gated:
    floors = dataclasses.replace(
        floors, skip_auc=None, like_auc=None, subscription_auc=None, completion_rmse=None,
        calibration_low=None, calibration_high=None)
  if kind == feature_spec.BINARY:
    auc_floors = {"interest_skip": floors.skip_auc, "interest_like": floors.like_auc,
                  "subscription": floors.subscription_auc}
    metrics = counts + [_metric("MeanLabel"), _auc(auc_floors.get(label))]
    if label in feature_spec.TASKS[INTEREST_TASK] and auc_floors.get(label) is not None:
      metrics.append(_auc_change(floors.auc_drop_tolerance))
    return metrics
  if kind == feature_spec.BOUNDED:
    if floors.completion_rmse is None:
      return counts + [_metric("RootMeanSquaredError"), _metric("Calibration")]
    return counts + [
        _metric("RootMeanSquaredError", _bounds(upper=floors.completion_rmse)),
        _metric("Calibration", _bounds(lower=floors.calibration_low,
                                       upper=floors.calibration_high))]
  return counts + [_metric("MeanAbsoluteError")]


def create_eval_config(outputs: Optional[Dict[str, str]] = None,
                       floors: Floors = Floors(),
                       unmeasured: Iterable[str] = ()) -> tfma.EvalConfig:
  """Builds the EvalConfig.

  Args:
    outputs: model output name -> label key; default: each label key names its output.
    floors: absolute thresholds.
    unmeasured: label keys the data cannot measure (``pipeline.measurability``):
      reported, never gated.
  """
  unmeasured = set(unmeasured)
  outputs = dict(outputs or {k: k for k in feature_spec.LABEL_KEYS})
  unknown = sorted(set(outputs.values()) - set(feature_spec.LABEL_KEYS))
  if unknown:
    raise ValueError(f"unknown label keys in outputs: {unknown}")
  by_label = {label: out for out, label in outputs.items()}
  # Classifications first, then the regressions, each in LABEL_KEYS order.
  labels = sorted((k for k in feature_spec.LABEL_KEYS if k in by_label),
                  key=lambda k: _KIND_ORDER.index(feature_spec.LABEL_KINDS[k]))
  # An empty eval split never blesses. It is also the one gate left when the data can
  # measure no head (a play log without labels): TFMA refuses a config without any
  # threshold, so the gate keeps such a run checkable rather than never blessed. The
  # count is weighted, so it sits on a measured head: an unrecorded one counts 0.
  counted = next((label for label in labels if label not in unmeasured), labels[0])
  specs = [tfma.MetricsSpec(output_names=[by_label[label]],
                            metrics=_label_metrics(label, floors, label not in unmeasured,
                                                   count_floor=label == counted))
           for label in labels]

  model_spec = tfma.ModelSpec(
      signature_name=SIGNATURE,
      label_keys={out: label for out, label in outputs.items()},
      example_weight_keys={out: feature_spec.weight_key(label) for out, label in outputs.items()})
  slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES]
  return tfma.EvalConfig(model_specs=[model_spec], slicing_specs=slicing, metrics_specs=specs)
