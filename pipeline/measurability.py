"""Which heads a dataset can measure, from its manifest, and how an unmeasurable metric reads.

A source that does not record a label (30Music has no like, completion or conversion),
or records it without both outcomes (30Music's skip proxy is 0 on every play; a small
eval split without a conversion), gives a head whose AUC or error means nothing. Such a
head is reported "not measurable" and leaves the blessing thresholds
(``pipeline.eval_config``): a model is never refused, or blessed, on an AUC of 0 that
only says there was no positive. The verdict comes from the label counts
``features.dataset_writer`` writes into ``manifest.json``; the display rules for a
metric of an evaluation come from the head's weighted example count and mean label. The
manifest also says whether the examples are next-play examples of a play-only log, which
are blessed on next-play ranking instead (``pipeline.next_play_eval``).
"""

import json
import os
from typing import Dict, Mapping, Optional

from features import feature_spec

NOT_RECORDED = "not recorded"
NO_POSITIVES = "no positives"
NO_NEGATIVES = "no negatives"
MANIFEST = "manifest.json"


def unmeasurable(manifest: Mapping[str, object]) -> Dict[str, str]:
  """Label key -> why its head is not measurable on this dataset ({} when all are).

  Args:
    manifest: a dataset's manifest (``label_counts``; an older manifest with only
      ``label_coverage`` gives "not recorded" for labels of coverage 0).
  """
  out = {}
  counts = manifest.get("label_counts") or {}
  coverage = manifest.get("label_coverage") or {}
  for label in feature_spec.LABEL_KEYS:
    c = counts.get(label)
    if c is None:
      if label in coverage and not coverage[label]:
        out[label] = NOT_RECORDED
      continue
    if not c["present"]:
      out[label] = NOT_RECORDED
    elif feature_spec.LABEL_KINDS[label] == feature_spec.BINARY:
      if not c["positive"]:
        out[label] = NO_POSITIVES
      elif c["positive"] >= c["present"]:
        out[label] = NO_NEGATIVES
  return out


def read_manifest(data_root: str) -> Dict[str, object]:
  """``data_root/manifest.json`` ({} without one, or on a remote filesystem)."""
  data_root = str(data_root)
  path = os.path.join(data_root, MANIFEST)
  if "://" in data_root or not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def from_data_root(data_root: str) -> Dict[str, str]:
  """:func:`unmeasurable` of ``data_root/manifest.json`` ({} without a manifest)."""
  return unmeasurable(read_manifest(data_root))


def is_next_play(data_root: str) -> bool:
  """True when the dataset's examples are next-play examples with sampled negatives
  (a play-only log, ``features.sampled_negatives``): it is evaluated by ranking held-out
  plays (``pipeline.next_play_eval``), not by TFMA thresholds."""
  return bool(read_manifest(data_root).get("next_play"))


def display(metric: str, value: Optional[float], weighted_count: Optional[float],
            mean_label: Optional[float]) -> str:
  """How one metric of a head reads in a table.

  "not measurable" when the head's examples all weigh 0 (the label is not recorded);
  an AUC over labels of one class is "n/a (no positives)" or "n/a (no negatives)"
  instead of the 0 or 1 TFMA computes; otherwise the value with 4 decimals.
  """
  if value is None:
    return "-"
  if weighted_count is not None and weighted_count <= 0:
    return "not measurable"
  if metric == "auc" and mean_label is not None:
    if mean_label <= 0:
      return "n/a (no positives)"
    if mean_label >= 1:
      return "n/a (no negatives)"
  return f"{value:.4f}"
