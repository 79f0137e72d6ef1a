"""Melody's TF Serving-compatible gRPC model server, generic over SavedModels.

This module owns the local model server that ``melody serve`` starts. It implements
``tensorflow.serving.PredictionService`` (Predict and GetModelMetadata; Classify, Regress
and MultiInference answer UNIMPLEMENTED) and ``tensorflow.serving.ModelService``
(GetModelStatus) on the official ``tensorflow_serving.apis`` protos, so clients written
for the stock ``tensorflow_model_server`` work unchanged. It serves whatever signatures a
SavedModel has, validating each request against the signature's
``structured_input_signature`` before calling it.

Each model's base directory is polled for numbered versions. A new version is loaded
completely, its ``assets.extra/tf_serving_warmup_requests`` replayed, and only then is
the model's version map replaced in one assignment; requests already holding the old
version finish on it, so none fails during a swap. Versions outside the version policy
are then unloaded. Optional server-side batching (``serving.batching``), the gRPC health
service, Prometheus metrics over HTTP and graceful shutdown complete it.
"""

import argparse
import concurrent.futures
import dataclasses
import gc
import http.server
import importlib
import logging
import os
import signal
import sys
import threading
import time
import types
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import prometheus_client
import tensorflow as tf

from google.protobuf import text_format
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import batching
from serving import grpc_env
from serving import model_config
from serving import tensors

_LOG = logging.getLogger("melody.serving")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000
_UNKNOWN = "<unknown>"

# A validator gets the decoded inputs of one request; a ValueError it raises is the
# client's fault (INVALID_ARGUMENT), anything else is the server's (INTERNAL).
Validator = Callable[[Mapping[str, np.ndarray]], None]

_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """How the server runs (the models come separately).

  Attributes:
    host: Interface to bind; 127.0.0.1 keeps it local.
    port: gRPC port; 0 picks a free one (see ``ModelServer.port``).
    metrics_port: Prometheus HTTP port; 0 picks a free one, None disables metrics.
    monitoring: Whether and at which path metrics are exposed.
    enable_batching: Merge concurrent Predict calls per (model, signature).
    batching: Batching parameters.
    file_system_poll_wait_seconds: Period of the version directory poll; 0 disables
      polling after start (``poll_file_system`` still works).
    max_workers: gRPC handler threads (bounds concurrent RPCs, hence batch fill).
    max_message_bytes: gRPC send/receive message limit.
    max_tensor_elements: Largest tensor (in elements) a request may carry.
    max_load_retries: Extra attempts, one per poll, at loading a failing version before
      waiting for its files to change.
    grace_seconds: How long ``stop`` lets in-flight requests finish.
  """
  host: str = "127.0.0.1"
  port: int = 8500
  metrics_port: Optional[int] = None
  monitoring: model_config.MonitoringConfig = model_config.MonitoringConfig()
  enable_batching: bool = False
  batching: model_config.BatchingParameters = model_config.BatchingParameters()
  file_system_poll_wait_seconds: float = 1.0
  max_workers: int = 32
  max_message_bytes: int = 64 << 20
  max_tensor_elements: int = tensors.DEFAULT_MAX_ELEMENTS
  max_load_retries: int = 2
  grace_seconds: float = 10.0

  def __post_init__(self):
    if not 0 <= self.port < 65536:
      raise ValueError(f"port {self.port} is not in [0, 65535]")
    if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
      raise ValueError(f"metrics_port {self.metrics_port} is not in [0, 65535]")
    if self.file_system_poll_wait_seconds < 0:
      raise ValueError("file_system_poll_wait_seconds must be >= 0, got "
                       f"{self.file_system_poll_wait_seconds}")
    if self.max_workers < 1:
      raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
    if self.grace_seconds < 0:
      raise ValueError(f"grace_seconds must be >= 0, got {self.grace_seconds}")


