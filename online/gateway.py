"""The recommendation gateway's logic: a listener id in, a ranked list out.

This module owns :class:`Gateway`, what ``Recommend`` does whatever the transport: check
the request (a bad field raises :class:`RequestError` naming it), read the listener's
state from the store (a listener never seen gets the cold-start state, segment
``new``), build the model's ``recommend`` request from it (``online.listener_state``,
the fusion controls of ``serving.request_schema``), call the model server
(``online.model_caller``: deadline, one retry on UNAVAILABLE) and answer with the items,
their per-head scores, fused score and reasons, and the model name, version and label.
When the model server cannot answer (unavailable, past the deadline, failing inside), it
answers the segment's popularity list from the store instead, labelled
``fallback_popularity`` in the response and counted in the metrics. With a policy file
(``online.policy_source``), a request that gets no other weights gets the policy's.
"""

import dataclasses
import logging
import math
import re
import time
from typing import Callable, Dict, Mapping, Optional, Tuple

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2

from features import feature_spec
from online import experiment_split
from online import gateway_items
from online import gateway_metrics
from online import gateway_proto
from online import listener_state
from online import model_caller
from online import predict_wire
from online import state_store
from serving import request_schema
from serving import tensors

_LOG = logging.getLogger("melody.online")
_POLICY_LOG = logging.getLogger("melody.online.policy")
MODEL_SOURCE = "model"
FALLBACK_SOURCE = "fallback_popularity"
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FALLBACK_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                   grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}


class RequestError(ValueError):
  """A request field is invalid; ``field`` names it."""

  def __init__(self, field: str, problem: str):
    super().__init__(f"{field}: {problem}")
    self.field = field


