"""Warmup records: real PredictRequests written into ``assets.extra`` of a SavedModel.

This module owns ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of
``tensorflow.serving.PredictionLog`` records (at most :data:`MAX_RECORDS`, TF Serving's
limit) that a model server replays after loading a version and before routing traffic
to it. Every signature the SavedModel exports gets records (the request is chosen from
the signature's input names, and a signature whose inputs match no known request fails
the export), because each loaded signature builds its runtime function on its first
call, seconds for ``rank``. The requests are built from REAL raw training examples
(``features.raw_features``): a listener's history, session, user and context come from
one example, the candidates from the candidates of the examples that follow it, and the
``tf.Example`` signatures get the serialized examples themselves. It also turns raw
examples into the listener inputs of the ``rank`` / ``recommend`` signatures
(:func:`listener_inputs`).
"""

import os
from typing import Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

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
DEFAULT_MAX_BATCH_SIZE = 8
SAMPLE_TEXTS = ("calm piano for a rainy commute", "upbeat songs for a workout")
# The one input of the signatures that take serialized raw tf.Examples.
EXAMPLES_INPUT = "examples"


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


def signature_inputs(functions: Mapping[str, object]) -> Dict[str, Tuple[str, ...]]:
  """The input names of each signature, from concrete functions by signature name.

  The names are those of the ``TensorSpec`` s, which become the signature's input keys
  when saved (a function may take them as one dict or as positional tensors).

  Raises:
    ValueError: a function has an input spec without a name.
  """
  out = {}
  for name, fn in functions.items():
    specs = tf.nest.flatten(fn.structured_input_signature)
    if any(not getattr(spec, "name", None) for spec in specs):
      raise ValueError(f"signature '{name}' has an unnamed input: {specs}")
    out[name] = tuple(sorted(spec.name for spec in specs))
  return out


def request_kind(inputs: Collection[str]) -> str:
  """Which warmup request a signature with the input names ``inputs`` takes.

  Returns:
    ``"rank"``, ``"recommend"``, ``"intent"``, ``"policy"`` or ``"examples"``.

  Raises:
    ValueError: no request Melody knows how to build has exactly these inputs.
  """
  names = set(inputs)
  kinds = {"rank": set(request_schema.rank_input_spec()),
           "recommend": set(request_schema.recommend_input_spec(False)),
           "recommend_text": set(request_schema.recommend_input_spec(True)),
           "intent": {"text", "k"},
           "policy": {request_schema.POLICY_INPUT},
           "examples": {EXAMPLES_INPUT}}
  for kind, wanted in kinds.items():
    if names == wanted:
      return "recommend" if kind == "recommend_text" else kind
  raise ValueError(f"no warmup request for a signature with inputs {sorted(names)}; "
                   "serving.warmup builds rank, recommend, intent, policy and tf.Example requests")


def _variants(kind: str, n_max: int, max_batch: int) -> List[Tuple[int, int]]:
  """The (batch, size) shapes warmed up per request kind, the common shape first.

  ``size`` is the candidate count of ``rank``, ``k`` of ``recommend`` and ``intent``;
  unused for ``examples``. Signatures with a scalar ``k`` are never batched.
  """
  if kind == "rank":
    sizes = [(1, 10), (2, 50), (max_batch, 100), (1, n_max), (1, 500)]
  elif kind == "recommend":
    sizes = [(1, 20), (2, 100)]
  elif kind == "intent":
    sizes = [(2, 20), (1, 5)]
  else:
    sizes = [(1, 0), (2, 0), (max_batch, 0)]
  return [(batch, min(size, n_max)) for batch, size in sizes]


def _request_inputs(kind: str, parsed: Dict[str, np.ndarray], records: Sequence[bytes],
                    inputs: Collection[str], i: int, batch: int, size: int,
                    catalog_ids: Optional[np.ndarray], overrides: bool
                    ) -> Dict[str, np.ndarray]:
  """The inputs of the ``i``-th warmup request, of ``kind`` and shape (batch, size);
  ``overrides`` sets the fusion override and exploration seed of a ``rank`` request."""
  rows = [(i * 7 + b * 3) % len(parsed["user_id"]) for b in range(batch)]
  if kind == "examples":
    return {EXAMPLES_INPUT: np.asarray([records[(i * 5 + b) % len(records)]
                                        for b in range(batch)], dtype=object)}
  if kind == "policy":
    return {request_schema.POLICY_INPUT: np.arange(batch, dtype=np.int64)}
  if kind == "intent":
    return {"text": np.asarray([SAMPLE_TEXTS[(i + b) % len(SAMPLE_TEXTS)].encode()
                                for b in range(batch)], dtype=object),
            "k": np.int32(size)}
  if kind == "recommend":
    texts = None
    if "request_text" in inputs:   # "" (collaborative only) and texts, alternating
      texts = [SAMPLE_TEXTS[(i + b) % len(SAMPLE_TEXTS)] if (i + b) % 2 else ""
               for b in range(batch)]
    return recommend_inputs(parsed, rows, size, texts)
  out = rank_inputs(parsed, rows, size, catalog_ids)
  if overrides:   # exercise the override and seed paths too
    out["override"][:] = 1
    out["alpha_beta_gamma"][:] = np.float32([0.6, -1.0, 0.4])
    out["exploration_seed"][:] = i
  return out


def warmup_requests(records: Sequence[bytes], model_name: str, n_max: int,
                    signatures: Mapping[str, Collection[str]],
                    num_records: int = DEFAULT_RECORDS,
                    catalog_ids: Optional[np.ndarray] = None,
                    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
                    ) -> List[predict_pb2.PredictRequest]:
  """PredictRequests for EVERY signature of ``signatures``, from real examples.

  A loaded signature pays for building its runtime function (seconds for ``rank``) on
  its first call, whatever the batch size, so each signature must be replayed: the
  requests go round the signatures (sorted by name), each round with the next shape
  of that signature's request kind (see :func:`request_kind`), so the first rounds call
  every signature once, then again with another batch size or candidate count.

  Args:
    records: serialized raw examples.
    model_name: ``ModelSpec.name`` of the requests.
    n_max: the export's N_max (the largest candidate count warmed up).
    signatures: input names by signature name (:func:`signature_inputs`), as exported.
    num_records: how many requests (at least one per signature, at most MAX_RECORDS).
    catalog_ids: catalogue track ids to fill candidate lists longer than the examples.
    max_batch_size: the batcher's largest batch, warmed up for batchable signatures.

  Raises:
    ValueError: ``num_records`` out of range, no records or signatures, or a signature
      whose inputs match no request kind.
  """
  if not signatures:
    raise ValueError("warmup needs at least one signature")
  if not len(signatures) <= num_records <= MAX_RECORDS:
    raise ValueError(f"num_records must be in [{len(signatures)}, {MAX_RECORDS}] (at "
                     f"least one per signature), got {num_records}")
  if not records:
    raise ValueError("warmup needs at least one real example")
  if max_batch_size < 1:
    raise ValueError(f"max_batch_size must be positive, got {max_batch_size}")
  kinds = {name: request_kind(inputs) for name, inputs in signatures.items()}
  names = sorted(signatures)
  parsed = parse_examples(records)
  requests = []
  for i in range(num_records):
    name = names[i % len(names)]
    variants = _variants(kinds[name], n_max, max_batch_size)
    round_index = i // len(names)
    batch, size = variants[round_index % len(variants)]
    inputs = _request_inputs(kinds[name], parsed, records, signatures[name], i, batch, size,
                             catalog_ids, overrides=round_index % 2 == 1)
    requests.append(client.predict_request(model_name, name, inputs))
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
