"""Melody's own small TFX components.

* ``AnomaliesGate``: the stock ExampleValidator records anomalies but lets the run go
  on; this gate reads its ``SchemaDiff.pb`` per split and stops the run with a message
  that names each anomalous feature, before Transform or the Trainer can consume bad
  data. Earlier artifacts and the last pushed model stay as they were.
* ``LocalInfraValidator``: TFX's stock InfraValidator starts TF Serving through Docker
  or Kubernetes only. This component serves the candidate with Melody's own
  TF-Serving-compatible gRPC server (``serving.server``: the same loader and warmup
  replay as production), sends real eval examples through the Predict API, checks every
  output is finite and of the right batch size, and writes the same ``InfraBlessing``
  artifact (custom property ``blessed`` and the ``INFRA_BLESSED``/``INFRA_NOT_BLESSED``
  marker file) that the Pusher checks. The KFP v2 compiler does not support the stock
  InfraValidator, so the Kubeflow build runs this component too, inside the Melody
  image.
"""

import os

from tfx import v1 as tfx
from tfx.types import standard_artifacts

_BLESSED_KEY = "blessed"


class AnomaliesFoundError(RuntimeError):
  """The ExampleValidator found schema anomalies; the run stops here."""


def describe_anomalies(anomalies_uri: str) -> list:
  """Lists ``"split: feature: description"`` for every anomaly under an artifact URI."""
  from tensorflow_data_validation.utils import anomalies_util  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  found = []
  # tf.io.gfile reads remote pipeline roots (gs://) as well as local ones.
  for path in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "Split-*", "SchemaDiff.pb"))):
    split = os.path.basename(os.path.dirname(path))[len("Split-"):]
    anomalies = anomalies_util.load_anomalies_binary(path)
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = "; ".join(r.description or r.short_description for r in info.reason)
      found.append(f"{split}: feature '{feature}': {info.short_description} ({reasons})")
    if anomalies.HasField("dataset_anomaly_info"):
      info = anomalies.dataset_anomaly_info
      found.append(f"{split}: dataset: {info.short_description}")
  return found


@tfx.dsl.components.component
def AnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[
    standard_artifacts.ExampleAnomalies]):  # pylint: disable=invalid-name
  """Fails the run when the ExampleValidator found any anomaly, naming the features."""
  found = describe_anomalies(anomalies.uri)
  if found:
    raise AnomaliesFoundError(
        f"ExampleValidator found {len(found)} schema anomal{'y' if len(found) == 1 else 'ies'};"
        " the run stops before Transform (earlier artifacts and the pushed model are "
        "untouched):\n  " + "\n  ".join(found))


def _eval_records(examples_uri: str, limit: int) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*")))
  if not files:
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*")))
  if not files:
    raise FileNotFoundError(f"no example files under {examples_uri}")
  out = []
  for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
    out.append(raw.numpy())
  return out


def _check_outputs(outputs, n: int) -> str:
  import numpy as np  # pylint: disable=g-import-not-at-top
  for name, value in outputs.items():
    value = np.asarray(value)
    if value.shape[:1] != (n,):
      return f"output {name!r} has shape {value.shape} for a batch of {n}"
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
      return f"output {name!r} is not finite"
  return ""


def validate_serving_model(model_dir: str, records: list, batch_size: int = 8,
                           timeout_s: float = 300.0) -> str:
  """Serves ``model_dir`` with Melody's gRPC model server and replays ``records``.

  The server loads the SavedModel as in production (replaying its own
  ``assets.extra/tf_serving_warmup_requests``); then each batch of raw examples goes
  through the raw-example signature the Evaluator evaluates (``score_examples``, see
  ``pipeline.eval_config.SIGNATURE``) over the TF Serving Predict API.

  Returns:
    '' when the model served every request, else why not.
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import eval_config  # pylint: disable=g-import-not-at-top
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  from serving import model_config  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  base = tempfile.mkdtemp(prefix="melody_infra_")
  os.symlink(os.path.abspath(model_dir), os.path.join(base, "1"))
  server = server_lib.ModelServer(
      [model_config.ModelEntry(name="candidate", base_path=base)],
      server_lib.ServerOptions(port=0, metrics_port=None, file_system_poll_wait_seconds=0))
  try:
    try:
      server.start()
    except Exception as e:  # pylint: disable=broad-except
      return f"the model server failed to start: {e}"
    if server.loaded_versions("candidate") != (1,):
      return "the model server did not load the candidate (see its log for the error)"
    client = client_lib.ModelClient(server.target, timeout=timeout_s)
    signatures = client.metadata("candidate")
    name = eval_config.SIGNATURE
    if name not in signatures:
      return f"the model has no {name!r} signature (it has {sorted(signatures)})"
    arg = list(signatures[name].inputs)[0]
    for start in range(0, len(records), batch_size):
      batch = records[start:start + batch_size]
      try:
        outputs = client.predict("candidate", name, {arg: np.array(batch, dtype=object)})
      except Exception as e:  # pylint: disable=broad-except
        return f"request {start // batch_size} to {name!r} failed: {e}"
      why = _check_outputs(outputs, len(batch))
      if why:
        return why
    return ""
  finally:
    server.stop(0)
    os.unlink(os.path.join(base, "1"))
    os.rmdir(base)


@tfx.dsl.components.component
def LocalInfraValidator(  # pylint: disable=invalid-name
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.InfraBlessing],
    num_requests: tfx.dsl.components.Parameter[int] = 32):
  """Loads the candidate in the serving path with warmup requests; blesses or not."""
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  model_dir = os.path.join(model.uri, "Format-Serving")
  if not gfile.exists(model_dir):
    model_dir = model.uri
  why = validate_serving_model(model_dir, _eval_records(examples.uri, num_requests))
  gfile.makedirs(blessing.uri)
  marker = "INFRA_NOT_BLESSED" if why else "INFRA_BLESSED"
  with gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
    f.write(why)
  blessing.set_int_custom_property(_BLESSED_KEY, 0 if why else 1)
  if why:
    print(f"[infra_validator] NOT blessed: {why}")
