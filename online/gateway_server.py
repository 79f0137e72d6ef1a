"""The gateway's ports: ``melody.gateway.Gateway/Recommend`` over gRPC and HTTP/JSON.

This module owns the transports around an :class:`~online.gateway.Gateway`: a gRPC
server whose ``Recommend`` method is a generic handler over the messages of
``online.gateway_proto`` (plus the standard health service), and an HTTP port with
``POST /v1/recommend`` (the same message as JSON, field names as in the proto or in
lowerCamelCase), ``GET /healthz`` and the Prometheus page at ``/metrics``. Both bind
loopback unless told otherwise, take TLS or mutual TLS from ``serving.tls``, refuse
requests over ``max_request_bytes`` (gRPC RESOURCE_EXHAUSTED, HTTP 413), answer a bad
field with INVALID_ARGUMENT / 400 naming it, and stop gracefully: health turns
NOT_SERVING, new calls are refused and running ones get the grace period. Logs carry
listener ids and status codes only.
"""

import dataclasses
import http.server
import json
import logging
import threading
import time
from typing import Optional

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import prometheus_client

from online import gateway as gateway_lib
from online import gateway_proto
from serving import http_handler
from serving import tls as tls_lib

_LOG = logging.getLogger("melody.online")


@dataclasses.dataclass(frozen=True)
class PortOptions:
  """Where and how the gateway listens.

  Attributes:
    host: Interface to bind (loopback by default).
    grpc_port: gRPC port (0: a free one).
    http_port: HTTP/JSON and metrics port (0: a free one; None: no HTTP).
    tls: Certificates for both ports; None for plaintext.
    max_request_bytes: Largest request message or body.
    max_workers: Handler threads of the gRPC server.
    grace_seconds: How long running calls may finish on stop.
  """
  host: str = "127.0.0.1"
  grpc_port: int = 0
  http_port: Optional[int] = 0
  tls: Optional[tls_lib.TlsFiles] = None
  max_request_bytes: int = 64 << 10
  max_workers: int = 16
  grace_seconds: float = 5.0


class GatewayServer:
  """Serves one :class:`~online.gateway.Gateway` on a gRPC and an HTTP port."""

  def __init__(self, gateway: gateway_lib.Gateway, options: PortOptions = PortOptions()):
    self.gateway = gateway
    self.options = options
    self._health = health.HealthServicer()
    self._draining = threading.Event()
    self._grpc: Optional[grpc.Server] = None
    self._http: Optional[http.server.ThreadingHTTPServer] = None
    self.grpc_port = 0
    self.http_port: Optional[int] = None

  @property
  def draining(self) -> bool:
    """Whether ``stop`` has begun."""
    return self._draining.is_set()

  @property
  def grpc_target(self) -> str:
    return f"{self.options.host}:{self.grpc_port}"

  def start(self) -> "GatewayServer":
    """Binds both ports and starts serving.

    Raises:
      OSError: a port cannot be bound.
    """
    import concurrent.futures  # pylint: disable=import-outside-toplevel
    o = self.options
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(o.max_workers, "melody-gateway"),
        options=[("grpc.max_receive_message_length", o.max_request_bytes),
                 ("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(gateway_proto.SERVICE, {
        "Recommend": grpc.unary_unary_rpc_method_handler(
            self._grpc_recommend,
            request_deserializer=gateway_proto.RecommendRequest.FromString,
            response_serializer=_serialize_parts)})
    self._grpc.add_generic_rpc_handlers((handler,))
    health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
    address = f"{o.host}:{o.grpc_port}"
    try:
      self.grpc_port = (
          self._grpc.add_secure_port(address, tls_lib.grpc_server_credentials(o.tls))
          if o.tls else self._grpc.add_insecure_port(address))
    except RuntimeError as e:
      raise OSError(f"could not bind gRPC to {address}: {e}") from e
    self._grpc.start()
    if o.http_port is not None:
      self._http = http.server.ThreadingHTTPServer((o.host, o.http_port), _handler(self))
      self._http.daemon_threads = True
      self._http.socket = tls_lib.wrap_listening_socket(self._http.socket, o.tls)
      self.http_port = self._http.server_address[1]
      threading.Thread(target=self._http.serve_forever, name="melody-gateway-http",
                       daemon=True).start()
    self._health.set("", health_pb2.HealthCheckResponse.SERVING)
    self._health.set(gateway_proto.SERVICE, health_pb2.HealthCheckResponse.SERVING)
    _LOG.info("gateway on gRPC %s, HTTP %s", self.grpc_target, self.http_port)
    return self

  def stop(self, grace: Optional[float] = None) -> None:
    """Drains: health NOT_SERVING, new calls refused, running calls get ``grace``."""
    grace = self.options.grace_seconds if grace is None else grace
    self._draining.set()
    self._health.enter_graceful_shutdown()
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
    if self._grpc is not None:
      self._grpc.stop(grace).wait(grace + 1.0)

  def __enter__(self) -> "GatewayServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # ------------------------------------------------------------------ calls
  def answer(self, request, transport: str):
    """``(status code, answer or None, error message)`` of one call; the answer as
    ``Gateway.recommend_parts`` gives it (the response, its model items as bytes)."""
    start = time.perf_counter()
    parts, response, message, source = None, None, "", ""
    if self._draining.is_set():
      code, message = grpc.StatusCode.UNAVAILABLE, "gateway is shutting down"
    else:
      try:
        parts = self.gateway.recommend_parts(request)
        response = parts[0]
        code, source = grpc.StatusCode.OK, response.source
      except gateway_lib.RequestError as e:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
      except gateway_lib.UpstreamError as e:
        code, message = grpc.StatusCode.INTERNAL, str(e)
      except Exception:  # pylint: disable=broad-except
        _LOG.exception("Recommend for user %r failed", request.user_id[:128])
        code, message = grpc.StatusCode.INTERNAL, "internal error"
    metrics = self.gateway.metrics
    seconds = time.perf_counter() - start
    metrics.requests.labels(transport, code.name, source).inc()
    metrics.latency.labels(transport).observe(seconds)
    split = self.gateway.options.split
    if split is not None:
      if response is not None:
        arm, segment = response.arm or "none", response.segment
        _LOG.debug("Recommend user=%r arm=%s label=%s version=%d", request.user_id[:128],
                   arm, response.model_label, response.model_version)
      else:
        arm, segment = split.arm(request.user_id), "unknown"
      metrics.arm_call(arm, segment, code.name, source, seconds)
    if code != grpc.StatusCode.OK:
      _LOG.info("Recommend user=%r: %s", request.user_id[:128], code.name)
    return code, parts, message

  def _grpc_recommend(self, request, context):
    code, parts, message = self.answer(request, "grpc")
    if code != grpc.StatusCode.OK:
      context.abort(code, message)
    return parts


