"""The drift gate: a new span whose feature distributions moved too far from the span
before it stops the scheduled run.

TFDV's drift comparators do the comparing: the curated schema
(``pipeline/schema/schema.pbtxt``, written by ``pipeline.schema_tools``) gives each
watched categorical feature (segment, activity, surface) an L-infinity threshold on the
difference of its value shares, and each watched numeric feature (candidate duration and
popularity) a Jensen-Shannon threshold on its histograms. The gate reads those features
of both spans' examples, computes TFDV statistics in memory (the features are scalars
and a span is one day, so no Beam job is needed), validates the new span's statistics
against the schema with the older span's as ``previous_statistics``, and raises
:class:`DriftError` naming every drifted feature with its distance and threshold. It
runs before TFX starts, so nothing trains and the pushed model stays as it was.
"""

import glob
import os
from typing import Dict, List, Sequence

import pandas as pd

from features import example_io
from features import feature_spec
from pipeline import schema_tools

_MEASURES = {
    "COMPARATOR_L_INFTY_HIGH": "L-infinity distance",
    "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH": "Jensen-Shannon divergence",
}


class DriftError(RuntimeError):
  """A span drifted beyond a schema threshold."""


def watched_features(schema) -> List[str]:
  """Features of ``schema`` that carry a drift comparator."""
  return [f.name for f in schema.feature if f.HasField("drift_comparator")]


def span_frame(files: Sequence[str], features: Sequence[str]) -> pd.DataFrame:
  """The scalar ``features`` of every example in ``files`` as a frame."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = {k: v for k, v in feature_spec.raw_feature_spec().items() if k in features}
  columns: Dict[str, list] = {k: [] for k in spec}
  records = [r for path in files for r in example_io.iter_records(path)]
  for start in range(0, len(records), 4096):
    parsed = tf.io.parse_example(records[start:start + 4096], spec)
    for k, v in parsed.items():
      values = v.numpy().reshape(len(v), -1)[:, 0]
      columns[k].extend(x.decode() if isinstance(x, bytes) else x for x in values)
  return pd.DataFrame(columns)


def span_statistics(files: Sequence[str], features: Sequence[str]):
  """TFDV statistics of ``features`` over the examples of ``files``."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.generate_statistics_from_dataframe(span_frame(files, features))


def drifts(schema, current, previous) -> List[str]:
  """One line per feature whose drift from ``previous`` exceeds its schema threshold,
  e.g. ``feature 'context_activity': L-infinity distance 0.6120 > 0.3``."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
  return distance_lines(anomalies, "drift_measurements")


def distance_lines(anomalies, measurements: str) -> List[str]:
  """One line per feature of TFDV ``anomalies`` whose comparator distance exceeds its
  threshold, e.g. ``feature 'context_activity': L-infinity distance 0.6120 > 0.3``.

  Args:
    anomalies: TFDV's ``Anomalies``.
    measurements: ``drift_measurements`` or ``skew_measurements`` of its
      ``drift_skew_info``.
  """
  measured = {}
  for info in anomalies.drift_skew_info:
    name = info.path.step[-1] if info.path.step else ""
    for m in getattr(info, measurements):
      measured.setdefault(name, []).append((m.value, m.threshold))
  out = []
  for name, info in sorted(anomalies.anomaly_info.items()):
    for reason in info.reason:
      kind = _MEASURES.get(_reason_name(reason.type))
      if kind is None:
        continue
      values = [v for v, t in measured.get(name, []) if v > t]
      if values:
        threshold = next(t for v, t in measured[name] if v > t)
        out.append(f"feature '{name}': {kind} {values[0]:.4f} > {threshold:g}")
      else:
        out.append(f"feature '{name}': {reason.description}")
  return out


def _reason_name(reason_type: int) -> str:
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top
  return anomalies_pb2.AnomalyInfo.Type.Name(reason_type)


def check_spans(schema_path: str, current_dir: str, previous_dir: str) -> None:
  """Raises :class:`DriftError` when the span in ``current_dir`` drifted from the one
  in ``previous_dir`` (both ``examples/span-YYYYMMDD`` folders; train and eval files).
  """
  schema = schema_tools.read(schema_path)
  features = watched_features(schema)
  if not features:
    return
  stats = [span_statistics(sorted(glob.glob(os.path.join(d, "*.tfrecord.gz"))), features)
           for d in (current_dir, previous_dir)]
  found = drifts(schema, stats[0], stats[1])
  if found:
    current, previous = os.path.basename(current_dir), os.path.basename(previous_dir)
    raise DriftError(f"{current} drifted from {previous}: " + "; ".join(found))
