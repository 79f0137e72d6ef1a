"""Warmup records: real PredictRequests written into ``assets.extra`` of a SavedModel.

This module owns ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of
``tensorflow.serving.PredictionLog`` records (at most :data:`MAX_RECORDS`, TF Serving's
limit) that a model server replays after loading a version and before routing traffic
to it, so the first real request does not pay for graph warmup. The requests are built
from REAL raw training examples (``features.raw_features``): a listener's history,
session, user and context come from one example, the candidates from the candidates of
the examples that follow it. It also turns raw examples into the listener inputs of the
``rank`` / ``recommend`` signatures (:func:`listener_inputs`).
"""

import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from features import feature_spec
from serving import client
from serving import request_schema
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000
DEFAULT_RECORDS = 24
SAMPLE_TEXTS = ("calm piano for a rainy commute", "upbeat songs for a workout")


def read_examples(source: Union[str, Sequence[bytes]], limit: int = 2000) -> List[bytes]:
  """Serialized raw examples from a glob of gzip TFRecords or a list of records.

  Args:
    source: file pattern (``**`` allowed) or the serialized records themselves.
    limit: most records read.

  Raises:
    ValueError: no files match, or no records were found.
  """
  if not isinstance(source, str):
    records = [bytes(r) for r in list(source)[:limit]]
  else:
    files = sorted(tf.io.gfile.glob(source))
    if not files and "**" in source:
      import glob  # pylint: disable=g-import-not-at-top
      files = sorted(glob.glob(source, recursive=True))
    if not files:
      raise ValueError(f"no example files match {source!r}")
    records = []
    for path in files:
      for r in tf.data.TFRecordDataset(path, compression_type="GZIP").take(
          limit - len(records)):
        records.append(r.numpy())
      if len(records) >= limit:
        break
  if not records:
    raise ValueError(f"no examples found in {source if isinstance(source, str) else 'list'}")
  return records


