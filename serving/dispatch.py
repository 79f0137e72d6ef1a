"""From a TF Serving request to a model call and back, with gRPC status codes.

This module owns what happens to one request once it reaches the model server: the
``ModelSpec`` is resolved to a served model, a loaded version (by number, by version label,
or the newest) and a signature; the inputs are decoded and checked against the
signature's ``structured_input_signature`` and any registered input validator; the
signature runs, alone or merged with concurrent requests by ``serving.batching``; and
every failure becomes a gRPC status code with a message naming what was asked and what
exists (the table in ``docs/serving.md``). Request, error and latency metrics are counted
here, with unknown model and signature names folded into one label value.

Model work is guarded on both sides: a Predict call is admitted only while fewer than
the limit run (``serving.admission``; past it, or once the server drains, it answers
UNAVAILABLE), and a call whose client no longer waits (``serving.call_deadline``) answers
DEADLINE_EXCEEDED or CANCELLED without running the model.
"""

import logging
import time
from typing import Callable, Dict, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from serving import admission
from serving import batching
from serving import call_deadline
from serving import model_config
from serving import server_metrics
from serving import tensors
from serving import version_manager

_LOG = logging.getLogger("melody.serving")

# The signature a request with an empty signature_name calls (one definition, the
# version manager's, which warms it up under that name).
DEFAULT_SIGNATURE = version_manager.DEFAULT_SIGNATURE
# An output flagging request texts cut to the intent model's length; counted in metrics.
TEXT_CUT_OUTPUT = "text_cut"
_UNKNOWN = "<unknown>"

# A validator gets the decoded inputs of one request; a ValueError it raises is the
# client's fault (INVALID_ARGUMENT), anything else is the server's (INTERNAL).
Validator = Callable[[Mapping[str, np.ndarray]], None]

_EXPIRED_CODES = {call_deadline.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
                  call_deadline.CANCELLED: grpc.StatusCode.CANCELLED}


