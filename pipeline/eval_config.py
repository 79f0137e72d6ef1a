"""TFMA evaluation of Melody's ranker, per head, sliced, with blessing thresholds.

Per head, by the label's kind (``feature_spec.LABEL_KINDS``): AUC for the binary heads
(skip, like, subscription), RMSE and calibration (mean prediction / mean label) for the
bounded regression (completion), mean absolute error for the non-negative regression
(exposure); every head weighted by its label weight so that a missing label counts for
nothing. Slices:
overall, by user segment, by context activity. A model is blessed only when every
absolute floor holds and the interest AUCs drop by at most ``MAX_INTEREST_AUC_DROP``
against the last blessed model.
"""

import dataclasses
from typing import Dict, List, Optional

from tensorflow_model_analysis.proto import config_pb2 as tfma

from features import feature_spec

MAX_INTEREST_AUC_DROP = 0.002
INTEREST_TASK = "interest"
_KIND_ORDER = (feature_spec.BINARY, feature_spec.BOUNDED, feature_spec.NONNEG)
SLICE_FEATURES = ("user_segment", "context_activity")
# The exported model's raw tf.Example signature (serving_default is the dense `rank`).
SIGNATURE = "score_examples"


@dataclasses.dataclass(frozen=True)
class Floors:
  """Absolute floors/ceilings a model must meet to be blessed."""
  skip_auc: float = 0.55
  like_auc: float = 0.55
  # Conversions are rare (a few per thousand listeners a day in the simulator, as in real
  # freemium funnels), so a small eval split may hold none and its AUC is undefined.
  # Local runs therefore report subscription AUC without a floor; the scheduled
  # production build sets one (pipeline/kubeflow_v2_runner.py).
  subscription_auc: Optional[float] = None
  completion_rmse: float = 0.45
  calibration_low: float = 0.75
  calibration_high: float = 1.33


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


def _auc(floor: Optional[float], interest: bool) -> tfma.MetricConfig:
  if floor is None:
    return _metric("AUC")
  threshold = _bounds(lower=floor)
  if interest:
    threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
        absolute={"value": -MAX_INTEREST_AUC_DROP}))
  return _metric("AUC", threshold)


def _label_metrics(label: str, floors: Floors) -> List[tfma.MetricConfig]:
  """The TFMA metrics of one label, chosen by its kind (``feature_spec.LABEL_KINDS``)."""
  kind = feature_spec.LABEL_KINDS[label]
  count = _metric("ExampleCount")
  if kind == feature_spec.BINARY:
    auc_floors = {"interest_skip": floors.skip_auc, "interest_like": floors.like_auc,
                  "subscription": floors.subscription_auc}
    return [count, _auc(auc_floors.get(label),
                        interest=label in feature_spec.TASKS[INTEREST_TASK])]
  if kind == feature_spec.BOUNDED:
    return [count,
            _metric("RootMeanSquaredError", _bounds(upper=floors.completion_rmse)),
            _metric("Calibration", _bounds(lower=floors.calibration_low,
                                           upper=floors.calibration_high))]
  return [count, _metric("MeanAbsoluteError")]


def create_eval_config(outputs: Optional[Dict[str, str]] = None,
                       floors: Floors = Floors()) -> tfma.EvalConfig:
  """Builds the EvalConfig.

  Args:
    outputs: model output name -> label key; default: each label key names its output.
    floors: absolute thresholds.
  """
  outputs = dict(outputs or {k: k for k in feature_spec.LABEL_KEYS})
  unknown = sorted(set(outputs.values()) - set(feature_spec.LABEL_KEYS))
  if unknown:
    raise ValueError(f"unknown label keys in outputs: {unknown}")
  by_label = {label: out for out, label in outputs.items()}
  # Classifications first, then the regressions, each in LABEL_KEYS order.
  labels = sorted((k for k in feature_spec.LABEL_KEYS if k in by_label),
                  key=lambda k: _KIND_ORDER.index(feature_spec.LABEL_KINDS[k]))
  specs = [tfma.MetricsSpec(output_names=[by_label[label]],
                            metrics=_label_metrics(label, floors)) for label in labels]

  model_spec = tfma.ModelSpec(
      signature_name=SIGNATURE,
      label_keys={out: label for out, label in outputs.items()},
      example_weight_keys={out: feature_spec.weight_key(label) for out, label in outputs.items()})
  slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES]
  return tfma.EvalConfig(model_specs=[model_spec], slicing_specs=slicing, metrics_specs=specs)
