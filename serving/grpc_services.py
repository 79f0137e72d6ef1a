"""The gRPC face of the model server: TF Serving's services on a ``grpc.Server``.

This module owns the servicers clients of the stock ``tensorflow_model_server`` talk to,
on the official ``tensorflow_serving.apis`` protos: ``tensorflow.serving.PredictionService``
(Predict and GetModelMetadata; Classify, Regress and MultiInference answer UNIMPLEMENTED,
since Melody's signatures take dense tensors, not ``tf.Example``s) and
``tensorflow.serving.ModelService`` (GetModelStatus, and a config reload that changes the
served models' version policies and labels),
plus the standard ``grpc.health.v1`` service, all added to one ``grpc.Server``. The
servicers only route: ``serving.dispatch`` answers, given each Predict call's deadline
and liveness (``serving.call_deadline``) from its ``ServicerContext``.
"""

import concurrent.futures
import functools
from typing import Callable, Optional, Sequence

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2_grpc

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import call_deadline
from serving import dispatch
from serving import model_config

# Applies the entries of a reloaded models.config; raises ValueError to refuse them.
Reload = Callable[[Sequence[model_config.ModelEntry]], None]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """``tensorflow.serving.PredictionService`` on a :class:`~serving.dispatch.Dispatcher`."""

  def __init__(self, dispatcher: dispatch.Dispatcher):
    self._dispatcher = dispatcher

  def Predict(self, request, context):  # pylint: disable=invalid-name
    predict = functools.partial(self._dispatcher.predict,
                                deadline=call_deadline.CallDeadline(context))
    return self._dispatcher.handle_rpc("predict", request, context, predict)

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return self._dispatcher.handle_rpc("metadata", request, context,
                                       self._dispatcher.metadata)

  def Classify(self, request, context):  # pylint: disable=invalid-name
    return self._dispatcher.handle_rpc("classify", request, context,
                                       _unimplemented("Classify"))

  def Regress(self, request, context):  # pylint: disable=invalid-name
    return self._dispatcher.handle_rpc("regress", request, context, _unimplemented("Regress"))

  def MultiInference(self, request, context):  # pylint: disable=invalid-name
    del request  # Has no single model_spec to count it under.
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "MultiInference is not implemented by Melody's server; use Predict")


def _unimplemented(api: str):
  def handler(request):
    del request
    raise dispatch.RpcError(grpc.StatusCode.UNIMPLEMENTED,
                            f"{api} is not implemented by Melody's server; use Predict")
  return handler


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """``tensorflow.serving.ModelService`` on a ``Dispatcher``, reloading through
  ``reload`` (None: a reload answers UNIMPLEMENTED)."""

  def __init__(self, dispatcher: dispatch.Dispatcher, reload: Optional[Reload] = None):
    self._dispatcher = dispatcher
    self._reload = reload

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return self._dispatcher.handle_rpc("status", request, context, self._dispatcher.status)

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    if self._reload is None:
      context.abort(grpc.StatusCode.UNIMPLEMENTED,
                    "config reload is not implemented; restart the server with the new "
                    "models.config (new versions are picked up without a restart)")
    if request.config.WhichOneof("config") != "model_config_list":
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "config: send a model_config_list")
    try:
      self._reload([model_config.ModelEntry.from_proto(c)
                    for c in request.config.model_config_list.config])
    except ValueError as e:
      context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    return model_management_pb2.ReloadConfigResponse()


def build_server(dispatcher: dispatch.Dispatcher, health_servicer: health.HealthServicer,
                 max_workers: int, max_message_bytes: int,
                 reload: Optional[Reload] = None) -> grpc.Server:
  """A ``grpc.Server`` (not yet bound or started) with all three services.

  Args:
    dispatcher: Answers the TF Serving APIs.
    health_servicer: The health service the caller keeps up to date.
    max_workers: Handler threads (bounds concurrent RPCs, hence batch fill); the
      dispatcher's Predict limit keeps some of them free for the other services.
    max_message_bytes: Send and receive message limit.
    reload: Applies a reloaded config (None: reloads answer UNIMPLEMENTED).
  """
  server = grpc.server(
      concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="melody-rpc"),
      options=[("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(dispatcher), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(dispatcher, reload),
                                                            server)
  health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
  return server


def bind(server: grpc.Server, address: str,
         credentials: Optional[grpc.ServerCredentials] = None) -> int:
  """Binds ``address`` (with TLS when ``credentials`` are given) and returns the port.

  Raises:
    OSError: the address cannot be bound.
  """
  try:
    port = (server.add_secure_port(address, credentials) if credentials is not None
            else server.add_insecure_port(address))
  except RuntimeError as e:  # grpcio raises rather than returning 0 on some versions.
    raise OSError(f"could not bind gRPC to {address}: {e}") from e
  if not port:
    raise OSError(f"could not bind gRPC to {address}")
  return port