class _RpcError(Exception):
  """An RPC answer other than OK, raised inside handlers."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


@dataclasses.dataclass(frozen=True)
class Signature:
  """One callable signature of a loaded version.

  ``flat_order`` (when the loaded function exposes its flat inputs) lets :meth:`call`
  pass the decoded tensors positionally to the function's flat call, skipping the
  per-call binding and type check of keyword arguments against the structured
  signature (~0.5 ms of Python for the 22 inputs of ``rank``); the inputs were already
  checked against the same specs by ``tensors.decode_inputs``.
  """
  name: str
  function: object
  inputs: Mapping[str, tensors.InputSpec]
  outputs: Tuple[str, ...]
  batchable: bool
  flat_order: Optional[Tuple[str, ...]] = None

  def call(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    if self.flat_order is not None:
      result = self.function._call_flat(  # pylint: disable=protected-access
          [tf.convert_to_tensor(arrays[k]) for k in self.flat_order],
          self.function.captured_inputs)
    else:
      result = self.function(**{k: tf.convert_to_tensor(v) for k, v in arrays.items()})
    return {k: v.numpy() for k, v in result.items()}


def _flat_order(function, inputs: Mapping[str, tensors.InputSpec]) -> Optional[Tuple[str, ...]]:
  """The input names in the function's flat (positional) order, or None when the
  function has no flat entry point or its flat inputs are not exactly ``inputs``."""
  try:
    if not callable(getattr(function, "_call_flat", None)):
      return None
    count = len(function.inputs) - len(function.captured_inputs)
    names = tuple(t.name.split(":")[0] for t in function.inputs[:count])
  except (AttributeError, TypeError):
    return None
  if sorted(names) != sorted(inputs):
    return None
  return names


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
  """A fully loaded (and warmed up) model version."""
  version: int
  path: str
  module: object
  signatures: Mapping[str, Signature]
  signature_defs: Mapping[str, object]


class _Model:
  """Mutable state of one served model; ``versions`` is swapped, never mutated."""

  def __init__(self, entry: model_config.ModelEntry):
    self.entry = entry
    self.base_path = os.path.abspath(entry.base_path)
    self.versions: Mapping[int, LoadedVersion] = types.MappingProxyType({})
    self.status: Dict[int, Tuple[int, int, str]] = {}
    self.failures: Dict[int, Tuple[int, float]] = {}


class _Metrics:
  """Prometheus metrics of one server, in a registry of their own."""

  def __init__(self):
    self.registry = prometheus_client.CollectorRegistry()
    r = self.registry
    self.latency = prometheus_client.Histogram(
        "melody_serving_request_latency_seconds", "Predict latency.",
        ["model", "signature"], registry=r,
        buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    self.requests = prometheus_client.Counter(
        "melody_serving_requests", "RPCs by API, model and signature.",
        ["api", "model", "signature"], registry=r)
    self.errors = prometheus_client.Counter(
        "melody_serving_errors", "Failed RPCs by gRPC code.",
        ["api", "model", "signature", "code"], registry=r)
    self.loaded = prometheus_client.Gauge(
        "melody_serving_loaded_version", "1 for each loaded model version.",
        ["model", "version"], registry=r)
    self.loads = prometheus_client.Counter(
        "melody_serving_model_loads", "Version load attempts by result.",
        ["model", "result"], registry=r)
    self.warmup = prometheus_client.Counter(
        "melody_serving_warmup_requests", "Warmup records replayed.", ["model"], registry=r)
    self.batch_rows = prometheus_client.Histogram(
        "melody_serving_batch_rows", "Rows per model call (batched or not).",
        ["model", "signature"], registry=r,
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
    self.batch_requests = prometheus_client.Histogram(
        "melody_serving_batch_requests", "Requests merged into one model call.",
        ["model", "signature"], registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128))


class ModelServer:
  """A TF Serving-compatible gRPC server for directories of SavedModel versions.

  Args:
    models: The models to serve.
    options: Ports, batching, polling and limits.
    validators: Optional per-request checks, ``{model: {signature: fn}}``; ``fn`` gets
      the decoded inputs and raises ``ValueError`` (naming the field) to reject them.

  Use ``start()`` / ``stop()`` or a ``with`` block; ``port`` and ``metrics_port`` are the
  bound ports.
  """

  def __init__(self, models: Sequence[model_config.ModelEntry],
               options: ServerOptions = ServerOptions(),
               validators: Optional[Mapping[str, Mapping[str, Validator]]] = None):
    if not models:
      raise ValueError("no models to serve")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
      raise ValueError(f"model names repeat: {names}")
    self._options = options
    self._models = {m.name: _Model(m) for m in models}
    self._validators: Dict[Tuple[str, str], Validator] = {}
    for model, by_signature in (validators or {}).items():
      for signature, fn in by_signature.items():
        self.register_validator(model, signature, fn)
    self._metrics = _Metrics()
    self._changed = threading.Condition()
    self._poll_lock = threading.Lock()
    self._stop_event = threading.Event()
    self._stop_lock = threading.Lock()
    self._stopped = False
    self._started = False
    self._scheduler: Optional[batching.BatchScheduler] = None
    self._grpc: Optional[grpc.Server] = None
    self._health = health.HealthServicer()
    self._poller: Optional[threading.Thread] = None
    self._http: Optional[http.server.ThreadingHTTPServer] = None
    self._port = 0
    self._metrics_port: Optional[int] = None

  @classmethod
  def from_config_file(cls, path: str, options: ServerOptions = ServerOptions(),
                       validators=None) -> "ModelServer":
    """A server for the models of a ``models.config`` file."""
    return cls(model_config.read_model_config(path), options, validators)

  # ----------------------------------------------------------------- lifecycle

  @property
  def port(self) -> int:
    """The bound gRPC port."""
    return self._port

  @property
  def metrics_port(self) -> Optional[int]:
    """The bound metrics HTTP port, or None when metrics are off."""
    return self._metrics_port

  @property
  def target(self) -> str:
    """``host:port`` for a client channel."""
    return f"{_bracket(self._options.host)}:{self._port}"

  @property
  def registry(self) -> prometheus_client.CollectorRegistry:
    """This server's Prometheus registry (for tests and embedding)."""
    return self._metrics.registry

  @property
  def options(self) -> ServerOptions:
    return self._options

  def register_validator(self, model: str, signature: str, fn: Validator) -> None:
    """Adds (or replaces) the input validator of one model signature."""
    if model not in self._models:
      raise ValueError(f"validator for unknown model {model!r}; served: "
                       f"{sorted(self._models)}")
    if not callable(fn):
      raise ValueError(f"validator for {model}/{signature} is not callable: {fn!r}")
    self._validators[(model, signature)] = fn

  def start(self) -> "ModelServer":
    """Loads the versions present now, then starts serving.

    Returns once the gRPC port is bound; models without a version yet keep being
    polled (health reports SERVING once every model has one).
    """
    if self._started:
      raise RuntimeError("server already started")
    self._started = True
    self._health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    if self._options.enable_batching:
      self._scheduler = batching.BatchScheduler(
          self._options.batching,
          lambda key, requests, rows: self._on_batch(key[0], requests, rows)).start()
    self.poll_file_system()
    limit = self._options.max_message_bytes
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=self._options.max_workers,
                                              thread_name_prefix="melody-rpc"),
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(self), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._grpc)
    health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
    address = f"{_bracket(self._options.host)}:{self._options.port}"
    try:
      self._port = self._grpc.add_insecure_port(address)
    except RuntimeError as e:  # grpcio raises rather than returning 0 on some versions.
      raise OSError(f"could not bind gRPC to {address}: {e}") from e
    if not self._port:
      raise OSError(f"could not bind gRPC to {address}")
    self._grpc.start()
    if self._options.metrics_port is not None and self._options.monitoring.enable:
      self._start_metrics_http()
    if self._options.file_system_poll_wait_seconds > 0:
      self._poller = threading.Thread(target=self._poll_loop, name="melody-fs-poll",
                                      daemon=True)
      self._poller.start()
    _LOG.info("serving %s on %s", sorted(self._models), self.target)
    return self

  def stop(self, grace: Optional[float] = None) -> None:
    """Stops accepting RPCs, lets in-flight ones finish within ``grace`` seconds."""
    with self._stop_lock:
      if self._stopped or not self._started:
        self._stopped = True
        return
      self._stopped = True
    grace = self._options.grace_seconds if grace is None else grace
    self._health.enter_graceful_shutdown()
    self._stop_event.set()
    if self._scheduler is not None:
      self._scheduler.flush()  # Queued requests must not wait for batches to fill.
    if self._grpc is not None:
      self._grpc.stop(grace).wait()
    if self._scheduler is not None:
      self._scheduler.stop()
    if self._poller is not None:
      self._poller.join()
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
    _LOG.info("server on %s stopped", self.target)

  def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
    """Blocks until the server stops or ``timeout`` passes; True if it stopped."""
    return self._grpc.wait_for_termination(timeout) if self._grpc else True

  def __enter__(self) -> "ModelServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # ------------------------------------------------------------ version loading

  def pending_batch_rows(self) -> int:
    """Rows waiting in batch queues (0 without batching)."""
    return self._scheduler.pending_rows() if self._scheduler is not None else 0

  def loaded_versions(self, model: str) -> Tuple[int, ...]:
    """The loaded versions of ``model``, ascending."""
    return tuple(sorted(self._model(model).versions))

  def wait_for_versions(self, model: str, versions: Iterable[int],
                        timeout: float) -> bool:
    """Waits until ``model``'s loaded versions are exactly ``versions``; False on timeout."""
    wanted = tuple(sorted(versions))
    deadline = time.monotonic() + timeout
    with self._changed:
      while self.loaded_versions(model) != wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          return False
        self._changed.wait(remaining)
    return True

  def poll_file_system(self) -> None:
    """Loads new versions, swaps them in and unloads old ones, for every model, now."""
    with self._poll_lock:
      for model in self._models.values():
        try:
          self._reconcile(model)
        except Exception:  # pylint: disable=broad-except
          _LOG.exception("polling %s failed", model.base_path)
      self._update_health()

  def _poll_loop(self) -> None:
    while not self._stop_event.wait(self._options.file_system_poll_wait_seconds):
      self.poll_file_system()

  def _reconcile(self, model: _Model) -> None:
    if not os.path.isdir(model.base_path):
      _LOG.warning("base path %s of model %s does not exist (yet)", model.base_path,
                   model.entry.name)
      return
    desired = model.entry.version_policy.select(model_config.list_versions(model.base_path))
    for version in sorted(desired, reverse=True):
      if version not in model.versions and self._should_try(model, version):
        self._load(model, version)
    keep = set(desired) & set(model.versions)
    if desired and not keep:
      return  # None of the wanted versions loaded: keep serving what is there.
    for version in sorted(set(model.versions) - keep):
      self._unload(model, version)

  def _should_try(self, model: _Model, version: int) -> bool:
    failure = model.failures.get(version)
    if failure is None:
      return True
    attempts, stamp = failure
    return (attempts <= self._options.max_load_retries
            or _stamp(os.path.join(model.base_path, str(version))) != stamp)

  def _load(self, model: _Model, version: int) -> None:
    name = model.entry.name
    path = os.path.join(model.base_path, str(version))
    stamp = _stamp(path)
    model.status[version] = (_State.LOADING, error_codes_pb2.OK, "")
    _LOG.info("loading %s version %d from %s", name, version, path)
    try:
      loaded = _load_version(path, version)
      self._warm_up(model, loaded)
    except Exception as e:  # pylint: disable=broad-except
      attempts = model.failures.get(version, (0, stamp))[0] + 1
      if model.failures.get(version, (0, stamp))[1] != stamp:
        attempts = 1
      model.failures[version] = (attempts, stamp)
      model.status[version] = (_State.END, error_codes_pb2.UNKNOWN,
                               f"loading version {version} failed: {e}")
      self._metrics.loads.labels(name, "error").inc()
      _LOG.error("loading %s version %d failed: %s", name, version, e)
      return
    model.failures.pop(version, None)
    with self._changed:
      model.versions = types.MappingProxyType({**model.versions, version: loaded})
      model.status[version] = (_State.AVAILABLE, error_codes_pb2.OK, "")
      self._changed.notify_all()
    self._metrics.loads.labels(name, "ok").inc()
    self._metrics.loaded.labels(name, str(version)).set(1)
    _settle_heap()
    _LOG.info("%s version %d is available (signatures %s)", name, version,
              sorted(loaded.signatures))

  def _unload(self, model: _Model, version: int) -> None:
    with self._changed:
      model.status[version] = (_State.UNLOADING, error_codes_pb2.OK, "")
      model.versions = types.MappingProxyType(
          {v: lv for v, lv in model.versions.items() if v != version})
      # In-flight requests still hold the LoadedVersion; it is freed after them.
      model.status[version] = (_State.END, error_codes_pb2.OK, "")
      self._changed.notify_all()
    try:
      self._metrics.loaded.remove(model.entry.name, str(version))
    except KeyError:
      pass
    _settle_heap(unfreeze=True)
    _LOG.info("unloaded %s version %d", model.entry.name, version)

  def _warm_up(self, model: _Model, loaded: LoadedVersion) -> None:
    path = os.path.join(loaded.path, WARMUP_FILE)
    if not os.path.isfile(path):
      return
    records = [r.numpy() for r in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1)]
    if len(records) > MAX_WARMUP_RECORDS:
      raise ValueError(f"{path} holds more than {MAX_WARMUP_RECORDS} warmup records")
    for i, record in enumerate(records):
      log = prediction_log_pb2.PredictionLog.FromString(record)
      if log.WhichOneof("log_type") != "predict_log":
        raise ValueError(f"warmup record {i} is a {log.WhichOneof('log_type')}; only "
                         "predict_log is supported by this server")
      request = log.predict_log.request
      try:
        self._predict_on(model, loaded, request, batched=False)
      except _RpcError as e:
        raise ValueError(f"warmup record {i} failed: {e.code.name}: {e.message}") from e
      self._metrics.warmup.labels(model.entry.name).inc()

  def _update_health(self) -> None:
    all_ready = True
    for name, model in self._models.items():
      ready = bool(model.versions)
      all_ready &= ready
      self._health.set(name, health_pb2.HealthCheckResponse.SERVING if ready
                       else health_pb2.HealthCheckResponse.NOT_SERVING)
    if not self._stopped:
      self._health.set("", health_pb2.HealthCheckResponse.SERVING if all_ready
                       else health_pb2.HealthCheckResponse.NOT_SERVING)

  # ------------------------------------------------------------------ requests

  def _model(self, name: str) -> _Model:
    model = self._models.get(name)
    if model is None:
      raise _RpcError(grpc.StatusCode.NOT_FOUND,
                      f"model '{name}' is not served; served models: {sorted(self._models)}")
    return model

  def _resolve(self, spec) -> Tuple[_Model, LoadedVersion]:
    model = self._model(spec.name)
    versions = model.versions  # One snapshot for the whole request.
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
      version = spec.version.value
    elif choice == "version_label":
      labels = model.entry.labels
      if spec.version_label not in labels:
        raise _RpcError(grpc.StatusCode.NOT_FOUND,
                        f"model '{spec.name}' has no version label '{spec.version_label}'; "
                        f"labels: {sorted(labels)}")
      version = labels[spec.version_label]
    else:
      if not versions:
        raise _RpcError(grpc.StatusCode.NOT_FOUND,
                        f"model '{spec.name}' has no loaded version yet")
      version = max(versions)
    loaded = versions.get(version)
    if loaded is None:
      label = f" (label '{spec.version_label}')" if choice == "version_label" else ""
      raise _RpcError(grpc.StatusCode.NOT_FOUND,
                      f"model '{spec.name}' version {version}{label} is not loaded; loaded "
                      f"versions: {sorted(versions)}")
    return model, loaded

  def _signature(self, loaded: LoadedVersion, spec) -> Signature:
    name = spec.signature_name or DEFAULT_SIGNATURE
    signature = loaded.signatures.get(name)
    if signature is None:
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"signature '{name}' not found in model '{spec.name}' version "
                      f"{loaded.version}; available signatures: {sorted(loaded.signatures)}")
    return signature

  def _predict_on(self, model: _Model, loaded: LoadedVersion, request,
                  batched: bool = True) -> Dict[str, np.ndarray]:
    signature = self._signature(loaded, request.model_spec)
    for name in request.output_filter:
      if name not in signature.outputs:
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"output_filter names unknown output '{name}'; signature "
                        f"'{signature.name}' outputs {list(signature.outputs)}")
    try:
      arrays = tensors.decode_inputs(request.inputs, signature.inputs, signature.name,
                                     self._options.max_tensor_elements)
    except tensors.InputError as e:
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
    validator = self._validators.get((model.entry.name, signature.name))
    if validator is not None:
      try:
        validator(arrays)
      except ValueError as e:
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
      except Exception as e:  # pylint: disable=broad-except
        raise _RpcError(grpc.StatusCode.INTERNAL, f"input validator failed: {e!r}") from e
    rows = tensors.batch_size(arrays, signature.inputs)
    try:
      if (batched and self._scheduler is not None and signature.batchable
          and rows is not None and self._scheduler.can_batch(rows)):
        key = batching.mergeable_key((model.entry.name, loaded.version, signature.name),
                                     arrays)
        outputs = self._scheduler.run(key, signature.call, arrays, rows)
      else:
        outputs = signature.call(arrays)
        self._on_batch((model.entry.name, loaded.version, signature.name), 1, rows or 1)
    except (batching.QueueFullError, batching.SchedulerStoppedError) as e:
      raise _RpcError(grpc.StatusCode.UNAVAILABLE, str(e)) from e
    except tf.errors.InvalidArgumentError as e:
      # The graph itself rejected the values (e.g. an assert in the model).
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"signature '{signature.name}' rejected the inputs: {e.message}") from e
    except Exception as e:  # pylint: disable=broad-except
      _LOG.error("model %s version %d signature %s failed: %s", model.entry.name,
                 loaded.version, signature.name, _first_line(e),
                 exc_info=_LOG.isEnabledFor(logging.DEBUG))
      raise _RpcError(grpc.StatusCode.INTERNAL,
                      f"model '{model.entry.name}' signature '{signature.name}' failed: "
                      f"{type(e).__name__}: {_first_line(e)}") from e
    if request.output_filter:
      outputs = {k: v for k, v in outputs.items() if k in set(request.output_filter)}
    return outputs

  def _on_batch(self, prefix, requests: int, rows: int) -> None:
    model, _, signature = prefix
    self._metrics.batch_rows.labels(model, signature).observe(rows)
    self._metrics.batch_requests.labels(model, signature).observe(requests)

  def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """Answers one PredictRequest (raises ``_RpcError`` on failure)."""
    model, loaded = self._resolve(request.model_spec)
    outputs = self._predict_on(model, loaded, request)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model.entry.name
    response.model_spec.version.value = loaded.version
    response.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    for name, value in outputs.items():
      tensors.fill_tensor_proto(response.outputs[name], value)
    return response

  def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
    fields = list(request.metadata_field)
    if fields != ["signature_def"]:
      raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"metadata_field must be ['signature_def'], got {fields}")
    model, loaded = self._resolve(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = model.entry.name
    response.model_spec.version.value = loaded.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in loaded.signature_defs.items():
      signature_map.signature_def[name].CopyFrom(signature_def)
    response.metadata["signature_def"].Pack(signature_map)
    return response

  def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
    spec = request.model_spec
    model = self._model(spec.name)
    statuses = dict(model.status)
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
      _, loaded = self._resolve(spec)
      wanted = [loaded.version]
    elif choice == "version":
      if spec.version.value not in statuses:
        raise _RpcError(grpc.StatusCode.NOT_FOUND,
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

  def _start_metrics_http(self) -> None:
    registry, path = self._metrics.registry, self._options.monitoring.path

    class Handler(http.server.BaseHTTPRequestHandler):
      """Serves the metrics page at the monitoring path."""

      def do_GET(self):  # pylint: disable=invalid-name
        if self.path.split("?")[0] not in (path, "/metrics"):
          self.send_error(404, "metrics live at " + path)
          return
        body = prometheus_client.generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):  # Scrapes are not worth a log line each.
        pass

    self._http = http.server.ThreadingHTTPServer(
        (self._options.host, self._options.metrics_port), Handler)
    self._http.daemon_threads = True
    self._metrics_port = self._http.server_address[1]
    threading.Thread(target=self._http.serve_forever, name="melody-metrics",
                     daemon=True).start()

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
    except _RpcError as e:
      failure = e
    except Exception as e:  # pylint: disable=broad-except
      _LOG.exception("%s failed", api)
      failure = _RpcError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {_first_line(e)}")
    else:
      if api == "predict":
        self._metrics.latency.labels(model, signature).observe(time.perf_counter() - start)
      return response
    self._metrics.errors.labels(api, model, signature, failure.code.name).inc()
    context.abort(failure.code, failure.message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """``tensorflow.serving.PredictionService`` on a ``ModelServer``."""

  def __init__(self, server: ModelServer):
    self._server = server

  def Predict(self, request, context):  # pylint: disable=invalid-name
    return self._server.handle_rpc("predict", request, context, self._server.predict)

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return self._server.handle_rpc("metadata", request, context, self._server.metadata)

  def Classify(self, request, context):  # pylint: disable=invalid-name
    return self._server.handle_rpc("classify", request, context, _unimplemented("Classify"))

  def Regress(self, request, context):  # pylint: disable=invalid-name
    return self._server.handle_rpc("regress", request, context, _unimplemented("Regress"))

  def MultiInference(self, request, context):  # pylint: disable=invalid-name
    del request  # Has no single model_spec to count it under.
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "MultiInference is not implemented by Melody's server; use Predict")


def _unimplemented(api: str):
  def handler(request):
    del request
    raise _RpcError(grpc.StatusCode.UNIMPLEMENTED,
                    f"{api} is not implemented by Melody's server; use Predict")
  return handler


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """``tensorflow.serving.ModelService`` (status only) on a ``ModelServer``."""

  def __init__(self, server: ModelServer):
    self._server = server

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return self._server.handle_rpc("status", request, context, self._server.status)

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "config reload is not implemented; restart the server with the new "
                  "models.config (new versions are picked up without a restart)")