class UpstreamError(RuntimeError):
  """The model server refused the request for a reason a fallback cannot hide."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code


@dataclasses.dataclass(frozen=True)
class GatewayOptions:
  """Request limits and defaults.

  Attributes:
    default_k: ``k`` when the request leaves it 0.
    max_k: Largest ``k`` accepted.
    max_user_id_chars: Longest user id accepted.
    max_text_chars: Longest ``request_text`` accepted.
    version_label: Model version label when the request names no experiment.
    split: The canary experiment: a request naming no version label gets its
      listener's arm's label; None: every such request gets ``version_label``.
  """
  default_k: int = 10
  max_k: int = 200
  max_user_id_chars: int = 128
  max_text_chars: int = 1000
  version_label: str = ""
  split: Optional[experiment_split.ExperimentSplit] = None


class Gateway:
  """Answers ``Recommend`` from the state store and the model server.

  Args:
    store: The listener state store.
    model: The model server's ``recommend`` signature.
    metrics: Where calls are counted.
    options: Limits and defaults.
    clock: Epoch seconds of "now" (the impression time).

  Attributes:
    overrides: Per-segment fusion weights in force (``online.promo_controller``'s
      ``WeightsOverride``, replaced whole by its owner); a request's own
      ``weights_override`` wins over it. None: the model's segment table.
    policy: Optional ``online.policy_source.PolicySource``: a request that neither
      sends weights nor gets the controller's gets the policy's row for its segment and
      context as the override, and the policy version is logged with its user id.
  """

  def __init__(self, store: state_store.StateStore, model: model_caller.ModelCaller,
               metrics: gateway_metrics.GatewayMetrics,
               options: GatewayOptions = GatewayOptions(),
               clock: Callable[[], float] = time.time, policy=None):
    self.store = store
    self.model = model
    self.metrics = metrics
    self.options = options
    self._clock = clock
    self.overrides = None
    self.policy = policy

  def check(self, request) -> Dict[str, object]:
    """The request's fields with defaults filled in.

    Raises:
      RequestError: naming the first invalid field.
    """
    o = self.options
    user = request.user_id
    if not user or len(user) > o.max_user_id_chars or not user.isprintable():
      raise RequestError("user_id", f"must be 1 to {o.max_user_id_chars} printable "
                         "characters")
    context = request.context or "unknown"
    if context not in feature_spec.ACTIVITIES:
      raise RequestError("context", f"must be one of {list(feature_spec.ACTIVITIES)}")
    surface = request.surface or "home"
    if surface not in feature_spec.SURFACES:
      raise RequestError("surface", f"must be one of {list(feature_spec.SURFACES)}")
    k = request.k or o.default_k
    if not 1 <= k <= o.max_k:
      raise RequestError("k", f"must be in [1, {o.max_k}], got {k}")
    if len(request.request_text) > o.max_text_chars:
      raise RequestError("request_text", f"is longer than {o.max_text_chars} characters")
    weights = None
    if request.HasField("weights_override"):
      w = request.weights_override
      weights = [w.alpha, w.beta, w.gamma]
      if not all(math.isfinite(x) for x in weights):
        raise RequestError("weights_override", "must hold finite numbers (a negative one "
                           "keeps the segment's weight)")
    label = request.experiment or o.version_label
    if request.experiment and not _LABEL_RE.match(request.experiment):
      raise RequestError("experiment", "must be a version label: 1 to 64 of A-Z a-z 0-9 _ . -")
    arm = ""
    if not request.experiment and o.split is not None:
      assignment = o.split.assign(user)
      arm, label = assignment.arm, assignment.version_label
    return {"user_id": user, "context": context, "surface": surface, "k": int(k),
            "text": request.request_text, "weights": weights, "label": label, "arm": arm}

  def recommend(self, request):
    """Answers one ``RecommendRequest`` with a ``RecommendResponse``.

    Raises:
      RequestError: a bad request field.
      UpstreamError: the model server rejected the request (not a failure to answer).
    """
    response, items = self.recommend_parts(request)
    if items:
      response.MergeFromString(items)
    return response

  def recommend_parts(self, request) -> Tuple[object, bytes]:
    """:meth:`recommend`'s answer in two parts: the ``RecommendResponse`` without the
    model's items, and those items as wire bytes (its ``items`` field). The response's
    serialization followed by the bytes is the serialized answer, so a transport that
    sends bytes never parses the items into messages.

    Raises:
      RequestError: a bad request field.
      UpstreamError: the model server rejected the request (not a failure to answer).
    """
    fields = self.check(request)
    now = int(self._clock())
    with self.metrics.stage("state"):
      state = self.store.get(fields["user_id"])
    cold = state is None
    if cold:
      state = listener_state.ListenerState(fields["user_id"])
      self.metrics.cold_starts.inc()
    overrides = self.overrides
    if fields["weights"] is None and overrides is not None:
      fields["weights"] = overrides.weights_for(state.segment)
    if fields["weights"] is None and self.policy is not None:
      policy = self.policy.current()
      fields["weights"] = list(policy.weights_for(state.segment, fields["context"]))
      _POLICY_LOG.info("user %s policy %s", fields["user_id"], policy.version)
    response = gateway_proto.RecommendResponse(
        model_name=self.model.model, model_label=fields["label"], segment=state.segment,
        cold_start=cold, arm=fields["arm"])
    try:
      with self.metrics.stage("model"):
        answer = self._predict(listener_inputs(state, fields, now), fields, response)
    except grpc.RpcError as e:
      code = e.code()  # pylint: disable=no-member
      if code in _FALLBACK_CODES or (code == grpc.StatusCode.NOT_FOUND and
                                     not request.experiment):
        self._fallback(response, state.segment, fields["k"], code)
        return response, b""
      if code == grpc.StatusCode.NOT_FOUND:
        raise RequestError("experiment", f"no model version labelled "
                           f"{request.experiment!r}") from None
      if (code == grpc.StatusCode.INVALID_ARGUMENT and fields["text"]
          and "request_text" in (e.details() or "")):
        raise RequestError("request_text", "the served model has no intent module") from None
      raise UpstreamError(code, f"model server: {code.name}: {e.details()}") from None
    response.source = MODEL_SOURCE
    response.model_version = answer.model_spec.version.value
    return response, _answer_items(response, answer.outputs)

  def _predict(self, inputs, fields, response):
    """The model call; a canary arm with no canary version loaded yet gets the stable
    arm's version and is answered (and counted) as stable."""
    controls = _NEUTRAL_CONTROLS if fields["weights"] is None else _weights_controls(
        fields["weights"])
    try:
      return self.model.predict(inputs, fields["label"], controls)
    except grpc.RpcError as e:
      split = self.options.split
      if (fields["arm"] != experiment_split.CANARY
          or e.code() != grpc.StatusCode.NOT_FOUND):  # pylint: disable=no-member
        raise
      response.arm, response.model_label = experiment_split.STABLE, split.stable_label
      return self.model.predict(inputs, split.stable_label, controls)

  def _fallback(self, response, segment: str, k: int, code: grpc.StatusCode) -> None:
    reason = code.name.lower()
    self.metrics.fallbacks.labels(reason).inc()
    _LOG.warning("model server %s: %s; answering a popularity list", self.model.target,
                 code.name)
    response.source = FALLBACK_SOURCE
    seen = set()
    for seg, why in ((segment, "popular_in_segment"),
                     (state_store.ALL_SEGMENTS, "popular_overall")):
      for track, plays in self.store.top_tracks(seg, k):
        if len(response.items) < k and track not in seen:
          seen.add(track)
          response.items.add(track_id=track, fused_score=float(plays), reasons=why)


