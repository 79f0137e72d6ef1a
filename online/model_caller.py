"""The gateway's side of a model call: TF Serving's Predict with a deadline and one retry.

This module owns :class:`ModelCaller`: one gRPC channel (plaintext, TLS or mutual TLS)
to a model server speaking TF Serving's ``PredictionService`` (``melody serve`` or the
stock ``tensorflow_model_server``), the request with ``serving.client``'s explicit model,
signature and version label, one overall deadline per call, and one retry when the
first attempt answers ``UNAVAILABLE`` (a server restarting, a connection reset) while
time is left. Other failures surface as ``grpc.RpcError``. The request goes out as bytes
(the model spec serialized once per version label, the inputs by ``online.
predict_wire``) through a generic unary call, so no request message is built per call.
"""

import time
from typing import Callable, Dict, Mapping, Optional

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2

from online import predict_wire
from serving import client

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"

_MAX_TEMPLATES = 64


class ModelCaller:
  """Calls one signature of one model on a model server.

  Args:
    target: ``host:port`` of the model server's gRPC port.
    model: Served model name.
    signature: Signature name (``recommend`` for the gateway).
    deadline_s: Overall deadline of a call, retry included.
    credentials: ``grpc.ChannelCredentials`` for TLS; None for plaintext.
    on_retry: Called once per retry (a metric).
    max_message_bytes: gRPC message limit.
  """

  def __init__(self, target: str, model: str = "melody", signature: str = "recommend",
               deadline_s: float = 1.0,
               credentials: Optional[grpc.ChannelCredentials] = None,
               on_retry: Callable[[], None] = lambda: None,
               max_message_bytes: int = 16 << 20):
    if deadline_s <= 0:
      raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    self._channel = (grpc.secure_channel(target, credentials, options) if credentials
                     else grpc.insecure_channel(target, options))
    # No request serializer: requests are sent as the bytes ``predict`` joins.
    self._predict = self._channel.unary_unary(
        PREDICT_METHOD, response_deserializer=predict_pb2.PredictResponse.FromString)
    self.target = target
    self.model = model
    self.signature = signature
    self.deadline_s = deadline_s
    self._on_retry = on_retry
    self._templates: Dict[str, bytes] = {}

  def predict(self, inputs: Mapping[str, np.ndarray], version_label: Optional[str] = None,
              encoded_inputs: bytes = b"") -> predict_pb2.PredictResponse:
    """Runs the signature; returns the model server's response (its ``outputs`` as
    ``TensorProto``s, ``model_spec.version`` the version that answered).

    Args:
      inputs: Input tensors by name.
      version_label: Model version label; the served default when empty.
      encoded_inputs: More inputs, already encoded by ``predict_wire.predict_inputs``
        (inputs that are the same on many calls are encoded once by the caller).

    Raises:
      grpc.RpcError: the call failed (after the retry, for UNAVAILABLE).
    """
    request = (self._template(version_label or "") + predict_wire.predict_inputs(inputs)
               + encoded_inputs)
    end = time.monotonic() + self.deadline_s
    try:
      return self._predict(request, timeout=max(0.001, end - time.monotonic()))
    except grpc.RpcError as e:
      if (e.code() != grpc.StatusCode.UNAVAILABLE  # pylint: disable=no-member
          or end - time.monotonic() <= 0):
        raise
    self._on_retry()
    return self._predict(request, timeout=max(0.001, end - time.monotonic()))

  def _template(self, version_label: str) -> bytes:
    """The serialized request with its model spec set and no inputs, built once per
    version label (the first ``_MAX_TEMPLATES`` labels: requests name them, so they
    are not trusted to be few)."""
    template = self._templates.get(version_label)
    if template is None:
      template = client.predict_request(self.model, self.signature, {},
                                        version_label=version_label or None
                                        ).SerializeToString()
      if len(self._templates) < _MAX_TEMPLATES:
        self._templates[version_label] = template
    return template

  def close(self) -> None:
    self._channel.close()