def _load_version(path: str, version: int) -> LoadedVersion:
  module = tensors.load_saved_model(path)
  signatures = {}
  for name, function in module.signatures.items():
    inputs = tensors.input_specs(function)
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
      raise ValueError(f"signature '{name}' does not return a dict of tensors")
    batchable = bool(inputs) and all(s.batched for s in inputs.values()) and all(
        o.shape.rank and o.shape[0] is None for o in outputs.values())
    signatures[name] = Signature(name, function, types.MappingProxyType(inputs),
                                 tuple(sorted(outputs)), batchable,
                                 _flat_order(function, inputs))
  return LoadedVersion(version=version, path=path, module=module,
                       signatures=types.MappingProxyType(signatures),
                       signature_defs=types.MappingProxyType(
                           _read_signature_defs(path, set(signatures))))


def _read_signature_defs(path: str, names) -> Dict[str, object]:
  proto = saved_model_pb2.SavedModel()
  pb = os.path.join(path, "saved_model.pb")
  if os.path.isfile(pb):
    with open(pb, "rb") as f:
      proto.ParseFromString(f.read())
  else:
    with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as f:
      text_format.Parse(f.read(), proto)
  for meta_graph in proto.meta_graphs:
    if "serve" in meta_graph.meta_info_def.tags:
      return {k: v for k, v in meta_graph.signature_def.items() if k in names}
  raise ValueError(f"{path} has no meta graph tagged 'serve'")


