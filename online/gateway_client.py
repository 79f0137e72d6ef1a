"""A Python client of the gateway's gRPC ``Recommend`` (tests, benchmarks, tools).

This module owns the client side of ``melody.gateway.Gateway/Recommend``: a channel
(plaintext or TLS, with a client certificate for mutual TLS) and one unary call with the
messages of ``online.gateway_proto``. Failures surface as ``grpc.RpcError``.
"""

from typing import Optional

import grpc

from online import gateway_proto


class GatewayClient:
  """Calls a gateway at ``target`` (``host:port``).

  Args:
    target: The gateway's gRPC address.
    credentials: ``grpc.ChannelCredentials`` for TLS (``serving.tls.
      grpc_channel_credentials``); None for plaintext.
    timeout: Default deadline of a call, in seconds.
  """

  def __init__(self, target: str, credentials: Optional[grpc.ChannelCredentials] = None,
               timeout: float = 10.0):
    self._channel = (grpc.secure_channel(target, credentials) if credentials
                     else grpc.insecure_channel(target))
    self._recommend = self._channel.unary_unary(
        gateway_proto.RECOMMEND_METHOD,
        request_serializer=gateway_proto.RecommendRequest.SerializeToString,
        response_deserializer=gateway_proto.RecommendResponse.FromString)
    self._timeout = timeout

  def recommend(self, request=None, timeout: Optional[float] = None,
                wait_for_ready: bool = False, **fields):
    """Sends a ``RecommendRequest`` (given, or built from ``fields``); returns the response.

    With ``wait_for_ready`` a call made while the gateway is unreachable (restarting)
    waits for it until the deadline instead of failing at once with UNAVAILABLE.
    """
    if request is None:
      weights = fields.pop("weights_override", None)
      request = gateway_proto.RecommendRequest(**fields)
      if weights is not None:
        request.weights_override.alpha, request.weights_override.beta, \
            request.weights_override.gamma = weights
    return self._recommend(request, timeout=timeout or self._timeout,
                           wait_for_ready=wait_for_ready)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> "GatewayClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
