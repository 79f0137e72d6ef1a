"""Heads a dataset cannot measure: the verdict from the manifest's label counts, the
eval config that drops their thresholds, and how their metrics read in the tables."""

from features import feature_spec
from pipeline import eval_config
from pipeline import measurability
from pipeline import runs

# The label counts `melody data examples` writes for the 30Music slices.
THIRTY_MUSIC = {"label_counts": {
    "interest_completion": {"present": 0, "positive": 0},
    "interest_skip": {"present": 108823, "positive": 0},
    "interest_like": {"present": 0, "positive": 0},
    "subscription": {"present": 0, "positive": 0},
    "exposure": {"present": 0, "positive": 0}}}


def test_verdict_from_label_counts():
  assert measurability.unmeasurable(THIRTY_MUSIC) == {
      "interest_completion": "not recorded", "interest_skip": "no positives",
      "interest_like": "not recorded", "subscription": "not recorded",
      "exposure": "not recorded"}
  both = {"label_counts": {"interest_like": {"present": 10, "positive": 10},
                           "interest_skip": {"present": 10, "positive": 3},
                           "exposure": {"present": 10, "positive": 0}}}
  # A regression head needs values, not two classes; a binary one needs both classes.
  assert measurability.unmeasurable(both) == {"interest_like": "no negatives"}
  # Older manifests carry coverage only.
  assert measurability.unmeasurable({"label_coverage": {"subscription": 0.0,
                                                        "interest_like": 0.8}}) == {
      "subscription": "not recorded"}


def _thresholds(config, label):
  spec = next(s for s in config.metrics_specs if s.output_names == [label])
  return {m.class_name for m in spec.metrics if m.per_slice_thresholds}


def test_unmeasured_heads_are_reported_without_thresholds():
  gated = eval_config.create_eval_config()
  assert _thresholds(gated, "interest_skip") == {"ExampleCount", "AUC", "PairedAUCChange"}
  assert _thresholds(gated, "interest_completion") == {"RootMeanSquaredError", "Calibration"}
  config = eval_config.create_eval_config(unmeasured=["interest_skip", "interest_completion"])
  for label in ("interest_completion", "interest_skip"):
    assert _thresholds(config, label) == set(), label
  # The non-empty eval split gate (a weighted count) sits on the first measured head.
  assert _thresholds(config, "interest_like") == {"ExampleCount", "AUC", "PairedAUCChange"}
  # With no measured head it is the only gate, on the first head.
  nothing = eval_config.create_eval_config(unmeasured=list(feature_spec.LABEL_KEYS))
  assert _thresholds(nothing, "interest_skip") == {"ExampleCount"}
  assert sum(len(_thresholds(nothing, label)) for label in feature_spec.LABEL_KEYS) == 1
  names = {m.class_name for s in config.metrics_specs for m in s.metrics
           if s.output_names == ["interest_skip"]}
  assert {"AUC", "MeanLabel", "WeightedExampleCount"} <= names
  assert len(config.metrics_specs) == len(feature_spec.LABEL_KEYS)


def test_tables_say_why_an_auc_is_missing():
  metrics = {("subscription", "overall", "auc"): 0.0,
             ("subscription", "overall", "mean_label"): 0.0,
             ("subscription", "overall", "weighted_example_count"): 507.0,
             ("interest_like", "overall", "auc"): 0.0,
             ("interest_like", "overall", "weighted_example_count"): 0.0,
             ("interest_skip", "overall", "auc"): 0.81234,
             ("interest_skip", "overall", "mean_label"): 0.4,
             ("interest_skip", "overall", "weighted_example_count"): 507.0}
  run = runs.RunSummary("r1", 0.0, [], metrics=metrics)
  table = runs.format_runs([run])
  assert "n/a (no positives)" in table and "not measurable" in table and "0.8123" in table
  assert "0.0000" not in table
  lines = {tuple(line.split()[:3]): line.rstrip()
           for line in runs.format_slices(run).splitlines()}
  assert lines[("subscription", "overall", "auc")].endswith("n/a (no positives)")
  assert lines[("interest_like", "overall", "auc")].endswith("not measurable")
