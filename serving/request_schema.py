"""The request schema of Melody's serving signatures: inputs, specs, neutral values, checks.

This module owns what a ``rank`` or ``recommend`` request carries and what makes one
valid: the input names with their dtypes and shapes (the listener inputs derived from
``features.feature_spec``, the per-request fusion controls, the candidates), the
``tf.TensorSpec`` s the signatures are traced with, the neutral values of the controls
and of the raw features a request does not carry, and the validators the local model
server runs before a request reaches the graph.

Every input has a leading batch dim ``B``; inputs are dense and padded, with explicit
lengths (no ragged tensors). TF Serving signatures have no optional inputs, so
sentinels stand in for "not given":

* ``override`` ``[B]`` int: non-zero uses ``alpha_beta_gamma`` ``[B, 3]`` for that row;
  a negative (or non-finite) component keeps the segment table's value for that
  component. With ``override`` 0 the row uses the table whatever ``alpha_beta_gamma``
  holds. Paid listeners keep beta = 0 (``FusionConfig.zero_beta_segments``).
* ``exploration_seed`` ``[B]`` int: >= 0 gives the seeded exploration bonus
  ``epsilon * novelty * u(seed, row)`` (``row`` = the candidate's catalogue row, i.e.
  its ``tracks.parquet`` row; ``ranking.fusion.exploration.uniform_np`` recomputes it);
  a negative seed turns exploration off for the row.
* ``fusion`` ``[B]`` string: ``"weights"`` (the weight table and ``alpha_beta_gamma``),
  ``"learned"`` (the learned fusion a policy baked in, ``serving.fusion_select``) or
  ``""`` (the model's default: the policy's choice, else ``"weights"``).
"""

from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from features import feature_spec
from serving import fusion_select

DEFAULT_N_MAX = 1000
TF_DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
NP_DTYPES = {"string": object, "int64": np.int64, "float32": np.float32}
# The padded play sequences of a listener: prefix -> length.
SEQUENCES: Dict[str, int] = {"hist": feature_spec.HISTORY_LEN, "sess": feature_spec.SESSION_LEN}
# Raw features the graph derives instead of reading them from the request: the artists
# of the plays come from the catalogue (by track id), as the examples' did.
CATALOG_DERIVED: Tuple[str, ...] = tuple(f"{p}_artist_ids" for p in SEQUENCES)


def _shape(feature: feature_spec.Feature) -> Tuple[int, ...]:
  return () if feature.length == 1 else (feature.length,)


# Raw listener inputs of ``rank`` and ``recommend``: name -> (dtype, trailing shape), the
# user, context, history and session features of ``feature_spec`` in its order.
LISTENER_INPUTS: Dict[str, Tuple[str, Tuple[int, ...]]] = {
    f.name: (f.dtype, _shape(f))
    for f in (feature_spec.USER_FEATURES + feature_spec.CONTEXT_FEATURES
              + feature_spec.HISTORY_FEATURES + feature_spec.SESSION_FEATURES)
    if f.name not in CATALOG_DERIVED
}
# Per-request fusion controls shared by ``rank`` and ``recommend``.
CONTROL_INPUTS: Dict[str, Tuple[str, Tuple[int, ...]]] = {
    "alpha_beta_gamma": ("float32", (3,)),
    "override": ("int64", ()),
    "exploration_seed": ("int64", ()),
    fusion_select.FUSION_INPUT: ("string", ()),
}
CANDIDATE_INPUTS: Dict[str, Tuple[str, Tuple[Optional[int], ...]]] = {
    "candidate_ids": ("string", (None,)),
    "candidate_is_promo": ("int64", (None,)),
}


def _specs(inputs: Mapping[str, Tuple[str, Tuple]]) -> Dict[str, tf.TensorSpec]:
  return {name: tf.TensorSpec((None,) + tuple(shape), TF_DTYPES[dtype], name=name)
          for name, (dtype, shape) in inputs.items()}


def rank_input_spec() -> Dict[str, tf.TensorSpec]:
  """Input spec of the ``rank`` signature."""
  return _specs({**LISTENER_INPUTS, **CONTROL_INPUTS, **CANDIDATE_INPUTS})