def parse_examples(records: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """Raw features of serialized examples as numpy arrays (``[B]`` or ``[B, L]``)."""
  parsed = tf.io.parse_example(tf.constant(list(records)), feature_spec.raw_feature_spec())
  return {k: v.numpy() for k, v in parsed.items()}


def listener_inputs(parsed: Dict[str, np.ndarray], rows: Sequence[int]) -> Dict[str, np.ndarray]:
  """The ``rank`` / ``recommend`` listener inputs of examples ``rows`` (batch ``len(rows)``)."""
  rows = np.asarray(rows, dtype=np.int64)
  out = {}
  for name, (dtype, _) in request_schema.LISTENER_INPUTS.items():
    out[name] = parsed[name][rows].astype(object if dtype == "string" else
                                          (np.int64 if dtype == "int64" else np.float32))
  return out


def _candidates(parsed: Dict[str, np.ndarray], start: int, n: int,
                catalog_ids: Optional[np.ndarray]):
  """``n`` real candidates: those of the examples from ``start`` on, then catalogue ids."""
  ids = parsed["cand_track_id"]
  promo = parsed["cand_is_promo"]
  take = np.arange(start, start + min(n, len(ids))) % len(ids)
  out_ids, out_promo = list(ids[take]), list(promo[take])
  if len(out_ids) < n and catalog_ids is not None and len(catalog_ids):
    extra = np.resize(np.asarray(catalog_ids, dtype=object), n - len(out_ids))
    out_ids += list(extra)
    out_promo += [0] * len(extra)
  out_ids = np.resize(np.asarray(out_ids, dtype=object), n)
  out_promo = np.resize(np.asarray(out_promo, dtype=np.int64), n)
  return out_ids, np.clip(out_promo, 0, 1)


def rank_inputs(parsed: Dict[str, np.ndarray], listener_rows: Sequence[int], n: int,
                catalog_ids: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """A ``rank`` request for the listeners of ``listener_rows`` with ``n`` candidates each."""
  inputs = listener_inputs(parsed, listener_rows)
  inputs.update(request_schema.neutral_controls(len(listener_rows)))
  ids, promo = zip(*[_candidates(parsed, int(r) + 1, n, catalog_ids) for r in listener_rows])
  inputs["candidate_ids"] = np.stack(ids).astype(object)
  inputs["candidate_is_promo"] = np.stack(promo).astype(np.int64)
  return inputs


def recommend_inputs(parsed: Dict[str, np.ndarray], listener_rows: Sequence[int], k: int,
                     texts: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """A ``recommend`` request; ``texts`` adds ``request_text`` (intent models only)."""
  inputs = listener_inputs(parsed, listener_rows)
  inputs.update(request_schema.neutral_controls(len(listener_rows)))
  inputs["k"] = np.int32(k)
  if texts is not None:
    inputs["request_text"] = np.asarray([t.encode() if isinstance(t, str) else t
                                         for t in texts], dtype=object)
  return inputs


def warmup_requests(records: Sequence[bytes], model_name: str, n_max: int,
                    num_records: int = DEFAULT_RECORDS, with_intent: bool = False,
                    catalog_ids: Optional[np.ndarray] = None
                    ) -> List[predict_pb2.PredictRequest]:
  """PredictRequests of ``rank`` and ``recommend`` (and ``intent_candidates``) from
  real examples, cycling through the request shapes serving sees.

  Args:
    records: serialized raw examples.
    model_name: ``ModelSpec.name`` of the requests.
    n_max: the export's N_max (the largest candidate count warmed up).
    num_records: how many requests (1..MAX_RECORDS).
    with_intent: the export has an intent module (adds ``request_text`` and
      ``intent_candidates`` requests).
    catalog_ids: catalogue track ids to fill candidate lists longer than the examples.

  Raises:
    ValueError: ``num_records`` outside [1, MAX_RECORDS] or no records.
  """
  if not 1 <= num_records <= MAX_RECORDS:
    raise ValueError(f"num_records must be in [1, {MAX_RECORDS}], got {num_records}")
  if not records:
    raise ValueError("warmup needs at least one real example")
  parsed = parse_examples(records)
  count = len(parsed["user_id"])
  sizes = sorted({min(n, n_max) for n in (10, 100, 500, n_max)})
  plans = [("rank", 1, n) for n in sizes] + [("rank", 2, min(50, n_max)),
                                             ("recommend", 1, min(20, n_max)),
                                             ("recommend", 2, min(100, n_max))]
  if with_intent:
    plans.append(("intent_candidates", 2, min(20, n_max)))
  requests = []
  for i in range(num_records):
    signature, batch, size = plans[i % len(plans)]
    rows = [(i * 7 + b * 3) % count for b in range(batch)]
    if signature == "rank":
      inputs = rank_inputs(parsed, rows, size, catalog_ids)
    elif signature == "recommend":
      texts = None
      if with_intent:
        texts = [SAMPLE_TEXTS[(i + b) % len(SAMPLE_TEXTS)] if (i + b) % 2 else ""
                 for b in range(batch)]
      inputs = recommend_inputs(parsed, rows, size, texts)
    else:
      inputs = {"text": np.asarray([t.encode() for t in SAMPLE_TEXTS[:batch]], dtype=object),
                "k": np.int32(size)}
    if signature == "rank" and i % 3 == 1:   # exercise the override and seed paths too
      inputs["override"][:] = 1
      inputs["alpha_beta_gamma"][:] = np.float32([0.6, -1.0, 0.4])
      inputs["exploration_seed"][:] = i
    requests.append(client.predict_request(model_name, signature, inputs))
  return requests


def write_warmup(saved_model_dir: str, requests: Iterable[predict_pb2.PredictRequest]) -> str:
  """Writes ``requests`` as PredictionLog records into ``saved_model_dir``.

  Raises:
    ValueError: more than ``MAX_RECORDS`` requests.
  """
  requests = list(requests)
  if len(requests) > MAX_RECORDS:
    raise ValueError(f"{len(requests)} warmup requests, TF Serving reads at most "
                     f"{MAX_RECORDS}")
  path = os.path.join(saved_model_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog()
      log.predict_log.request.CopyFrom(request)
      writer.write(log.SerializeToString())
  return path


def read_warmup(saved_model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  """The PredictionLog records of a SavedModel's warmup file."""
  path = os.path.join(saved_model_dir, WARMUP_FILE)
  return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path)]
