"""The gateway against Melody's own exported ranker (the session's tiny export,
``ranker_export`` in tests/conftest.py): the request it builds from a listener's state
is one the real ``recommend`` signature accepts, and its answer carries every head."""

import os
import shutil

import pandas as pd
import pytest

from features import feature_spec
from melody_testing import online_events
from online import event_source
from online import gateway
from online import gateway_metrics
from online import model_caller
from online import nearline
from online import gateway_proto
from online import stores
from serving import model_config
from serving import server as server_lib

T0 = 1_700_000_000


@pytest.mark.slow
def test_recommend_through_the_exported_ranker(ranker_export, tmp_path):
  tracks = pd.read_parquet(ranker_export["paths"]["tracks"])["track_id"].astype(str).tolist()
  online_events.append(tmp_path / "a.jsonl", [
      online_events.play("u1", T0 + 60 * i, tracks[i], completion=0.9) for i in range(12)])
  # The export without its warmup records: replaying them (every signature) would cost
  # more than the calls under test.
  base = str(tmp_path / "models" / "melody")
  shutil.copytree(ranker_export["v1"], os.path.join(base, "1"),
                  ignore=shutil.ignore_patterns("tf_serving_warmup_requests"))
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  entry = model_config.ModelEntry("melody", base)
  with stores.open_store(str(tmp_path / "s.db")) as store, \
      server_lib.ModelServer([entry], options) as server:
    nearline.Updater(event_source.DirectorySource(str(tmp_path)), store).drain()
    metrics = gateway_metrics.GatewayMetrics()
    gw = gateway.Gateway(store, model_caller.ModelCaller(server.target, deadline_s=60),
                         metrics, clock=lambda: T0 + 900)
    response = gw.recommend(gateway_proto.RecommendRequest(user_id="u1", context="commute",
                                                           k=7))
    cold = gw.recommend(gateway_proto.RecommendRequest(user_id="nobody", k=3))
  assert response.source == "model" and response.model_version == 1
  assert len(response.items) == 7
  assert {i.track_id for i in response.items} <= set(tracks)
  assert set(response.items[0].head_scores) >= set(feature_spec.LABEL_KEYS) | {"interest"}
  assert all(i.reasons for i in response.items)
  assert response.weights.alpha > 0
  assert cold.cold_start and cold.segment == "new" and len(cold.items) == 3