def recommend_input_spec(with_text: bool) -> Dict[str, tf.TensorSpec]:
  """Input spec of ``recommend`` (``k`` is a scalar, so the server runs it unbatched)."""
  spec = _specs({**LISTENER_INPUTS, **CONTROL_INPUTS})
  spec["k"] = tf.TensorSpec([], tf.int32, name="k")
  if with_text:
    spec["request_text"] = tf.TensorSpec([None], tf.string, name="request_text")
  return spec


POLICY_INPUT = "request_id"   # the ``policy`` signature's one input: [B] int64, any values


def policy_input_spec() -> Dict[str, tf.TensorSpec]:
  """The ``policy`` signature's input (one row per answer, so it batches like the rest)."""
  return {POLICY_INPUT: tf.TensorSpec([None], tf.int64, name=POLICY_INPUT)}


def neutral_controls(batch: int) -> Dict[str, np.ndarray]:
  """Control inputs meaning "segment table, no exploration" for ``batch`` rows."""
  return {"alpha_beta_gamma": np.full((batch, 3), -1.0, np.float32),
          "override": np.zeros(batch, np.int64),
          "exploration_seed": np.full(batch, -1, np.int64),
          fusion_select.FUSION_INPUT: np.full(batch, "", object)}


# ------------------------------------------------------------ neutral raw features
# The TFT layer wants every raw (non-label) feature; the parts a request or a catalogue
# row does not carry get their ``feature_spec`` defaults.
def neutral_raw(batch: int) -> Dict[str, np.ndarray]:
  """Raw non-label features with padding/zero values for ``batch`` rows."""
  out = {}
  for f in feature_spec.RAW_FEATURES:
    if f.name in feature_spec.PASSTHROUGH_KEYS:
      continue
    shape = (batch,) if f.length == 1 else (batch, f.length)
    out[f.name] = np.full(shape, f.default, dtype=NP_DTYPES[f.dtype])
  return out


def neutral_raw_tf(batch: tf.Tensor) -> Dict[str, tf.Tensor]:
  """In-graph :func:`neutral_raw` for a dynamic batch size."""
  out = {}
  for f in feature_spec.RAW_FEATURES:
    if f.name in feature_spec.PASSTHROUGH_KEYS:
      continue
    shape = tf.stack([batch]) if f.length == 1 else tf.stack([batch, f.length])
    out[f.name] = tf.fill(shape, tf.constant(f.default, TF_DTYPES[f.dtype]))
  return out


# --------------------------------------------------------------------- validation
def _fail(name: str, problem: str) -> None:
  raise ValueError(f"input '{name}' {problem}")


def _check_listener(arrays: Mapping[str, np.ndarray]) -> int:
  batch = None
  for name, (_, shape) in {**LISTENER_INPUTS, **CONTROL_INPUTS}.items():
    if name not in arrays:
      _fail(name, "is missing")
    a = np.asarray(arrays[name])
    if a.ndim != 1 + len(shape) or tuple(a.shape[1:]) != tuple(shape):
      _fail(name, f"has shape {list(a.shape)}, expected [B{''.join(f', {d}' for d in shape)}]")
    if batch is None:
      batch = a.shape[0]
    elif a.shape[0] != batch:
      _fail(name, f"has batch size {a.shape[0]}, other inputs have {batch}")
  for prefix, length in SEQUENCES.items():
    lens = np.asarray(arrays[f"{prefix}_len"])
    bad = (lens < 0) | (lens > length)
    if bad.any():
      _fail(f"{prefix}_len", f"must be in [0, {length}], got {int(lens[bad][0])}")
    for part in ("completion", "skip", "gap_s"):
      values = np.asarray(arrays[f"{prefix}_{part}"])
      if not np.all(np.isfinite(values)):
        _fail(f"{prefix}_{part}", "holds NaN or infinite values")
  for name in ("context_hour", "context_weekday"):
    if np.any(np.asarray(arrays[name]) < 0):
      _fail(name, "must be >= 0")
  if not np.all(np.isfinite(np.asarray(arrays["user_tenure_days"]))):
    _fail("user_tenure_days", "holds NaN or infinite values")
  _check_fusion(arrays[fusion_select.FUSION_INPUT])
  return int(batch)


