"""Melody's own small TFX components.

* ``AnomaliesGate``: the stock ExampleValidator records anomalies but lets the run go
  on; this gate reads its ``SchemaDiff.pb`` per split and stops the run with a message
  that names each anomalous feature, before Transform or the Trainer can consume bad
  data. Earlier artifacts and the last pushed model stay as they were.
* ``LocalInfraValidator``: TFX's stock InfraValidator starts TF Serving through Docker
  or Kubernetes only. Locally this component loads the candidate SavedModel in the
  serving path (``tf.saved_model.load`` and its ``serving_default`` signature), replays
  warmup requests built from real eval examples, checks every output is finite and of
  the right batch size, and writes the same ``InfraBlessing`` artifact (custom property
  ``blessed`` and the ``INFRA_BLESSED``/``INFRA_NOT_BLESSED`` marker file) that the
  Pusher checks. The KFP v2 compiler does not support the stock InfraValidator, so the
  Kubeflow build runs this component too, inside the Melody image.
"""

import glob
import os

from tfx import v1 as tfx
from tfx.types import standard_artifacts

_BLESSED_KEY = "blessed"


class AnomaliesFoundError(RuntimeError):
  """The ExampleValidator found schema anomalies; the run stops here."""


def describe_anomalies(anomalies_uri: str) -> list:
  """Lists ``"split: feature: description"`` for every anomaly under an artifact URI."""
  from tensorflow_data_validation.utils import anomalies_util  # pylint: disable=g-import-not-at-top
  found = []
  for path in sorted(glob.glob(os.path.join(anomalies_uri, "Split-*", "SchemaDiff.pb"))):
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
  files = sorted(glob.glob(os.path.join(examples_uri, "Split-eval", "*")))
  if not files:
    files = sorted(glob.glob(os.path.join(examples_uri, "Split-*", "*")))
  if not files:
    raise FileNotFoundError(f"no example files under {examples_uri}")
  out = []
  for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
    out.append(raw.numpy())
  return out


def validate_serving_model(model_dir: str, records: list, batch_size: int = 8) -> str:
  """Loads ``model_dir`` as a server would and replays ``records``; returns '' or why not."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    loaded = tf.saved_model.load(model_dir)
  except Exception as e:  # pylint: disable=broad-except
    return f"SavedModel failed to load: {e}"
  if "serving_default" not in loaded.signatures:
    return f"no serving_default signature (has {sorted(loaded.signatures)})"
  fn = loaded.signatures["serving_default"]
  arg = list(fn.structured_input_signature[1])[0]
  for start in range(0, len(records), batch_size):
    batch = tf.constant(records[start:start + batch_size])
    try:
      outputs = fn(**{arg: batch})
    except Exception as e:  # pylint: disable=broad-except
      return f"warmup request {start // batch_size} failed: {e}"
    for name, value in outputs.items():
      value = value.numpy()
      if value.shape[:1] != (len(batch),):
        return f"output {name!r} has shape {value.shape} for a batch of {len(batch)}"
      if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        return f"output {name!r} is not finite"
  return ""


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
