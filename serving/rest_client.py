"""A small client for TF Serving's REST API (Melody's server or the stock one).

This module owns the Python side of a REST call: :class:`RestClient` has the methods of
``serving.client.ModelClient`` that ``melody query`` uses (``predict``, ``metadata``,
``status``) with the same arguments and return types, so a caller can switch transport
without other changes. Inputs go in the columnar format (``{"inputs": {...}}``, which
also carries scalars and inputs of different batch sizes); outputs come back as numpy
arrays of the dtypes the signature declares (read once per model and version from the
metadata route). A failure raises :class:`RestError` with the HTTP status and the
server's message.
"""

import http.client
import json
import threading
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple

from google.protobuf import json_format
import numpy as np

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2

from serving import client
from serving import rest_json

DEFAULT_TIMEOUT = client.DEFAULT_TIMEOUT


class RestError(Exception):
  """A REST call answered with an HTTP status other than 200.

  Attributes:
    status: The HTTP status (400, 404, 503, ...).
    message: The server's ``error`` message (or the body, if it had none).
  """

  def __init__(self, status: int, message: str):
    super().__init__(f"HTTP {status}: {message}")
    self.status = status
    self.message = message


class RestClient:
  """Calls a model server's REST API at ``target`` (``host:port`` or ``http://host:port``).

  One keep-alive connection, used by one call at a time (calls from several threads
  take turns).

  Args:
    target: Server address.
    timeout: Default timeout in seconds of each call.
  """

  def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT):
    parsed = urllib.parse.urlsplit(target if "//" in target else f"http://{target}")
    if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
      raise ValueError(f"REST target {target!r} is not host:port")
    self._host, self._port = parsed.hostname, parsed.port
    self._timeout = timeout
    self._lock = threading.Lock()
    self._connection: Optional[http.client.HTTPConnection] = None
    self._signatures: Dict[str, Dict[str, object]] = {}

  def predict(self, model: str, signature: str, inputs: Mapping[str, object],
              version: Optional[int] = None, version_label: Optional[str] = None,
              timeout: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Runs ``signature`` of ``model`` and returns its outputs as numpy arrays."""
    if not signature:
      raise ValueError("signature name is required (e.g. 'serving_default')")
    defs = self._signature_defs(model, version, version_label, timeout)
    if signature not in defs:
      raise RestError(400, f"model '{model}' has no signature '{signature}'; it has "
                           f"{sorted(defs)}")
    outputs = defs[signature].outputs
    body = {"signature_name": signature,
            "inputs": {name: rest_json.to_json(np.asarray(value), name)
                       for name, value in inputs.items()}}
    answer = self._call("POST", _model_path(model, version, version_label) + ":predict",
                        body, timeout)["outputs"]
    if len(outputs) == 1:
      answer = {next(iter(outputs)): answer}
    return {name: rest_json.to_array(value, outputs[name].dtype, f"outputs['{name}']")
            for name, value in answer.items()}

  def metadata(self, model: str, version: Optional[int] = None,
               version_label: Optional[str] = None,
               timeout: Optional[float] = None) -> Dict[str, object]:
    """The model's ``SignatureDef`` protos by signature name."""
    doc = self._call("GET", _model_path(model, version, version_label) + "/metadata", None,
                     timeout)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(doc["metadata"]["signature_def"], signature_map)
    return dict(signature_map.signature_def)

  def status(self, model: str, version: Optional[int] = None,
             version_label: Optional[str] = None,
             timeout: Optional[float] = None) -> Tuple[client.VersionStatus, ...]:
    """The state of each known version of ``model``, newest first."""
    doc = self._call("GET", _model_path(model, version, version_label), None, timeout)
    response = get_model_status_pb2.GetModelStatusResponse()
    json_format.ParseDict(doc, response)
    return client.version_statuses(response)

  def _signature_defs(self, model, version, version_label, timeout) -> Dict[str, object]:
    key = _model_path(model, version, version_label)
    if key not in self._signatures:
      self._signatures[key] = self.metadata(model, version, version_label, timeout)
    return self._signatures[key]

  def _call(self, method: str, path: str, body: Optional[dict],
            timeout: Optional[float]) -> dict:
    payload = None if body is None else rest_json.dumps(body)
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    with self._lock:
      for attempt in (0, 1):
        if self._connection is None:
          self._connection = http.client.HTTPConnection(self._host, self._port)
        self._connection.timeout = timeout or self._timeout
        try:
          self._connection.request(method, path, body=payload, headers=headers)
          response = self._connection.getresponse()
          status, data = response.status, response.read()
          break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
          # The server closed an idle keep-alive connection: the call never ran.
          self.close()
          if attempt:
            raise
        except OSError:   # A timeout leaves the connection mid-answer.
          self.close()
          raise
    try:
      doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
      doc = None
    if status != 200:
      message = doc.get("error") if isinstance(doc, dict) else None
      raise RestError(status, message or data.decode("utf-8", "replace"))
    if not isinstance(doc, dict):
      raise RestError(status, f"the answer is not a JSON object: {data[:200]!r}")
    return doc

  def close(self) -> None:
    if self._connection is not None:
      self._connection.close()
      self._connection = None

  def __enter__(self) -> "RestClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _model_path(model: str, version: Optional[int], version_label: Optional[str]) -> str:
  client.check_version_choice(model, version, version_label)
  path = "/v1/models/" + urllib.parse.quote(model, safe="")
  if version is not None:
    path += f"/versions/{int(version)}"
  elif version_label is not None:
    path += "/labels/" + urllib.parse.quote(version_label, safe="")
  return path