def _check_fusion(values: np.ndarray) -> None:
  for n, value in enumerate(np.asarray(values, object).reshape(-1)):
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if text not in fusion_select.CHOICES:
      _fail(fusion_select.FUSION_INPUT, f"row {n} must be one of "
            f"{list(fusion_select.CHOICES)}, got {text!r}")


def check_utf8(arrays: Mapping[str, np.ndarray], name: str) -> None:
  """Request text must be UTF-8: the in-graph tokenizer cannot read other bytes."""
  for n, value in enumerate(np.asarray(arrays[name], object).reshape(-1)):
    if isinstance(value, bytes):
      try:
        value.decode("utf-8")
      except UnicodeDecodeError as e:
        _fail(name, f"row {n} is not valid UTF-8 ({e.reason} at byte {e.start})")


def validate_rank(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``rank`` request; the server answers INVALID_ARGUMENT on failure.

  The server has already checked dtypes, ranks, fixed trailing dims and that batch dims
  agree; this adds what a signature cannot express: ``N <= n_max``, the two candidate
  inputs having the same ``[B, N]`` shape, lengths within the padded sequences, promo
  flags 0/1 and finite floats.

  Raises:
    ValueError: naming the offending input.
  """
  batch = _check_listener(arrays)
  ids = np.asarray(arrays.get("candidate_ids", np.zeros((0, 0), object)))
  promo = np.asarray(arrays.get("candidate_is_promo", np.zeros((0, 0), np.int64)))
  if "candidate_ids" not in arrays:
    _fail("candidate_ids", "is missing")
  if "candidate_is_promo" not in arrays:
    _fail("candidate_is_promo", "is missing")
  if ids.ndim != 2 or ids.shape[0] != batch:
    _fail("candidate_ids", f"has shape {list(ids.shape)}, expected [B={batch}, N]")
  if ids.shape[1] > n_max:
    _fail("candidate_ids", f"has N={ids.shape[1]} candidates, more than N_max={n_max}")
  if promo.shape != ids.shape:
    _fail("candidate_is_promo", f"has shape {list(promo.shape)}, but candidate_ids has "
          f"{list(ids.shape)}; both must be [B, N]")
  if np.any((promo != 0) & (promo != 1)):
    _fail("candidate_is_promo", "must hold 0 or 1")


def validate_recommend(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``recommend`` request (listener inputs, ``k`` in [1, n_max]).

  Raises:
    ValueError: naming the offending input.
  """
  batch = _check_listener(arrays)
  if "k" not in arrays:
    _fail("k", "is missing")
  k = np.asarray(arrays["k"])
  if k.ndim != 0:
    _fail("k", f"must be a scalar, got shape {list(k.shape)}")
  if not 1 <= int(k) <= n_max:
    _fail("k", f"must be in [1, N_max={n_max}], got {int(k)}")
  if "request_text" in arrays:
    if np.asarray(arrays["request_text"]).shape != (batch,):
      _fail("request_text", f"has shape {list(np.asarray(arrays['request_text']).shape)}, "
            f"expected [{batch}]")
    check_utf8(arrays, "request_text")


def validate_intent(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``intent_candidates`` request (``k`` in [1, n_max], UTF-8 text)."""
  k = np.asarray(arrays.get("k", 0))
  if k.ndim != 0 or not 1 <= int(k) <= n_max:
    _fail("k", f"must be a scalar in [1, N_max={n_max}], got {k.tolist()}")
  if "text" in arrays:
    check_utf8(arrays, "text")


def validators(n_max: int = DEFAULT_N_MAX) -> Dict[str, Callable[[Mapping[str, np.ndarray]],
                                                                None]]:
  """``{signature: validator}`` for ``serving.server.ModelServer(validators={model: ...})``."""
  rank = lambda arrays: validate_rank(arrays, n_max)  # noqa: E731
  return {"rank": rank, "serving_default": rank,
          "recommend": lambda arrays: validate_recommend(arrays, n_max),
          "intent_candidates": lambda arrays: validate_intent(arrays, n_max)}
