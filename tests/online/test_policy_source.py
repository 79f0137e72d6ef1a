"""``melody gateway --policy``: the policy's weights go out per request, a changed file
is reloaded, a rejected one never replaces the policy in force, and a bad file stops
the gateway on start."""

import argparse
import logging
import os

import pytest

from online import gateway
from online import gateway_client
from online import gateway_main
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import policy_source
from online import stores
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig

PROVENANCE = {"simulation_run": "test", "world_version": "seed=7", "model_version": "oracle",
              "metrics": {"completion_rate": 0.5},
              "constraint": {"metric": "completion_rate", "floor": 0.5, "met": True}}


def _policy(new_row, focus_row=None):
  rows = dict(FusionConfig().segment_weights)
  rows["new"] = new_row
  context = {("new", "focus"): focus_row} if focus_row else {}
  return policy_file.from_configs(FusionConfig(segment_weights=rows, context_weights=context),
                                  MixingConfig(), PROVENANCE)


def test_a_changed_file_is_reloaded_and_a_bad_one_rejected(tmp_path):
  path = str(tmp_path / "policy.json")
  first, second = _policy((0.6, 0.3, 0.1)), _policy((0.5, 0.0, 0.5))
  first.dump(path)
  now = [0.0]
  source = policy_source.PolicySource(path, check_every_s=1.0, clock=lambda: now[0])
  assert source.current() == first
  second.dump(path)
  os.utime(path, ns=(1, 1))   # a new stamp even within the file system's time grain
  assert source.current() == first       # not looked at again yet
  now[0] = 1.0
  assert source.current() == second
  with open(path, "w", encoding="utf-8") as f:
    f.write('{"schema_version": 1}')
  now[0] = 2.0
  assert source.current() == second and source.rejected == 1
  os.remove(path)
  now[0] = 3.0
  assert source.current() == second      # a missing file keeps the policy too


def test_a_bad_policy_stops_the_gateway_on_start(tmp_path, capsys):
  bad = tmp_path / "policy.json"
  bad.write_text('{"schema_version": 1}')
  assert gateway_main.main(["--store", str(tmp_path / "state.db"), "--policy", str(bad),
                            "--port", "0", "--http-port", "-1"]) == 2
  assert f"{bad}: version: is missing" in capsys.readouterr().err
  parser = argparse.ArgumentParser()
  gateway_main.add_gateway_arguments(parser)
  good = str(tmp_path / "good.json")
  _policy((0.6, 0.3, 0.1)).dump(good)
  server, store = gateway_main.build(parser.parse_args(
      ["--store", str(tmp_path / "state.db"), "--policy", good]))
  assert server.gateway.policy.path == good
  server.gateway.model.close()
  store.close()


def test_the_gateway_sends_the_policy_weights_per_request(style_model_server, tmp_path,
                                                          caplog):
  path = str(tmp_path / "policy.json")
  policy = _policy((0.6, 0.3, 0.1), focus_row=(0.2, 0.3, 0.5))
  policy.dump(path)
  with stores.open_store(str(tmp_path / "state.db")) as store:
    gw = gateway.Gateway(store, model_caller.ModelCaller(style_model_server.target,
                                                         deadline_s=20.0),
                         gateway_metrics.GatewayMetrics(),
                         policy=policy_source.PolicySource(path))
    with gateway_server.GatewayServer(gw, gateway_server.PortOptions(http_port=None)) as srv:
      with gateway_client.GatewayClient(srv.grpc_target) as client:
        with caplog.at_level(logging.INFO, logger="melody.online.policy"):
          plain = client.recommend(user_id="u1", k=3).weights
          focus = client.recommend(user_id="u2", k=3, context="focus").weights
          own = client.recommend(user_id="u3", k=3, weights_override=(1.0, 0.0, 0.0)).weights
  # A cold start is segment "new"; the style model's own table would give (1.0, 0.2, 0.1).
  assert (plain.alpha, plain.beta, plain.gamma) == pytest.approx((0.6, 0.3, 0.1))
  assert (focus.alpha, focus.beta, focus.gamma) == pytest.approx((0.2, 0.3, 0.5))
  assert (own.alpha, own.beta, own.gamma) == (1.0, 0.0, 0.0)
  shaped = [r.getMessage() for r in caplog.records if r.name == "melody.online.policy"
            and r.getMessage().startswith("user ")]
  assert shaped == [f"user u1 policy {policy.version}", f"user u2 policy {policy.version}"]
