"""Reads an Evaluator (TFMA) output: the metrics per model, head and slice, and why a
model was not blessed.

A ``ModelEvaluation`` artifact holds TFMA's ``metrics``, ``validations`` and
``eval_config.json``. :func:`metrics` returns the candidate's (and the baseline's)
values; :func:`threshold_failures` turns every failed threshold into one sentence with
the candidate's value, the baseline's value and the threshold, e.g.

  interest_like auc (overall): candidate 0.5120, baseline 0.6075, change -0.0955;
  upper 95% bound of the change -0.0712 is below the allowed -0.0020 (worse beyond
  noise)
"""

import json
import os
from typing import Dict, List, NamedTuple, Optional

from tensorflow_model_analysis.proto import config_pb2

from pipeline import paired_auc

CANDIDATE = "candidate"
BASELINE = "baseline"
OVERALL = "overall"


class MetricId(NamedTuple):
  model: str    # CANDIDATE or BASELINE
  output: str   # head
  slice: str    # OVERALL or "feature=value"
  metric: str


def slice_name(slice_key) -> str:
  """'overall' or 'feature=value[,feature=value]' for a TFMA ``SliceKey`` proto."""
  parts = []
  for k in slice_key.single_slice_keys:
    kind = k.WhichOneof("kind")
    value = getattr(k, kind) if kind else ""
    parts.append(f"{k.column}={value.decode() if isinstance(value, bytes) else value}")
  return ",".join(parts) or OVERALL


def _model(model_name: str) -> str:
  # A first run has one model, named ''; with a baseline they are candidate/baseline.
  return BASELINE if model_name == BASELINE else CANDIDATE


def metrics(uri: str) -> Dict[MetricId, float]:
  """Every scalar metric (not the differences) of both models in an evaluation."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  out = {}
  try:
    results = list(tfma.load_metrics(uri))
  except Exception:  # pylint: disable=broad-except
    return out  # an evaluation without metrics (failed or still running)
  for mfs in results:
    name = slice_name(mfs.slice_key)
    for kv in mfs.metric_keys_and_values:
      if kv.key.is_diff or not kv.value.HasField("double_value"):
        continue
      out[MetricId(_model(kv.key.model_name), kv.key.output_name, name, kv.key.name)] = (
          kv.value.double_value.value)
  return out


def _bound_confidence(uri: str) -> Optional[float]:
  """The confidence of the paired AUC bound in this evaluation's config."""
  try:
    with open(os.path.join(uri, "eval_config.json"), encoding="utf-8") as f:
      config = json.load(f)["evalConfig"]
  except (OSError, ValueError, KeyError):
    return None
  for spec in config.get("metricsSpecs", []):
    for metric in spec.get("metrics", []):
      if metric.get("className") == paired_auc.PairedAUCChange.__name__:
        return json.loads(metric.get("config") or "{}").get("confidence")
  return None


def _rule(threshold) -> str:
  if threshold.HasField("value_threshold"):
    t = threshold.value_threshold
    bounds = []
    if t.HasField("lower_bound"):
      bounds.append(f">= {t.lower_bound.value:.4f}")
    if t.HasField("upper_bound"):
      bounds.append(f"<= {t.upper_bound.value:.4f}")
    return " and ".join(bounds) or "(no bound)"
  t = threshold.change_threshold
  op = "<=" if t.direction == config_pb2.MetricDirection.LOWER_IS_BETTER else ">="
  rules = []
  if t.HasField("absolute"):
    rules.append(f"{op} {t.absolute.value:+.4f}")
  if t.HasField("relative"):
    rules.append(f"{op} {t.relative.value:+.2%} relative")
  return " and ".join(rules)


def _fmt(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{value:.4f}"


def describe_failure(failure, slice_: str, values: Dict[MetricId, float],
                     confidence: Optional[float] = None) -> str:
  """One sentence for a TFMA ``ValidationFailure``: both models' values and the rule."""
  key = failure.metric_key
  bound = key.name == paired_auc.METRIC_NAME
  shown = "auc" if bound else key.name
  candidate = values.get(MetricId(CANDIDATE, key.output_name, slice_, shown))
  baseline = values.get(MetricId(BASELINE, key.output_name, slice_, shown))
  head = f"{key.output_name} {shown} ({slice_}): candidate {_fmt(candidate)}"
  if baseline is not None:
    head += f", baseline {_fmt(baseline)}"
  if not failure.metric_value.HasField("double_value"):
    return f"{head}; {key.name} was not computed ({failure.message.strip() or 'no value'})"
  value = failure.metric_value.double_value.value
  rule = _rule(failure.metric_threshold)
  if bound:
    change = "" if None in (candidate, baseline) else f", change {candidate - baseline:+.4f}"
    level = f"{confidence:.0%} " if confidence else ""
    return (f"{head}{change}; upper {level}bound of the change {value:+.4f} fails "
            f"{rule} (worse beyond noise)")
  if key.is_diff:
    return f"{head}; change {value:+.4f} fails {rule}"
  return f"{head}; fails {rule}"


def threshold_failures(uri: str) -> List[str]:
  """Every failed threshold of an evaluation, one sentence each ([] if it passed)."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  try:
    result = tfma.load_validation_result(uri)
  except Exception:  # pylint: disable=broad-except
    return []  # no validation was written (failed or still running)
  if result.validation_ok:
    return []
  values = metrics(uri)
  confidence = _bound_confidence(uri)
  out = []
  for per_slice in result.metric_validations_per_slice:
    name = slice_name(per_slice.slice_key)
    out.extend(describe_failure(f, name, values, confidence) for f in per_slice.failures)
  out.extend(f"slice {slice_name(s)} is missing from the evaluation"
             for s in result.missing_slices)
  return out
