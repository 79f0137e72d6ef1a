"""The model server's Prometheus metrics and the HTTP endpoint that exposes them.

This module owns the metric names and labels ``melody serve`` reports (request latency,
request and error counts, loaded versions, load attempts, warmup replays, batch sizes,
Predict calls in flight), kept in a registry of the server's own so that two servers in
one process never share counters, and the small threaded HTTP server that answers scrapes
at the monitoring path (and at ``/metrics``).
"""

import http.server
import threading
from typing import Callable, Optional

import numpy as np
import prometheus_client


class ServerMetrics:
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
    self.text_cut = prometheus_client.Counter(
        "melody_serving_request_text_cut",
        "Request texts longer than the intent model reads, cut at a word boundary.",
        ["model", "signature"], registry=r)
    self.predicts_in_flight = prometheus_client.Gauge(
        "melody_serving_predicts_in_flight",
        "Predict calls admitted and not yet answered.", registry=r)

  def watch_predicts_in_flight(self, count: Callable[[], int]) -> None:
    """Reads ``melody_serving_predicts_in_flight`` from ``count()`` at each scrape."""
    self.predicts_in_flight.set_function(count)

  def observe_model_call(self, model: str, signature: str, requests: int, rows: int) -> None:
    """Records one model call that served ``requests`` requests with ``rows`` rows."""
    self.batch_rows.labels(model, signature).observe(rows)
    self.batch_requests.labels(model, signature).observe(requests)

  def observe_text_cut(self, model: str, signature: str, cut) -> None:
    """Counts the rows of a ``text_cut`` output (1 = cut) of one model call."""
    count = int(np.sum(cut))
    if count:
      self.text_cut.labels(model, signature).inc(count)


class MetricsHttpServer:
  """Serves a registry's metrics page over HTTP on a thread of its own.

  Args:
    registry: The registry to expose.
    path: The monitoring path (``/metrics`` is answered too).
  """

  def __init__(self, registry: prometheus_client.CollectorRegistry, path: str):
    self._registry = registry
    self._path = path
    self._http: Optional[http.server.ThreadingHTTPServer] = None

  @property
  def port(self) -> Optional[int]:
    """The bound port, or None before ``start``."""
    return self._http.server_address[1] if self._http is not None else None

  def start(self, host: str, port: int) -> int:
    """Binds ``host:port`` (0 picks a free port), starts serving and returns the port."""
    registry, path = self._registry, self._path

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

    self._http = http.server.ThreadingHTTPServer((host, port), Handler)
    self._http.daemon_threads = True
    threading.Thread(target=self._http.serve_forever, name="melody-metrics",
                     daemon=True).start()
    return self.port

  def stop(self) -> None:
    """Stops serving and closes the socket (no-op when not started)."""
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