class RpcError(Exception):
  """An RPC answer other than OK, raised inside handlers."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


class Dispatcher:
  """Answers Predict, GetModelMetadata and GetModelStatus for a set of served models.

  Args:
    models: The served models by name (their loaded versions change underneath).
    metrics: Where requests, errors, latencies and model calls are counted.
    max_tensor_elements: Largest tensor (in elements) a request may carry.
    max_concurrent_predicts: Most Predict calls in progress at once (None: no limit);
      calls past it answer UNAVAILABLE.
  """

  def __init__(self, models: Mapping[str, version_manager.ServedModel],
               metrics: server_metrics.ServerMetrics,
               max_tensor_elements: int = tensors.DEFAULT_MAX_ELEMENTS,
               max_concurrent_predicts: Optional[int] = None):
    self._models = models
    self._metrics = metrics
    self._max_tensor_elements = max_tensor_elements
    self._admission = admission.Admission(max_concurrent_predicts)
    metrics.watch_predicts_in_flight(lambda: self._admission.in_flight)
    self._validators: Dict[Tuple[str, str], Validator] = {}
    self._scheduler: Optional[batching.BatchScheduler] = None
    self.request_log = None   # a serving.request_log.RequestLog when enabled

  def register_validator(self, model: str, signature: str, fn: Validator) -> None:
    """Adds (or replaces) the input validator of one model signature."""
    if model not in self._models:
      raise ValueError(f"validator for unknown model {model!r}; served: "
                       f"{sorted(self._models)}")
    if not callable(fn):
      raise ValueError(f"validator for {model}/{signature} is not callable: {fn!r}")
    self._validators[(model, signature)] = fn

  # ------------------------------------------------------------------ batching

  def start_batching(self, params: model_config.BatchingParameters) -> None:
    """Merges concurrent Predict calls per (model, version, signature) from now on."""
    self._scheduler = batching.BatchScheduler(
        params, lambda key, requests, rows: self._observe_call(key[0], requests, rows)
    ).start()

  def flush_batches(self) -> None:
    """Runs every queued batch now, without waiting for it to fill."""
    if self._scheduler is not None:
      self._scheduler.flush()

  def stop_batching(self, timeout: Optional[float] = None) -> None:
    """Stops the batch workers, waiting at most ``timeout`` seconds (None: no bound)."""
    if self._scheduler is not None:
      self._scheduler.stop(timeout)

  def pending_batch_rows(self) -> int:
    """Rows waiting in batch queues (0 without batching)."""
    return self._scheduler.pending_rows() if self._scheduler is not None else 0

  # ------------------------------------------------------------------ draining

  def start_draining(self) -> None:
    """Refuses new Predict and GetModelMetadata calls; admitted calls keep running."""
    self._admission.close()

  @property
  def draining(self) -> bool:
    """Whether :meth:`start_draining` was called."""
    return self._admission.closed

  def wait_for_predicts(self, timeout: float) -> bool:
    """Waits until no Predict call is in progress; False if ``timeout`` passed first."""
    return self._admission.wait_idle(timeout)

  def predicts_in_flight(self) -> int:
    """Predict calls admitted and not yet answered."""
    return self._admission.in_flight

  def _observe_call(self, prefix, requests: int, rows: int) -> None:
    model, _, signature = prefix
    self._metrics.observe_model_call(model, signature, requests, rows)

  # ---------------------------------------------------------------- resolution

  def model(self, name: str) -> version_manager.ServedModel:
    model = self._models.get(name)
    if model is None:
      raise RpcError(grpc.StatusCode.NOT_FOUND,
                     f"model '{name}' is not served; served models: {sorted(self._models)}")
    return model

  def resolve(self, spec) -> Tuple[version_manager.ServedModel, version_manager.LoadedVersion]:
    """The model and loaded version a ``ModelSpec`` names (raises ``RpcError``)."""
    model = self.model(spec.name)
    versions = model.versions  # One snapshot for the whole request.
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
      version = spec.version.value
    elif choice == "version_label":
      labels = model.entry.labels
      if spec.version_label not in labels:
        raise RpcError(grpc.StatusCode.NOT_FOUND,
                       f"model '{spec.name}' has no version label '{spec.version_label}'; "
                       f"labels: {sorted(labels)}")
      version = labels[spec.version_label]
    else:
      if not versions:
        raise RpcError(grpc.StatusCode.NOT_FOUND,
                       f"model '{spec.name}' has no loaded version yet")
      version = max(versions)
    loaded = versions.get(version)
    if loaded is None:
      label = f" (label '{spec.version_label}')" if choice == "version_label" else ""
      raise RpcError(grpc.StatusCode.NOT_FOUND,
                     f"model '{spec.name}' version {version}{label} is not loaded; loaded "
                     f"versions: {sorted(versions)}")
    return model, loaded

  @staticmethod
  def _signature(loaded: version_manager.LoadedVersion, spec) -> version_manager.Signature:
    name = spec.signature_name or DEFAULT_SIGNATURE
    signature = loaded.signatures.get(name)
    if signature is None:
      raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                     f"signature '{name}' not found in model '{spec.name}' version "
                     f"{loaded.version}; available signatures: {sorted(loaded.signatures)}")
    return signature

  # ------------------------------------------------------------------- running

  def run(self, model: version_manager.ServedModel, loaded: version_manager.LoadedVersion,
          request: predict_pb2.PredictRequest, batched: bool = True,
          deadline: Optional[call_deadline.CallDeadline] = None,
          count_text_cuts: bool = True) -> Dict[str, np.ndarray]:
    """Checks and runs one PredictRequest on ``loaded`` (raises ``RpcError``).

    The model does not run for a client that no longer waits (checked right before the
    call, and when a batch is formed); a client gone by the time the model returns
    gets no answer either, and is counted as such. A ``text_cut`` output is counted in
    ``melody_serving_request_text_cut`` unless ``count_text_cuts`` is False (warmup).
    """
    deadline = deadline or call_deadline.NO_DEADLINE
    signature = self._signature(loaded, request.model_spec)
    for name in request.output_filter:
      if name not in signature.outputs:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"output_filter names unknown output '{name}'; signature "
                       f"'{signature.name}' outputs {list(signature.outputs)}")
    try:
      arrays = tensors.decode_inputs(request.inputs, signature.inputs, signature.name,
                                     self._max_tensor_elements)
    except tensors.InputError as e:
      raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
    validator = self._validators.get((model.entry.name, signature.name))
    if validator is not None:
      try:
        validator(arrays)
      except ValueError as e:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
      except Exception as e:  # pylint: disable=broad-except
        raise RpcError(grpc.StatusCode.INTERNAL, f"input validator failed: {e!r}") from e
    rows = tensors.batch_size(arrays, signature.inputs)
    try:
      if (batched and self._scheduler is not None and signature.batchable
          and rows is not None and self._scheduler.can_batch(rows)):
        key = batching.mergeable_key((model.entry.name, loaded.version, signature.name),
                                     arrays)
        outputs = self._scheduler.run(key, signature.call, arrays, rows, deadline)
      else:
        deadline.check()
        outputs = signature.call(arrays)
        self._observe_call((model.entry.name, loaded.version, signature.name), 1, rows or 1)
      deadline.check()
    except call_deadline.CallExpired as e:
      raise RpcError(_EXPIRED_CODES[e.reason], f"model '{model.entry.name}' signature "
                     f"'{signature.name}': {e}") from e
    except (batching.QueueFullError, batching.SchedulerStoppedError) as e:
      raise RpcError(grpc.StatusCode.UNAVAILABLE, str(e)) from e
    except tf.errors.InvalidArgumentError as e:
      # The graph itself rejected the values (e.g. an assert in the model).
      raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                     f"signature '{signature.name}' rejected the inputs: {e.message}") from e
    except Exception as e:  # pylint: disable=broad-except
      _LOG.error("model %s version %d signature %s failed: %s", model.entry.name,
                 loaded.version, signature.name, _first_line(e),
                 exc_info=_LOG.isEnabledFor(logging.DEBUG))
      raise RpcError(grpc.StatusCode.INTERNAL,
                     f"model '{model.entry.name}' signature '{signature.name}' failed: "
                     f"{type(e).__name__}: {_first_line(e)}") from e
    if count_text_cuts and TEXT_CUT_OUTPUT in outputs:
      self._metrics.observe_text_cut(model.entry.name, signature.name,
                                     outputs[TEXT_CUT_OUTPUT])
    if count_text_cuts and self.request_log is not None:   # warmup replays are not logged
      self.request_log.write(model.entry.name, loaded.version, signature.name, arrays)
    if request.output_filter:
      outputs = {k: v for k, v in outputs.items() if k in set(request.output_filter)}
    return outputs

  def replay_warmup(self, model: version_manager.ServedModel,
                    loaded: version_manager.LoadedVersion,
                    request: predict_pb2.PredictRequest) -> None:
    """Runs a warmup request unbatched, as ``version_manager.WarmupReplay`` expects."""
    try:
      self.run(model, loaded, request, batched=False, count_text_cuts=False)
    except RpcError as e:
      raise version_manager.WarmupRequestFailed(f"{e.code.name}: {e.message}") from e

  # ------------------------------------------------------------------ the APIs

  def predict(self, request: predict_pb2.PredictRequest,
              deadline: Optional[call_deadline.CallDeadline] = None
              ) -> predict_pb2.PredictResponse:
    """Answers one PredictRequest (raises ``RpcError`` on failure).

    Args:
      request: The request.
      deadline: The client's deadline and liveness (a gRPC call's context wrapped in
        ``call_deadline.CallDeadline``); None for a call without one, such as REST.
    """
    try:
      self._admission.enter()
    except admission.Refused as e:
      raise RpcError(grpc.StatusCode.UNAVAILABLE, str(e)) from e
    try:
      model, loaded = self.resolve(request.model_spec)
      outputs = self.run(model, loaded, request, deadline=deadline)
    finally:
      self._admission.leave()
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.entry.name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    for name, value in outputs.items():
      tensors.fill_tensor_proto(response.outputs[name], value)
    return response

  def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Answers GetModelMetadata with the version's ``SignatureDef``s."""
    fields = list(request.metadata_field)
    if fields != ["signature_def"]:
      raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                     f"metadata_field must be ['signature_def'], got {fields}")
    if self.draining:
      raise RpcError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
    model, loaded = self.resolve(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model.entry.name
    response.model_spec.version.value = loaded.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in loaded.signature_defs.items():
      signature_map.signature_def[name].CopyFrom(signature_def)
    response.metadata["signature_def"].Pack(signature_map)
    return response

  def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
    """Answers GetModelStatus: the state of the asked version(s), newest first."""
    spec = request.model_spec
    model = self.model(spec.name)
    statuses = dict(model.status)
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
      _, loaded = self.resolve(spec)
      wanted = [loaded.version]
    elif choice == "version":
      if spec.version.value not in statuses:
        raise RpcError(grpc.StatusCode.NOT_FOUND,
                       f"model '{spec.name}' has no version {spec.version.value}; known "
                       f"versions: {sorted(statuses)}")
      wanted = [spec.version.value]
    else:
      wanted = sorted(statuses, reverse=True)
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in wanted:
      state, code, message = statuses[version]
      entry = response.model_version_status.add(version=version, state=state)
      entry.status.error_code = code
      entry.status.error_message = message
    return response

  def handle_rpc(self, api: str, request, context, handler):
    """Runs ``handler(request)`` for a servicer: metrics, error mapping, abort."""
    spec = request.model_spec
    model = spec.name if spec.name in self._models else _UNKNOWN
    signature = ""
    if api == "predict":
      signature = spec.signature_name or DEFAULT_SIGNATURE
      known = {s for lv in self._models[model].versions.values() for s in lv.signatures} \
          if model != _UNKNOWN else set()
      if signature not in known:
        signature = _UNKNOWN
    self._metrics.requests.labels(api, model, signature).inc()
    start = time.perf_counter()
    try:
      response = handler(request)
    except RpcError as e:
      failure = e
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("%s failed", api)
      failure = RpcError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {_first_line(e)}")
    else:
      if api == "predict":
        self._metrics.latency.labels(model, signature).observe(time.perf_counter() - start)
      return response
    self._metrics.errors.labels(api, model, signature, failure.code.name).inc()
    context.abort(failure.code, failure.message)


def _first_line(e: BaseException) -> str:
  """A one-line summary of ``e`` (TF errors carry graph stack noise around the cause)."""
  text = e.message if isinstance(e, tf.errors.OpError) else str(e)
  lines = [line.strip() for line in text.splitlines()]
  noise = ("[[", "<stack", "Detected at", "Graph execution error")
  useful = [line for line in lines if line and not line.startswith(noise)]
  return " ".join(useful)[:500]
