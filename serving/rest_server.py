"""The model server's HTTP port: TF Serving's REST API and the Prometheus page.

This module owns the HTTP transport of ``melody serve``'s REST port (``--rest_api_port``,
8501 by default, as for the stock ``tensorflow_model_server``): a threaded stdlib HTTP/1.1
server, one thread per connection (keep-alive connections idle for a minute are closed),
that hands ``/v1/...`` calls to ``serving.rest_api`` and answers scrapes of the Prometheus
page at the monitoring path (and at ``/metrics``) when monitoring is enabled. Each call
gets a deadline of ``--rest_api_timeout_in_ms`` and is treated as cancelled once its
client hangs up; how many Predict calls run at once, and the refusal of new calls while
the server drains, are the dispatcher's, shared with gRPC.
"""

import http.server
import logging
import select
import socket
import threading
import time
from typing import Optional

import prometheus_client

from serving import http_handler
from serving import model_config
from serving import rest_api
from serving import rest_json
from serving import tls

_LOG = logging.getLogger("melody.serving")


class RestServer:
  """Serves a :class:`~serving.rest_api.RestApi` and a metrics page on one HTTP port.

  Args:
    api: Answers the REST calls.
    registry: The Prometheus registry of the metrics page.
    monitoring: Whether and at which path the metrics page is served.
    timeout_seconds: Deadline of each REST call (0: none).
    max_body_bytes: Largest request body accepted (larger ones answer 413).
  """

  def __init__(self, api: rest_api.RestApi, registry: prometheus_client.CollectorRegistry,
               monitoring: model_config.MonitoringConfig, timeout_seconds: float = 30.0,
               max_body_bytes: int = 64 << 20):
    if timeout_seconds < 0:
      raise ValueError(f"REST timeout must be >= 0 seconds, got {timeout_seconds}")
    self._api = api
    self._registry = registry
    self._monitoring = monitoring
    self._timeout = timeout_seconds
    self._max_body_bytes = max_body_bytes
    self._http: Optional[http.server.ThreadingHTTPServer] = None
    self._thread: Optional[threading.Thread] = None

  @property
  def port(self) -> Optional[int]:
    """The bound port, or None before ``start``."""
    return self._http.server_address[1] if self._http is not None else None

  @property
  def max_body_bytes(self) -> int:
    return self._max_body_bytes

  def start(self, host: str, port: int, tls_files: Optional[tls.TlsFiles] = None) -> int:
    """Binds ``host:port`` (0 picks a free port), starts serving and returns the port.

    With ``tls_files`` the port speaks HTTPS (and requires client certificates when
    they name a client CA).

    Raises:
      OSError: the address cannot be bound.
    """
    handler = _handler_class(self)
    server_class = _Ipv6Server if ":" in host else http.server.ThreadingHTTPServer
    self._http = server_class((host.strip("[]"), port), handler)
    self._http.socket = tls.wrap_listening_socket(self._http.socket, tls_files)
    self._http.daemon_threads = True   # A model call past the grace period cannot hold exit.
    self._thread = threading.Thread(target=self._http.serve_forever, name="melody-rest",
                                    daemon=True)
    self._thread.start()
    return self.port

  def stop(self) -> None:
    """Stops accepting connections and closes the port (no-op when not started).

    Calls still running finish on their own threads; the dispatcher's drain is what
    waits for them.
    """
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()

  # ------------------------------------------------------------------- serving

  def answer(self, method: str, path: str, body: bytes, connected) -> tuple:
    """``(status, content type, body)`` of one request (the handler's transport aside)."""
    route = path.split("?", 1)[0]
    if (method == "GET" and self._monitoring.enable
        and route in (self._monitoring.path, "/metrics")):
      return (200, prometheus_client.CONTENT_TYPE_LATEST,
              prometheus_client.generate_latest(self._registry))
    deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
    status, doc = self._api.handle(method, path, body,
                                   rest_api.CallContext(deadline, connected))
    return status, "application/json", rest_json.dumps(doc, pretty=method == "GET")


class _Ipv6Server(http.server.ThreadingHTTPServer):
  address_family = socket.AF_INET6


def _handler_class(server: RestServer):
  """The request handler class bound to ``server``."""

  class Handler(http_handler.BaseHandler):
    """Reads one request, lets the server answer it, writes the answer."""

    def do_GET(self):  # pylint: disable=invalid-name
      self._serve("GET", b"")

    def do_POST(self):  # pylint: disable=invalid-name
      length = self.headers.get("Content-Length")
      if length is None:
        self._reply(411, {"error": "send the body with a Content-Length header"},
                    close=True)
        return
      try:
        size = int(length)
        if size < 0:
          raise ValueError(length)
      except ValueError:
        self._reply(400, {"error": f"bad Content-Length {length!r}"}, close=True)
        return
      if size > server.max_body_bytes:
        self._reply(413, {"error": f"request body of {size} bytes is over the limit of "
                                   f"{server.max_body_bytes}"}, close=True)
        return
      self._serve("POST", self.rfile.read(size))

    def _serve(self, method: str, body: bytes) -> None:
      try:
        status, content_type, payload = server.answer(method, self.path, body,
                                                      self._connected)
      except Exception as e:  # pylint: disable=broad-except
        _LOG.exception("REST %s %s failed", method, self.path)
        status, content_type = 500, "application/json"
        payload = rest_json.dumps({"error": f"{type(e).__name__}: {e}"})
      self._write(status, content_type, payload)

    def _reply(self, status: int, doc: dict, close: bool = False) -> None:
      if close:
        self.close_connection = True
      self._write(status, "application/json", rest_json.dumps(doc), close)

    def _connected(self) -> bool:
      # A client that hung up makes its socket readable with nothing to read; a
      # pipelined next request (data to read) still counts as connected.
      try:
        readable, _, _ = select.select([self.connection], [], [], 0)
        # Peek at the TCP stream itself: TLS sockets refuse recv flags.
        return not readable or socket.socket.recv(self.connection, 1, socket.MSG_PEEK) != b""
      except (OSError, ValueError):
        return False

  return Handler
