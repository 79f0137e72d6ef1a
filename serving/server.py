"""Melody's TF Serving-compatible gRPC model server, generic over SavedModels.

This module owns :class:`ModelServer`, the object ``melody serve`` runs and tests and the
pipeline's InfraValidator embed: it assembles the parts (``serving.version_manager`` loads,
warms up, hot-swaps and unloads versions; ``serving.dispatch`` resolves and answers
requests, with optional batching; ``serving.grpc_services`` puts TF Serving's
PredictionService and ModelService and the gRPC health service on a port;
``serving.rest_server`` puts TF Serving's REST API and the metrics page on another;
``serving.server_metrics`` counts and exposes Prometheus metrics) and runs their
lifecycle: start once the versions on disk are loaded, keep health in step with what is
loaded, and drain on stop: health turns NOT_SERVING at once and keeps answering, new calls
are refused, and running calls get the grace period, after which the server stops
without waiting for model calls that are still running (they cannot be interrupted; the
process decides whether to wait for them). The process around it (flags, signals) is
``serving.server_main``.
"""

import dataclasses
import logging
import threading
import time
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
import prometheus_client

from serving import dispatch
from serving import grpc_services
from serving import model_config
from serving import reconfigure
from serving import rest_api
from serving import rest_server
from serving import server_metrics
from serving import tensors
from serving import tls as tls_lib
from serving import version_manager

_LOG = logging.getLogger("melody.serving")

# After the grace period, how long stopping may still take: answers of calls that just
# finished are sent, and batch workers get to notice the stop.
_STOP_MARGIN_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """How the server runs (the models come separately).

  Attributes:
    host: Interface to bind; 127.0.0.1 keeps it local.
    port: gRPC port; 0 picks a free one (see ``ModelServer.port``).
    rest_api_port: TF Serving REST API port (``serving.rest_server``), which also serves
      the metrics page; 0 picks a free one, None disables REST.
    rest_api_timeout_seconds: Deadline of each REST call (0: none).
    metrics_port: A separate port serving only the metrics page; 0 picks a free one,
      None for none.
    monitoring: Whether and at which path metrics are exposed.
    enable_batching: Merge concurrent Predict calls per (model, signature).
    batching: Batching parameters.
    file_system_poll_wait_seconds: Period of the version directory poll; 0 disables
      polling after start (``poll_file_system`` still works).
    max_workers: gRPC handler threads (bounds concurrent RPCs, hence batch fill).
    reserved_workers: Handler threads Predict calls never take, so GetModelStatus,
      GetModelMetadata and health answer while every Predict slot is busy: at most
      ``max_workers - reserved_workers`` (at least 1) Predict calls run at once, and
      the ones past that answer UNAVAILABLE at once.
    max_message_bytes: gRPC send/receive message limit.
    max_tensor_elements: Largest tensor (in elements) a request may carry.
    max_load_retries: Extra attempts, one per poll, at loading a failing version before
      waiting for its files to change.
    grace_seconds: How long ``stop`` lets in-flight requests finish.
    tls: Certificate files for the gRPC and REST ports (``serving.tls``); None serves
      plaintext. With a client CA, clients must present a certificate it signed.
  """
  host: str = "127.0.0.1"
  port: int = 8500
  rest_api_port: Optional[int] = None
  rest_api_timeout_seconds: float = 30.0
  metrics_port: Optional[int] = None
  monitoring: model_config.MonitoringConfig = model_config.MonitoringConfig()
  enable_batching: bool = False
  batching: model_config.BatchingParameters = model_config.BatchingParameters()
  file_system_poll_wait_seconds: float = 1.0
  max_workers: int = 32
  reserved_workers: int = 4
  max_message_bytes: int = 64 << 20
  max_tensor_elements: int = tensors.DEFAULT_MAX_ELEMENTS
  max_load_retries: int = 2
  grace_seconds: float = 10.0
  tls: Optional[tls_lib.TlsFiles] = None

  def __post_init__(self):
    if not 0 <= self.port < 65536:
      raise ValueError(f"port {self.port} is not in [0, 65535]")
    for name in ("rest_api_port", "metrics_port"):
      value = getattr(self, name)
      if value is not None and not 0 <= value < 65536:
        raise ValueError(f"{name} {value} is not in [0, 65535]")
    if self.rest_api_timeout_seconds < 0:
      raise ValueError("rest_api_timeout_seconds must be >= 0, got "
                       f"{self.rest_api_timeout_seconds}")
    if self.file_system_poll_wait_seconds < 0:
      raise ValueError("file_system_poll_wait_seconds must be >= 0, got "
                       f"{self.file_system_poll_wait_seconds}")
    if self.max_workers < 1:
      raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
    if self.reserved_workers < 0:
      raise ValueError(f"reserved_workers must be >= 0, got {self.reserved_workers}")
    if self.grace_seconds < 0:
      raise ValueError(f"grace_seconds must be >= 0, got {self.grace_seconds}")


