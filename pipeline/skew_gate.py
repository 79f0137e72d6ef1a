"""The training/serving skew gate: the features of logged serving requests against the
training span.

``melody serve --request-log FILE`` (``serving.request_log``) writes the inputs of every
answered request. Given that log (``melody pipeline run --serving-log FILE``), this gate
rebuilds from it the features the drift gate watches: the listener's segment, activity
and surface come with each request; the candidates' duration and popularity are looked
up in the data's catalogue by the requested ``candidate_ids``, as the serving graph
does. TFDV's skew comparators then compare them with the span's examples: the curated
schema (``pipeline.schema_tools``) gives each feature its ``skew_comparator`` threshold
(L-infinity for categorical features, Jensen-Shannon for numeric ones), and
:class:`SkewError` names every skewed feature with its distance and threshold. The gate
runs before TFX starts, so nothing trains and the pushed model stays as it was.
"""

import glob
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
import pandas as pd

from pipeline import configs
from pipeline import drift_gate
from pipeline import schema_tools

CANDIDATE_FEATURES = ("cand_duration_s", "cand_popularity")


class SkewError(RuntimeError):
  """Serving requests differ from the training span beyond a schema threshold."""


def watched_features(schema) -> List[str]:
  """Features of ``schema`` that carry a skew comparator."""
  return [f.name for f in schema.feature if f.HasField("skew_comparator")]


def _scalars(value) -> list:
  return list(np.asarray(value, dtype=object).reshape(-1))


def serving_frame(requests: Sequence[Dict[str, object]], features: Sequence[str],
                  catalog: pd.DataFrame) -> Dict[str, pd.DataFrame]:
  """The watched features of logged requests: one frame of listener features (a row
  per listener of a request) and one of candidate features (a row per candidate id
  found in ``catalog``, a frame indexed by ``track_id`` with ``duration_s`` and
  ``popularity``)."""
  listener = [f for f in features if f not in CANDIDATE_FEATURES]
  candidate = [f for f in features if f in CANDIDATE_FEATURES]
  rows = {f: [] for f in listener}
  ids = []
  for request in requests:
    inputs = request.get("inputs", {})
    if listener and all(f in inputs for f in listener):
      for f in listener:
        rows[f].extend(str(v) for v in _scalars(inputs[f]))
    if candidate and "candidate_ids" in inputs:
      ids.extend(str(v) for v in _scalars(inputs["candidate_ids"]) if str(v))
  found = catalog.reindex([i for i in ids if i in catalog.index])
  columns = {"cand_duration_s": "duration_s", "cand_popularity": "popularity"}
  cands = pd.DataFrame({f: found[columns[f]].astype("float64").fillna(0.0).to_numpy()
                        for f in candidate})
  return {"listener": pd.DataFrame(rows), "candidate": cands}


def _statistics(frame: pd.DataFrame):
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.generate_statistics_from_dataframe(frame)


def skews(schema, training, serving) -> List[str]:
  """One line per feature whose skew exceeds its schema threshold."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  anomalies = tfdv.validate_statistics(training, schema, serving_statistics=serving)
  return drift_gate.distance_lines(anomalies, "skew_measurements")


def check_serving_log(schema_path: str, span_dir: str, requests: Sequence[Dict[str, object]],
                      catalog_path: str) -> None:
  """Raises :class:`SkewError` when ``requests`` (``serving.request_log.read``) differ from
  the examples of ``span_dir`` beyond the schema's skew thresholds.

  Args:
    schema_path: the curated schema with ``skew_comparator`` thresholds.
    span_dir: an ``examples/span-YYYYMMDD`` folder (train and eval files).
    requests: the logged requests.
    catalog_path: the data's ``tracks.parquet`` (the candidates' features).
  """
  schema = schema_tools.read(schema_path)
  features = watched_features(schema)
  if not features or not requests:
    return
  catalog = pd.read_parquet(catalog_path).drop_duplicates("track_id").set_index("track_id")
  serving = serving_frame(requests, features, catalog)
  files = sorted(glob.glob(os.path.join(span_dir, "*.tfrecord.gz")))
  found = []
  for part in ("listener", "candidate"):
    frame = serving[part]
    if frame.empty or not len(frame.columns):
      continue
    training = drift_gate.span_frame(files, list(frame.columns))
    found += skews(schema, _statistics(training), _statistics(frame))
  if found:
    raise SkewError(f"serving requests skewed from {os.path.basename(span_dir)}: "
                    + "; ".join(found))


def serving_log_check(config, span_dir: str, log_path: str) -> Callable[[], None]:
  """A ``local_runner.run`` check: the requests of ``log_path`` (and its rotated files)
  against ``span_dir``, with ``config``'s schema and catalogue."""
  from serving import request_log  # pylint: disable=g-import-not-at-top
  if not os.path.exists(log_path):
    raise FileNotFoundError(f"no serving request log at {log_path}")
  schema = os.path.join(config.schema_dir or configs.CURATED_SCHEMA_DIR, "schema.pbtxt")
  return lambda: check_serving_log(schema, span_dir, request_log.read(log_path),
                                   config.catalog_path())
