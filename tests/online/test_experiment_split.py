"""Tests of the canary traffic split (online.experiment_split) and of the gateway routing
each arm to its model version label, counting calls per arm and segment."""

import argparse

import numpy as np
import pytest

from melody_testing import canary_stack
from online import experiment_split
from online import gateway
from online import gateway_client
from online import gateway_main
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import stores
from serving import model_config
from serving import server as server_lib

N_IDS = 100_000


def _ids(n=N_IDS):
  return [f"listener-{i}" for i in range(n)]


def _canary_mask(split, ids):
  return np.array([split.arm(u) == experiment_split.CANARY for u in ids])


def test_a_listener_keeps_its_arm_across_calls_and_split_objects():
  ids = _ids(2000)
  first = [experiment_split.ExperimentSplit("exp1", 0.3, "s").arm(u) for u in ids]
  again = [experiment_split.ExperimentSplit("exp1", 0.3, "s").arm(u) for u in ids]
  assert first == again
  # The hash is BLAKE2b of the key, so its value is fixed across processes and runs.
  assert experiment_split.ExperimentSplit("exp1", 0.3, "s").point("u1") == pytest.approx(
      0.7178996092728623, abs=1e-15)
  # A larger canary share only moves listeners from stable to canary.
  wider = _canary_mask(experiment_split.ExperimentSplit("exp1", 0.5, "s"), ids)
  narrower = _canary_mask(experiment_split.ExperimentSplit("exp1", 0.3, "s"), ids)
  assert np.all(wider[narrower])


@pytest.mark.parametrize("share", [0.1, 0.5, 0.02])
def test_the_canary_share_is_within_binomial_bounds(share):
  mask = _canary_mask(experiment_split.ExperimentSplit("exp1", share, "salt"), _ids())
  sd = np.sqrt(share * (1 - share) / N_IDS)
  assert abs(mask.mean() - share) < 5 * sd


def test_default_share_is_ten_percent_and_shares_0_and_1_are_exact():
  ids = _ids(5000)
  assert experiment_split.ExperimentSplit("e").canary_share == 0.1
  assert not _canary_mask(experiment_split.ExperimentSplit("e", 0.0), ids).any()
  assert _canary_mask(experiment_split.ExperimentSplit("e", 1.0), ids).all()


def test_different_salts_and_experiments_split_independently():
  ids = _ids()
  share = 0.1
  a = _canary_mask(experiment_split.ExperimentSplit("exp1", share, "salt-a"), ids)
  for other in (experiment_split.ExperimentSplit("exp1", share, "salt-b"),
                experiment_split.ExperimentSplit("exp2", share, "salt-a")):
    b = _canary_mask(other, ids)
    # Independent splits put share**2 of the listeners in both canaries.
    both = np.mean(a & b)
    sd = np.sqrt(share**2 * (1 - share**2) / N_IDS)
    assert abs(both - share**2) < 5 * sd
    # And the canary share among a's canaries is the overall share.
    sd_within = np.sqrt(share * (1 - share) / a.sum())
    assert abs(b[a].mean() - share) < 5 * sd_within


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="canary_share"):
    experiment_split.ExperimentSplit("e", 1.5)
  with pytest.raises(ValueError, match="experiment name"):
    experiment_split.ExperimentSplit("bad name")
  with pytest.raises(ValueError, match="canary_label"):
    experiment_split.ExperimentSplit("e", canary_label="")


@pytest.fixture(scope="module")
def style_base(tmp_path_factory):
  """A base path with versions 1 and 2 of the style model."""
  return canary_stack.publish_versions(str(tmp_path_factory.mktemp("labelled") / "melody"),
                                      (1, 2))


def _model_server(base, labels):
  entry = model_config.ModelEntry(
      "melody", base, model_config.VersionPolicy("specific", versions=tuple(labels.values())),
      labels)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  return server_lib.ModelServer([entry], options)


@pytest.fixture(scope="module")
def labelled_server(style_base):
  """A model server with versions 1 (``stable``) and 2 (``canary``) of the style model."""
  with _model_server(style_base, {"stable": 1, "canary": 2}) as server:
    yield server


def _gateway(tmp_path, target, split):
  store = stores.open_store(str(tmp_path / "state.db"))
  metrics = gateway_metrics.GatewayMetrics()
  caller = model_caller.ModelCaller(target, deadline_s=20.0)
  options = gateway.GatewayOptions(split=split)
  gw = gateway.Gateway(store, caller, metrics, options, clock=lambda: 1_700_000_000)
  return gateway_server.GatewayServer(gw, gateway_server.PortOptions(http_port=None)), store


def test_the_gateway_routes_each_arm_to_its_version_label(labelled_server, tmp_path):
  split = experiment_split.ExperimentSplit("exp1", 0.5, "s")
  users = [f"u{i}" for i in range(40)]
  server, store = _gateway(tmp_path, labelled_server.target, split)
  with server, gateway_client.GatewayClient(server.grpc_target) as client:
    for user in users:
      response = client.recommend(user_id=user, k=3)
      arm = split.arm(user)
      assert response.arm == arm and response.model_label == arm
      assert response.model_version == (2 if arm == "canary" else 1)
      # A request naming a label is not part of the experiment.
      named = client.recommend(user_id=user, k=3, experiment="stable")
      assert (named.arm, named.model_version) == ("", 1)
    metrics = server.gateway.metrics
    arms = [split.arm(u) for u in users]
    assert 0 < arms.count("canary") < len(users)
    for arm in ("stable", "canary"):
      assert metrics.value("melody_gateway_arm_requests_total", arm=arm, segment="new",
                           code="OK", source="model") == arms.count(arm)
      assert metrics.value("melody_gateway_arm_request_seconds_count", arm=arm,
                           segment="new") == arms.count(arm)
  store.close()


def test_a_canary_arm_without_a_canary_version_is_served_stable(style_base, tmp_path):
  split = experiment_split.ExperimentSplit("exp1", 1.0, "s")
  with _model_server(style_base, {"stable": 1}) as model_server:
    server, store = _gateway(tmp_path, model_server.target, split)
    with server, gateway_client.GatewayClient(server.grpc_target) as client:
      response = client.recommend(user_id="u1", k=3)
    assert response.source == "model"
    assert (response.arm, response.model_label, response.model_version) == ("stable",
                                                                           "stable", 1)
    assert server.gateway.metrics.value("melody_gateway_arm_requests_total", arm="stable",
                                        segment="new", code="OK", source="model") == 1
    store.close()


def test_the_gateway_flags_build_the_split(tmp_path):
  parser = argparse.ArgumentParser()
  gateway_main.add_gateway_arguments(parser)
  store_flag = ["--store", str(tmp_path / "state.db")]
  server, store = gateway_main.build(parser.parse_args(
      store_flag + ["--experiment", "exp1", "--canary-share", "0.25", "--salt", "s"]))
  assert server.gateway.options.split == experiment_split.ExperimentSplit("exp1", 0.25, "s")
  server.gateway.model.close()
  store.close()
  server, store = gateway_main.build(parser.parse_args(store_flag))
  assert server.gateway.options.split is None
  server.gateway.model.close()
  store.close()
  with pytest.raises(ValueError, match="canary_share"):
    gateway_main.build(parser.parse_args(store_flag + ["--experiment", "e",
                                                       "--canary-share", "2"]))