class ModelServer:
  """A TF Serving-compatible gRPC server for directories of SavedModel versions.

  Args:
    models: The models to serve.
    options: Ports, batching, polling and limits.
    validators: Optional per-request checks, ``{model: {signature: fn}}``; ``fn`` gets
      the decoded inputs and raises ``ValueError`` (naming the field) to reject them.

  Use ``start()`` / ``stop()`` or a ``with`` block; ``port``, ``rest_api_port`` and
  ``metrics_port`` are the bound ports.
  """

  def __init__(self, models: Sequence[model_config.ModelEntry],
               options: ServerOptions = ServerOptions(),
               validators: Optional[Mapping[str, Mapping[str, dispatch.Validator]]] = None):
    if not models:
      raise ValueError("no models to serve")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
      raise ValueError(f"model names repeat: {names}")
    self._options = options
    self._metrics = server_metrics.ServerMetrics()
    self._health = health.HealthServicer()
    self._manager = version_manager.VersionManager(
        models, self._metrics, replay=self._replay_warmup,
        max_load_retries=options.max_load_retries, on_poll=self._update_health)
    self._dispatcher = dispatch.Dispatcher(
        self._manager.models, self._metrics, options.max_tensor_elements,
        max_concurrent_predicts=max(1, options.max_workers - options.reserved_workers))
    for model, by_signature in (validators or {}).items():
      for signature, fn in by_signature.items():
        self.register_validator(model, signature, fn)
    self._stop_lock = threading.Lock()
    self._stopped = False
    self._started = False
    self._grpc: Optional[grpc.Server] = None
    self._http: Optional[server_metrics.MetricsHttpServer] = None
    self._rest: Optional[rest_server.RestServer] = None
    self._port = 0

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
  def rest_api_port(self) -> Optional[int]:
    """The bound REST port, or None when REST is off."""
    return self._rest.port if self._rest is not None else None

  @property
  def metrics_port(self) -> Optional[int]:
    """The bound metrics HTTP port, or None when metrics are off."""
    return self._http.port if self._http is not None else None

  @property
  def target(self) -> str:
    """``host:port`` for a client channel."""
    return f"{bracket_host(self._options.host)}:{self._port}"

  @property
  def registry(self) -> prometheus_client.CollectorRegistry:
    """This server's Prometheus registry (for tests and embedding)."""
    return self._metrics.registry

  @property
  def options(self) -> ServerOptions:
    return self._options

  @property
  def draining(self) -> bool:
    """Whether ``stop`` has begun: health is NOT_SERVING and new calls are refused."""
    return self._dispatcher.draining

  def register_validator(self, model: str, signature: str, fn: dispatch.Validator) -> None:
    """Adds (or replaces) the input validator of one model signature."""
    self._dispatcher.register_validator(model, signature, fn)

  def log_requests(self, log) -> None:
    """Appends every answered Predict call to ``log`` (a ``serving.request_log.RequestLog``)."""
    self._dispatcher.request_log = log

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
      self._dispatcher.start_batching(self._options.batching)
    self.poll_file_system()
    self._grpc = grpc_services.build_server(self._dispatcher, self._health,
                                            self._options.max_workers,
                                            self._options.max_message_bytes,
                                            self.reload_config)
    credentials = (tls_lib.grpc_server_credentials(self._options.tls)
                   if self._options.tls is not None else None)
    self._port = grpc_services.bind(
        self._grpc, f"{bracket_host(self._options.host)}:{self._options.port}", credentials)
    self._grpc.start()
    if self._options.rest_api_port is not None:
      self._rest = rest_server.RestServer(
          rest_api.RestApi(self._dispatcher), self._metrics.registry,
          self._options.monitoring, self._options.rest_api_timeout_seconds,
          self._options.max_message_bytes)
      self._rest.start(self._options.host, self._options.rest_api_port, self._options.tls)
    if self._options.metrics_port is not None and self._options.monitoring.enable:
      self._http = server_metrics.MetricsHttpServer(self._metrics.registry,
                                                    self._options.monitoring.path)
      self._http.start(self._options.host, self._options.metrics_port)
    if self._options.file_system_poll_wait_seconds > 0:
      self._manager.start_polling(self._options.file_system_poll_wait_seconds)
    _LOG.info("serving %s on %s", sorted(self._manager.models), self.target)
    return self

  def stop(self, grace: Optional[float] = None) -> int:
    """Drains, then stops; returns how many Predict calls are still running.

    At once: health reports NOT_SERVING for every service (and keeps answering), new
    Predict and GetModelMetadata calls answer UNAVAILABLE, and queued batches run
    without waiting to fill. Predict calls already running get up to ``grace`` seconds.
    Then the gRPC server stops (cancelling calls still running, whose clients get
    UNAVAILABLE), and so do the batch workers, the poller and the metrics page, within
    about a second more. A model call cannot be interrupted: its thread keeps running,
    and a process that must end on time exits without waiting for it.

    Args:
      grace: Seconds running calls get (default ``ServerOptions.grace_seconds``).

    Returns:
      The number of Predict calls still running when the server stopped.
    """
    with self._stop_lock:
      if self._stopped or not self._started:
        self._stopped = True
        return 0
      self._stopped = True
    grace = self._options.grace_seconds if grace is None else grace
    self._health.enter_graceful_shutdown()
    self._dispatcher.start_draining()
    self._manager.stop_polling()
    self._dispatcher.flush_batches()  # Queued requests must not wait for batches to fill.
    end = time.monotonic() + grace
    idle = self._dispatcher.wait_for_predicts(grace)
    if self._grpc is not None:
      # Once idle, the answers just returned may still be on their way: give them what
      # is left of the grace period (stop returns as soon as they are sent).
      left = max(_STOP_MARGIN_SECONDS, end - time.monotonic()) if idle else 0
      self._grpc.stop(left).wait(left + _STOP_MARGIN_SECONDS)
    self._dispatcher.stop_batching(timeout=_STOP_MARGIN_SECONDS)
    self._manager.join_poller(timeout=_STOP_MARGIN_SECONDS)  # A load is not waited for.
    if self._rest is not None:
      self._rest.stop()
    if self._http is not None:
      self._http.stop()
    running = self._dispatcher.predicts_in_flight()
    if running:
      _LOG.warning("server on %s stopped after %.1f s of grace with %d Predict call(s) "
                   "still running", self.target, grace, running)
    else:
      _LOG.info("server on %s stopped", self.target)
    return running

  def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
    """Blocks until the server stops or ``timeout`` passes; True if it stopped."""
    return self._grpc.wait_for_termination(timeout) if self._grpc else True

  def __enter__(self) -> "ModelServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # ------------------------------------------------------------------ versions

  def pending_batch_rows(self) -> int:
    """Rows waiting in batch queues (0 without batching)."""
    return self._dispatcher.pending_batch_rows()

  def loaded_versions(self, model: str) -> Tuple[int, ...]:
    """The loaded versions of ``model``, ascending."""
    return self._manager.loaded_versions(model)

  def wait_for_versions(self, model: str, versions: Iterable[int],
                        timeout: float) -> bool:
    """Waits until ``model``'s loaded versions are exactly ``versions``; False on timeout."""
    return self._manager.wait_for_versions(model, versions, timeout)

  def poll_file_system(self) -> None:
    """Loads new versions, swaps them in and unloads old ones, for every model, now."""
    self._manager.poll()

  def reload_config(self, entries: Sequence[model_config.ModelEntry]) -> None:
    """Applies a new ``models.config`` to the served models: version policies and labels
    change in place (``serving.reconfigure``); the models and base paths must stay.

    Raises:
      ValueError: the config adds or removes a model, or ``reconfigure`` refuses an entry.
    """
    names = sorted(e.name for e in entries)
    if names != sorted(self._manager.models):
      raise ValueError(f"a reload must name the served models {sorted(self._manager.models)}"
                       f", got {names} (adding or removing one needs a restart)")
    for entry in entries:
      reconfigure.reconfigure(self._manager, entry)

  def _replay_warmup(self, model, loaded, request) -> None:
    # The dispatcher is built after the manager (it reads the manager's models), and no
    # version loads before both exist.
    self._dispatcher.replay_warmup(model, loaded, request)

  def _update_health(self) -> None:
    all_ready = True
    for name, model in self._manager.models.items():
      ready = bool(model.versions)
      all_ready &= ready
      self._health.set(name, health_pb2.HealthCheckResponse.SERVING if ready
                       else health_pb2.HealthCheckResponse.NOT_SERVING)
    if not self._stopped:
      self._health.set("", health_pb2.HealthCheckResponse.SERVING if all_ready
                       else health_pb2.HealthCheckResponse.NOT_SERVING)


def bracket_host(host: str) -> str:
  """``host`` as it goes before ``:port`` (IPv6 literals in brackets)."""
  return f"[{host}]" if ":" in host and not host.startswith("[") else host
