"""TF Serving's REST API on a dispatcher: routes, JSON answers and HTTP status codes.

This module owns what a REST call means, apart from the HTTP transport
(``serving.rest_server``): the URL routes of the stock ``tensorflow_model_server``
(``POST /v1/models/<name>[/versions/<n>|/labels/<label>]:predict``, ``GET
/v1/models/<name>[...]`` for GetModelStatus and ``GET /v1/models/<name>[...]/metadata``
for GetModelMetadata), each answered by ``serving.dispatch`` exactly as the gRPC call
would be (same resolution, validation, admission, deadline checks, metrics and error
messages), with the body translated by ``serving.rest_json``, and the gRPC status of a
failure turned into the HTTP status TF Serving uses (400 for INVALID_ARGUMENT, 404 for
NOT_FOUND, 503 for UNAVAILABLE, 504 for DEADLINE_EXCEEDED, ...) with ``{"error":
"<message>"}`` as the body. While the server drains, the status route answers 503 so
that readiness probes see it.
"""

import re
import time
import urllib.parse
from typing import Callable, Optional, Tuple

from google.protobuf import json_format
import grpc

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from serving import call_deadline
from serving import dispatch
from serving import rest_json
from serving import tensors

_SPEC = r"(?:/versions/(\d+)|/labels/([^/:]+))?"
_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)" + _SPEC + r":(predict|classify|regress)",
                         re.IGNORECASE)
_MODEL_RE = re.compile(r"/v1/models(?:/([^/:]+))?" + _SPEC + r"(/metadata)?", re.IGNORECASE)
_MAX_VERSION = 2 ** 63 - 1

# TF Serving's mapping of status codes to HTTP (tensorflow_serving/model_servers).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}

_JSON_OPTIONS = {"always_print_fields_with_no_presence": True}


class CallContext:
  """The parts of a ``grpc.ServicerContext`` the dispatcher uses, for one REST call.

  Args:
    deadline: ``time.monotonic()`` value after which the client no longer waits (None:
      no deadline).
    connected: Whether the client is still connected (it may hang up while waiting).
  """

  def __init__(self, deadline: Optional[float] = None,
               connected: Callable[[], bool] = lambda: True):
    self._deadline = deadline
    self._connected = connected

  def abort(self, code: grpc.StatusCode, details: str):
    raise dispatch.RpcError(code, details)

  def time_remaining(self) -> Optional[float]:
    if self._deadline is None:
      return None
    return max(0.0, self._deadline - time.monotonic())

  def is_active(self) -> bool:
    return self._connected()