def _settle_heap(unfreeze: bool = False) -> None:
  """Collects, then freezes the surviving objects out of the garbage collector's view.

  A loaded SavedModel holds hundreds of thousands of Python objects; without this, each
  full collection triggered by request traffic walks all of them (tens of ms with the
  GIL held: a latency spike in whichever requests are in flight). After an unload the
  frozen generation is released first, so the old version's objects can be freed.
  """
  if unfreeze:
    gc.unfreeze()
  gc.collect()
  gc.freeze()


def _stamp(path: str) -> float:
  stamps = []
  for name in ("saved_model.pb", "saved_model.pbtxt", WARMUP_FILE):
    try:
      stamps.append(os.stat(os.path.join(path, name)).st_mtime_ns)
    except OSError:
      stamps.append(0)
  return float(sum(stamps))


def _first_line(e: BaseException) -> str:
  """A one-line summary of ``e`` (TF errors carry graph stack noise around the cause)."""
  text = e.message if isinstance(e, tf.errors.OpError) else str(e)
  lines = [line.strip() for line in text.splitlines()]
  noise = ("[[", "<stack", "Detected at", "Graph execution error")
  useful = [line for line in lines if line and not line.startswith(noise)]
  return " ".join(useful)[:500]


def _bracket(host: str) -> str:
  return f"[{host}]" if ":" in host and not host.startswith("[") else host