def _serialize_parts(parts) -> bytes:
  """The serialized ``RecommendResponse`` of ``(response, items bytes)``: a message's
  fields may come in any order and a repeated field in several runs, so the items' bytes
  follow the rest unparsed."""
  response, items = parts
  return response.SerializeToString() + items


_HTTP_STATUS = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.INTERNAL: 500}


def _handler(server: GatewayServer):
  """The HTTP request handler class bound to ``server``."""

  class Handler(http_handler.BaseHandler):
    """``POST /v1/recommend``, ``GET /healthz``, ``GET /metrics``."""

    def do_GET(self):  # pylint: disable=invalid-name
      if self.path == "/metrics":
        self._write(200, prometheus_client.CONTENT_TYPE_LATEST,
                    prometheus_client.generate_latest(server.gateway.metrics.registry))
      elif self.path == "/healthz":
        ok = not server.draining
        self._json(200 if ok else 503, {"status": "SERVING" if ok else "NOT_SERVING"})
      else:
        self._json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self):  # pylint: disable=invalid-name
      if self.path != "/v1/recommend":
        self._json(404, {"error": f"no route POST {self.path}"}, close=True)
        return
      try:
        size = int(self.headers.get("Content-Length", ""))
      except ValueError:
        self._json(411, {"error": "send the body with a Content-Length header"}, close=True)
        return
      limit = server.options.max_request_bytes
      if size < 0 or size > limit:
        self._json(413, {"error": f"request body of {size} bytes is over the limit of "
                                  f"{limit}"}, close=True)
        return
      request = gateway_proto.RecommendRequest()
      try:
        json_format.Parse(self.rfile.read(size), request)
      except json_format.ParseError as e:
        self._json(400, {"error": f"bad request: {e}"})
        return
      code, parts, message = server.answer(request, "http")
      if code != grpc.StatusCode.OK:
        doc = {"error": message, "code": code.name}
        if message.partition(":")[0] in gateway_proto.RecommendRequest.DESCRIPTOR.fields_by_name:
          doc["field"] = message.partition(":")[0]
        self._json(_HTTP_STATUS.get(code, 500), doc)
        return
      response, items = parts
      response.MergeFromString(items)
      self._json(200, json_format.MessageToDict(response, preserving_proto_field_name=True))

    def _json(self, status: int, doc, close: bool = False) -> None:
      self._write(status, "application/json", json.dumps(doc).encode(), close)

  return Handler