class RestApi:
  """Answers REST calls with a :class:`~serving.dispatch.Dispatcher`.

  Args:
    dispatcher: Answers the TF Serving APIs (shared with the gRPC services).
  """

  def __init__(self, dispatcher: dispatch.Dispatcher):
    self._dispatcher = dispatcher

  def handle(self, method: str, path: str, body: bytes,
             context: Optional[CallContext] = None) -> Tuple[int, dict]:
    """Answers one call.

    Args:
      method: HTTP method (``GET`` or ``POST``).
      path: Request path (a query string is ignored).
      body: Request body.
      context: The call's deadline and liveness (none by default).

    Returns:
      ``(http status, JSON document)``; a failure's document is ``{"error": message}``.
    """
    context = context or CallContext()
    path = urllib.parse.urlsplit(path).path
    try:
      match = _PREDICT_RE.fullmatch(path) if method == "POST" else None
      if match:
        return 200, self._predict(match, body, context)
      match = _MODEL_RE.fullmatch(path) if method == "GET" else None
      if match:
        if match.group(4):
          return 200, self._metadata(match, context)
        return 200, self._status(match, context)
      if path.lower().startswith("/v1/"):
        raise dispatch.RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Malformed request: {method} {path}")
      raise dispatch.RpcError(grpc.StatusCode.NOT_FOUND,
                              f"no REST route {method} {path}; the API is under /v1/models")
    except dispatch.RpcError as e:
      return HTTP_STATUS.get(e.code, 500), {"error": e.message}

  # ---------------------------------------------------------------------- routes

  def _predict(self, match: re.Match, body: bytes, context: CallContext) -> dict:
    name, version, label, verb = match.groups()
    request = predict_pb2.PredictRequest()
    _fill_spec(request.model_spec, name, version, label)
    if verb.lower() != "predict":
      api = verb.lower()

      def unimplemented(_):
        raise dispatch.RpcError(grpc.StatusCode.UNIMPLEMENTED,
                                f"{api} is not implemented by Melody's server; use predict")
      return self._dispatcher.handle_rpc(api, request, context, unimplemented)
    try:
      doc = rest_json.parse_body(body)
      request.model_spec.signature_name = rest_json.signature_name(doc)
    except rest_json.JsonError as e:
      doc, failure = None, e
    else:
      failure = None

    def predict(req: predict_pb2.PredictRequest) -> dict:
      try:
        if failure is not None:
          raise failure
        fmt = rest_json.COLUMNAR
        dtypes = self._input_dtypes(req.model_spec)
        if dtypes is not None:   # An unknown signature is named by the dispatcher.
          fmt, arrays = rest_json.predict_inputs(
              doc, dtypes, req.model_spec.signature_name or dispatch.DEFAULT_SIGNATURE)
          for key, value in arrays.items():
            tensors.fill_tensor_proto(req.inputs[key], value)
        response = self._dispatcher.predict(req, deadline=call_deadline.CallDeadline(context))
        outputs = {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}
        return rest_json.predict_response(outputs, fmt)
      except rest_json.JsonError as e:
        raise dispatch.RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e

    return self._dispatcher.handle_rpc("predict", request, context, predict)

  def _input_dtypes(self, spec):
    """The input dtypes of the signature ``spec`` names in the version it resolves to
    now, or None when that version has no such signature."""
    _, loaded = self._dispatcher.resolve(spec)
    signature = loaded.signatures.get(spec.signature_name or dispatch.DEFAULT_SIGNATURE)
    if signature is None:
      return None
    return {name: info.dtype for name, info in signature.inputs.items()}

  def _status(self, match: re.Match, context: CallContext) -> dict:
    name, version, label, _ = match.groups()
    if not name:
      raise dispatch.RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                              "Missing model name in request: GET /v1/models/<name>")
    request = get_model_status_pb2.GetModelStatusRequest()
    _fill_spec(request.model_spec, name, version, label)

    def status(req) -> dict:
      if self._dispatcher.draining:
        raise dispatch.RpcError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
      return json_format.MessageToDict(self._dispatcher.status(req), **_JSON_OPTIONS)

    return self._dispatcher.handle_rpc("status", request, context, status)

  def _metadata(self, match: re.Match, context: CallContext) -> dict:
    name, version, label, _ = match.groups()
    if not name:
      raise dispatch.RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                              "Missing model name in request: GET /v1/models/<name>/metadata")
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _fill_spec(request.model_spec, name, version, label)

    def metadata(req) -> dict:
      response = self._dispatcher.metadata(req)
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      response.metadata["signature_def"].Unpack(signature_map)
      # TF Serving prints the SignatureDefMap itself under metadata.signature_def (not
      # the Any around it), with the protos' own field names.
      return {"model_spec": json_format.MessageToDict(
                  response.model_spec, preserving_proto_field_name=True, **_JSON_OPTIONS),
              "metadata": {"signature_def": json_format.MessageToDict(
                  signature_map, preserving_proto_field_name=True, **_JSON_OPTIONS)}}

    return self._dispatcher.handle_rpc("metadata", request, context, metadata)


def _fill_spec(spec, name: str, version: Optional[str], label: Optional[str]) -> None:
  spec.name = urllib.parse.unquote(name)
  if version is not None:
    if int(version) > _MAX_VERSION:
      raise dispatch.RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"version {version} is not a valid model version")
    spec.version.value = int(version)
  elif label is not None:
    spec.version_label = urllib.parse.unquote(label)