def load_validator(spec: str) -> Tuple[str, str, Validator]:
  """Parses ``MODEL:SIGNATURE=package.module:function`` into a validator.

  Raises:
    ValueError: ``spec`` is malformed or the function cannot be imported.
  """
  target, sep, dotted = spec.partition("=")
  model, sep2, signature = target.partition(":")
  module_name, sep3, attr = dotted.partition(":")
  if not (sep and sep2 and sep3 and model and signature and module_name and attr):
    raise ValueError(f"--input_validator {spec!r} is not MODEL:SIGNATURE=module:function")
  try:
    fn = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"--input_validator {spec!r}: cannot import {dotted}: {e}") from e
  return model, signature, fn


def server_from_args(args: argparse.Namespace) -> ModelServer:
  """Builds (without starting) the server ``melody serve`` describes."""
  if args.model_config_file:
    if args.model_name or args.model_base_path:
      raise ValueError("give either --model_config_file or --model_name with "
                       "--model_base_path, not both")
    models = model_config.read_model_config(args.model_config_file)
  elif args.model_name and args.model_base_path:
    models = (model_config.ModelEntry(args.model_name, args.model_base_path),)
  else:
    raise ValueError("give --model_config_file, or --model_name with --model_base_path")
  batching_params = model_config.BatchingParameters()
  if args.batching_parameters_file:
    batching_params = model_config.read_batching_parameters(args.batching_parameters_file)
  monitoring = model_config.MonitoringConfig()
  if args.monitoring_config_file:
    monitoring = model_config.read_monitoring_config(args.monitoring_config_file)
  metrics_port = None if args.metrics_port is not None and args.metrics_port < 0 \
      else args.metrics_port
  options = ServerOptions(
      host=args.host, port=args.port, metrics_port=metrics_port, monitoring=monitoring,
      enable_batching=bool(args.enable_batching or args.batching_parameters_file),
      batching=batching_params,
      file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
      grace_seconds=args.grace_seconds)
  server = ModelServer(models, options)
  for spec in args.input_validator or ():
    model, signature, fn = load_validator(spec)
    server.register_validator(model, signature, fn)
  return server