def model_inputs(state: listener_state.ListenerState, fields: Dict[str, object],
                 now: int) -> Dict[str, np.ndarray]:
  """The ``recommend`` inputs for ``state`` and checked request ``fields`` (``Gateway.
  check``) for an impression at ``now``."""
  inputs = listener_inputs(state, fields, now)
  inputs.update(request_schema.neutral_controls(1))
  if fields["weights"] is not None:
    inputs.update(_override_arrays(fields["weights"]))
  return inputs


def listener_inputs(state: listener_state.ListenerState, fields: Dict[str, object],
                    now: int) -> Dict[str, np.ndarray]:
  """:func:`model_inputs` without the fusion controls (the gateway sends those as
  prepared bytes)."""
  inputs = state.model_inputs(now, fields["context"], fields["surface"])
  # A 0-d array, not a numpy scalar: arrays encode as raw tensor content, a scalar
  # would go through TensorFlow's generic (slower) encoder.
  inputs["k"] = np.asarray(fields["k"], np.int32)
  if fields["text"]:
    inputs["request_text"] = np.asarray([fields["text"].encode()], dtype=object)
  return inputs


def _override_arrays(weights) -> Dict[str, np.ndarray]:
  return {"alpha_beta_gamma": np.asarray([weights], np.float32),
          "override": np.ones(1, np.int64)}


def _weights_controls(weights) -> bytes:
  """The fusion controls of a request with its own weights, as ``predict_wire`` bytes."""
  return predict_wire.predict_inputs(_override_arrays(weights)) + _OTHER_CONTROLS


# The fusion controls are the same on every request that brings no weights of its own
# (and all but the weights on the others): encoded once.
_NEUTRAL_CONTROLS = predict_wire.predict_inputs(request_schema.neutral_controls(1))
_OTHER_CONTROLS = predict_wire.predict_inputs({
    name: value for name, value in request_schema.neutral_controls(1).items()
    if name not in _override_arrays([0.0, 0.0, 0.0])})


def _answer_items(response, outputs: Mapping[str, tensor_pb2.TensorProto]) -> bytes:
  """Sets the weights a ``recommend`` answer used on ``response``; returns its placed
  positions as ``RecommendResponse.items`` wire bytes."""
  if "weights" in outputs:
    a, b, c = tensors.from_tensor_proto(outputs["weights"]).reshape(-1).tolist()
    response.weights.alpha, response.weights.beta, response.weights.gamma = a, b, c
  return gateway_items.encode_items(outputs)
