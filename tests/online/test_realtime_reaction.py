"""End to end: plays reach the next recommendation through nearline, store and gateway.

A listener's log is tailed by a real ``melody nearline`` process; the gateway answers
from the store and a model server serving a model with Melody's ``recommend`` signature
(melody_testing.style_saved_model). The listener then completes several tracks of one
style; after the nearline interval the next Recommend must rank that style higher (its
share of the top 10 rises). The event-to-recommendation lag is measured and reported
(``record_property``), not asserted.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from melody_testing import online_events
from melody_testing import style_saved_model
from online import gateway
from online import gateway_client
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import stores

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STYLE = 4
INTERVAL_S = 0.25


def _share(response) -> float:
  styles = [style_saved_model.track_style(i.track_id) for i in response.items]
  return styles.count(STYLE) / len(styles)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_completed_plays_of_a_style_raise_its_share_on_the_next_request(
    style_model_server, tmp_path, backend, request, record_property):
  url = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
         else request.getfixturevalue("redis_store_url"))
  events = tmp_path / "events"
  events.mkdir()
  log = events / "live.jsonl"
  now = int(time.time())
  # Earlier plays of styles 0, 1 and 2, completed.
  online_events.append(log, [online_events.play("u7", now - 3000 + 60 * i,
                                                style_saved_model.track_id(i % 3 + 5 * i))
                             for i in range(8)])
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.Popen(
      [sys.executable, "-m", "online.nearline_main", "--events", str(events), "--store", url,
       "--interval", str(INTERVAL_S)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE)
  try:
    with stores.open_store(url) as store:
      deadline = time.monotonic() + 120
      while store.get("u7") is None and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
      caller = model_caller.ModelCaller(style_model_server.target, deadline_s=20)
      gw = gateway.Gateway(store, caller, gateway_metrics.GatewayMetrics())
      with gateway_server.GatewayServer(gw, gateway_server.PortOptions(http_port=None)) as srv:
        with gateway_client.GatewayClient(srv.grpc_target) as client:
          before = client.recommend(user_id="u7", context="focus", k=10)
          assert before.source == "model" and not before.cold_start
          # The listener completes four tracks of STYLE, now.
          sent = time.monotonic()
          online_events.append(log, [online_events.play(
              "u7", int(time.time()), style_saved_model.track_id(STYLE + 5 * (10 + i)),
              session="live") for i in range(4)])
          after = before
          while _share(after) <= _share(before) and time.monotonic() < sent + 120:
            time.sleep(0.02)
            after = client.recommend(user_id="u7", context="focus", k=10)
          lag = time.monotonic() - sent
  finally:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
  record_property("event_to_recommendation_lag_s", round(lag, 3))
  print(f"[{backend}] share of style {STYLE} in the top 10: {_share(before):.1f} -> "
        f"{_share(after):.1f}, lag {lag:.3f} s (nearline interval {INTERVAL_S} s)")
  assert _share(before) == 0.0
  assert _share(after) > 0.5