def main(args: Union[argparse.Namespace, Sequence[str], None] = None) -> int:
  """Runs ``melody serve`` until SIGTERM or SIGINT, then drains and exits 0.

  Args:
    args: Parsed ``melody serve`` arguments, or an argv list to parse.
  """
  if not isinstance(args, argparse.Namespace):
    from serving import cli  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog="melody serve")
    cli.add_serve_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if args is None else list(args))
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  try:
    server = server_from_args(args)
  except (ValueError, OSError) as e:
    print(f"melody serve: error: {e}", file=sys.stderr)
    return 2
  stop = threading.Event()
  previous = {}
  if threading.current_thread() is threading.main_thread():
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    server.start()
    metrics = (f", metrics on http://{_bracket(args.host)}:{server.metrics_port}"
               f"{server.options.monitoring.path}" if server.metrics_port else "")
    print(f"melody serve: gRPC on {server.target}{metrics}", flush=True)
    print(f"melody serve: transport: {grpc_env.describe()}", flush=True)
    while not stop.wait(0.5):
      pass
    print("melody serve: draining in-flight requests", flush=True)
  except OSError as e:
    print(f"melody serve: error: {e}", file=sys.stderr)
    return 2
  finally:
    server.stop()
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  print("melody serve: stopped", flush=True)
  return 0
