"""A small client for TF Serving's gRPC API (Melody's server or the stock one).

This module owns the Python side of a serving call: it builds official
``tensorflow_serving.apis`` requests with the model name, signature name and version
(or version label) always explicit, sends them over ``PredictionServiceStub`` /
``ModelServiceStub``, and turns responses back into numpy arrays. Failures surface as
``grpc.RpcError`` (check ``.code()``), unchanged.

Opening the first :class:`ModelClient` of a process applies the gRPC I/O setting of
``serving.grpc_env`` (polling I/O) before ``grpc`` is imported; it has no effect when the
process imported ``grpc`` earlier, and an explicit ``GRPC_EXPERIMENTS`` wins.
"""

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

from grpc_health.v1 import health_pb2
import numpy as np

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from serving import grpc_env
from serving import tensors

DEFAULT_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  """One entry of GetModelStatus.

  Attributes:
    version: Model version.
    state: ``"AVAILABLE"``, ``"LOADING"``, ``"END"``, ...
    error_code: ``tensorflow.error.Code`` value (0 is OK).
    error_message: Why a load failed, if it did.
  """
  version: int
  state: str
  error_code: int = 0
  error_message: str = ""


def version_statuses(response) -> Tuple[VersionStatus, ...]:
  """A ``GetModelStatusResponse`` as :class:`VersionStatus` entries, in its order."""
  state_name = get_model_status_pb2.ModelVersionStatus.State.Name
  return tuple(VersionStatus(s.version, state_name(s.state), s.status.error_code,
                             s.status.error_message)
               for s in response.model_version_status)


def check_version_choice(model: str, version: Optional[int],
                         version_label: Optional[str]) -> None:
  """Raises ValueError unless ``model`` is named and at most one version choice is given."""
  if not model:
    raise ValueError("model name is required")
  if version is not None and version_label is not None:
    raise ValueError(f"give version ({version}) or version_label ({version_label!r}), "
                     "not both")


def _fill_spec(spec, model: str, signature: Optional[str], version: Optional[int],
               version_label: Optional[str]) -> None:
  check_version_choice(model, version, version_label)
  spec.name = model
  if signature is not None:
    spec.signature_name = signature
  if version is not None:
    spec.version.value = int(version)
  elif version_label is not None:
    spec.version_label = version_label


def predict_request(model: str, signature: str, inputs: Mapping[str, object],
                    version: Optional[int] = None, version_label: Optional[str] = None,
                    output_filter: Sequence[str] = ()) -> predict_pb2.PredictRequest:
  """Builds a ``PredictRequest``; ``inputs`` values go through ``np.asarray``.

  Pass arrays of the signature's dtypes (e.g. ``np.float32``): the server does not cast.
  """
  if not signature:
    raise ValueError("signature name is required (e.g. 'serving_default')")
  request = predict_pb2.PredictRequest()
  _fill_spec(request.model_spec, model, signature, version, version_label)
  for name, value in inputs.items():
    tensors.fill_tensor_proto(request.inputs[name], value)
  request.output_filter.extend(output_filter)
  return request


class ModelClient:
  """Calls a model server at ``target`` (``host:port``).

  The first client of a process chooses its gRPC I/O path (see the module docstring).

  Args:
    target: Server address.
    timeout: Default deadline in seconds of each call.
    max_message_bytes: gRPC message limit for both directions.
  """

  def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT,
               max_message_bytes: int = 64 << 20):
    # grpc reads GRPC_EXPERIMENTS once, on import: set it before the first import.
    grpc_env.prefer_polling_io()
    # pylint: disable=import-outside-toplevel
    import grpc
    from grpc_health.v1 import health_pb2_grpc
    from tensorflow_serving.apis import model_service_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    # pylint: enable=import-outside-toplevel
    self._timeout = timeout
    self._channel = grpc.insecure_channel(
        target, options=[("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes)])
    self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._health = health_pb2_grpc.HealthStub(self._channel)

  def predict(self, model: str, signature: str, inputs: Mapping[str, object],
              version: Optional[int] = None, version_label: Optional[str] = None,
              timeout: Optional[float] = None,
              output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Runs ``signature`` of ``model`` and returns its outputs as numpy arrays."""
    return self.predict_full(model, signature, inputs, version, version_label, timeout,
                             output_filter)[0]

  def predict_full(self, model: str, signature: str, inputs: Mapping[str, object],
                   version: Optional[int] = None, version_label: Optional[str] = None,
                   timeout: Optional[float] = None, output_filter: Sequence[str] = ()
                   ) -> Tuple[Dict[str, np.ndarray], int]:
    """Like ``predict``, also returning the version that answered."""
    request = predict_request(model, signature, inputs, version, version_label,
                              output_filter)
    response = self._predict.Predict(request, timeout=timeout or self._timeout)
    outputs = {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}
    return outputs, response.model_spec.version.value

  def metadata(self, model: str, version: Optional[int] = None,
               version_label: Optional[str] = None,
               timeout: Optional[float] = None) -> Dict[str, object]:
    """The model's ``SignatureDef`` protos by signature name."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _fill_spec(request.model_spec, model, None, version, version_label)
    response = self._predict.GetModelMetadata(request, timeout=timeout or self._timeout)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)

  def status(self, model: str, version: Optional[int] = None,
             version_label: Optional[str] = None,
             timeout: Optional[float] = None) -> Tuple[VersionStatus, ...]:
    """The state of each known version of ``model``, newest first."""
    request = get_model_status_pb2.GetModelStatusRequest()
    _fill_spec(request.model_spec, model, None, version, version_label)
    response = self._models.GetModelStatus(request, timeout=timeout or self._timeout)
    return version_statuses(response)

  def health(self, service: str = "", timeout: Optional[float] = None) -> str:
    """The gRPC health status (``"SERVING"``, ``"NOT_SERVING"``, ...) of ``service``."""
    response = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=timeout or self._timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> "ModelClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
