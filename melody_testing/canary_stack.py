"""A model server holding numbered copies of the style model, and a gateway splitting
listeners over its version labels: the stack the canary experiment's tests drive.

The copies answer alike (they are the same SavedModel); what tells the arms apart is the
version number in each answer, which a test maps to simulated listener outcomes.
"""

import contextlib
import dataclasses
import os
import shutil
from typing import Iterator, Mapping, Optional, Sequence

from melody_testing import style_saved_model
from online import experiment_split
from online import gateway
from online import gateway_client
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import stores
from serving import model_config
from serving import server as server_lib


@dataclasses.dataclass
class CanaryStack:
  """The running parts.

  Attributes:
    entry: The model's ``models.config`` entry the server started with.
    config_path: Where a test may write the ``models.config`` it reloads.
    server: The model server (in process).
    gateway: The gateway server in front of it.
    client: A gRPC client of the gateway.
  """
  entry: model_config.ModelEntry
  config_path: str
  server: server_lib.ModelServer
  gateway: gateway_server.GatewayServer
  client: gateway_client.GatewayClient


def publish_versions(base_dir: str, versions: Sequence[int]) -> str:
  """Saves the style model as the first of ``versions`` and copies it to the others."""
  first = style_saved_model.publish(base_dir, versions[0])
  for version in versions[1:]:
    shutil.copytree(first, os.path.join(base_dir, str(version)))
  return base_dir


@contextlib.contextmanager
def canary_stack(root: str, labels: Mapping[str, int],
                 split: Optional[experiment_split.ExperimentSplit],
                 versions: Sequence[int] = (1, 2, 3)) -> Iterator[CanaryStack]:
  """Publishes ``versions`` under ``root``, serves the labelled ones with ``labels``, and
  runs a gateway with ``split`` (an empty SQLite store: every listener a cold start)."""
  base = publish_versions(os.path.join(root, "melody"), versions)
  entry = model_config.ModelEntry(
      "melody", base, model_config.VersionPolicy("specific", versions=tuple(labels.values())),
      dict(labels))
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  with server_lib.ModelServer([entry], options) as server, \
      stores.open_store(os.path.join(root, "state.db")) as store:
    caller = model_caller.ModelCaller(server.target, deadline_s=30.0)
    recommender = gateway.Gateway(store, caller, gateway_metrics.GatewayMetrics(),
                                  gateway.GatewayOptions(split=split))
    try:
      with gateway_server.GatewayServer(
          recommender, gateway_server.PortOptions(http_port=None)) as front, \
          gateway_client.GatewayClient(front.grpc_target, timeout=30) as client:
        yield CanaryStack(entry, os.path.join(root, "models.config"), server, front, client)
    finally:
      caller.close()
