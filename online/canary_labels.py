"""Where the ``stable`` and ``canary`` version labels point, and moving them on a decision.

This module owns the label side of the canary experiment, as ``models.config`` entries
(``serving.model_config.ModelEntry``): :func:`push_canary` serves a new version as
``canary`` beside ``stable``, :func:`promote` moves ``stable`` to the canary's version and
drops ``canary``, :func:`rollback` drops ``canary`` and its version. Each keeps the version
policy to exactly the labelled versions, so the model server loads the canary before
the label points to it and unloads what no label needs. :func:`apply` sends the new
``models.config`` to a running model server as TF Serving's ``HandleReloadConfigRequest``
(``melody serve`` and ``tensorflow_model_server`` both take it), then to the file a
restart reads; the listeners' arms stay as the split put them.
"""

import dataclasses
from typing import Optional, Sequence

import grpc
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from online import experiment_split
from online import sequential_test
from serving import model_config

STABLE, CANARY = experiment_split.STABLE, experiment_split.CANARY


def _with_labels(entry: model_config.ModelEntry, labels) -> model_config.ModelEntry:
  return dataclasses.replace(
      entry, version_labels=tuple(labels.items()),
      version_policy=model_config.VersionPolicy("specific",
                                                versions=tuple(set(labels.values()))))


def _stable(entry: model_config.ModelEntry) -> int:
  labels = entry.labels
  if STABLE not in labels:
    raise ValueError(f"model '{entry.name}' has no '{STABLE}' label; labels: "
                     f"{sorted(labels)}")
  return labels[STABLE]


def push_canary(entry: model_config.ModelEntry, version: int) -> model_config.ModelEntry:
  """``entry`` serving ``version`` as ``canary`` beside its ``stable`` version.

  Raises:
    ValueError: no ``stable`` label, or ``version`` is the stable one.
  """
  stable = _stable(entry)
  if version == stable:
    raise ValueError(f"version {version} is already '{STABLE}'")
  return _with_labels(entry, {STABLE: stable, CANARY: int(version)})


def promote(entry: model_config.ModelEntry) -> model_config.ModelEntry:
  """``entry`` with ``stable`` on the canary's version and no ``canary`` label.

  Raises:
    ValueError: no ``canary`` label.
  """
  labels = entry.labels
  if CANARY not in labels:
    raise ValueError(f"model '{entry.name}' has no '{CANARY}' label to promote")
  return _with_labels(entry, {STABLE: labels[CANARY]})


def rollback(entry: model_config.ModelEntry) -> model_config.ModelEntry:
  """``entry`` with only its ``stable`` version and label."""
  return _with_labels(entry, {STABLE: _stable(entry)})


def after_decision(entry: model_config.ModelEntry,
                   action: str) -> Optional[model_config.ModelEntry]:
  """The entry a ``sequential_test`` action leads to; None for ``keep``."""
  if action == sequential_test.PROMOTE:
    return promote(entry)
  if action == sequential_test.ROLLBACK:
    return rollback(entry)
  if action == sequential_test.KEEP:
    return None
  raise ValueError(f"unknown action {action!r}")


def apply(entries: Sequence[model_config.ModelEntry], config_path: str,
          model_server: Optional[str] = None, timeout_s: float = 120.0,
          credentials: Optional[grpc.ChannelCredentials] = None) -> None:
  """Reloads ``entries`` on the model server at ``model_server`` (``host:port``, TLS with
  ``credentials``), then writes them to ``config_path``, the configuration a restart
  serves.

  Raises:
    grpc.RpcError: the model server refused the reload (e.g. a labelled version did not
      load); the file is left as it was, matching what is served.
  """
  if model_server is not None:
    request = model_management_pb2.ReloadConfigRequest()
    for entry in entries:
      request.config.model_config_list.config.append(entry.to_proto())
    channel = (grpc.secure_channel(model_server, credentials) if credentials
               else grpc.insecure_channel(model_server))
    with channel:
      model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
          request, timeout=timeout_s)
  model_config.write_model_config(config_path, entries)
