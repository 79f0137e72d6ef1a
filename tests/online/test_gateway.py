"""Tests of the recommendation gateway over gRPC and HTTP/JSON, against a model server
serving a model with Melody's ``recommend`` signature (melody_testing.style_saved_model)."""

import json
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from melody_testing import online_events
from melody_testing import style_saved_model
from online import event_source
from online import gateway
from online import gateway_client
from online import gateway_metrics
from online import gateway_proto
from online import gateway_server
from online import model_caller
from online import nearline
from online import stores
from serving import request_schema

T0 = 1_700_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  root = tmp_path_factory.mktemp("gateway_store")
  plays = [online_events.play("u1", T0 + 60 * i, style_saved_model.track_id(3 + 5 * i),
                              segment="trial") for i in range(6)]
  plays += [online_events.play("u2", T0 + 60 * i, style_saved_model.track_id(i), skip=1.0)
            for i in range(4)]
  online_events.append(root / "a.jsonl", plays)
  with stores.open_store(str(root / "state.db")) as s:
    nearline.Updater(event_source.DirectorySource(str(root)), s).drain()
    yield s


def _serve(store, target, **ports):
  metrics = gateway_metrics.GatewayMetrics()
  caller = model_caller.ModelCaller(target, deadline_s=20.0, on_retry=metrics.retries.inc)
  gw = gateway.Gateway(store, caller, metrics, clock=lambda: T0 + 3600)
  return gateway_server.GatewayServer(gw, gateway_server.PortOptions(**ports))


@pytest.fixture(scope="module")
def served(store, style_model_server):
  with _serve(store, style_model_server.target) as server:
    yield server


def _http(server, body: bytes, path="/v1/recommend"):
  req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=body,
                               headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=30) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_recommend_over_grpc_and_http_reads_the_state(served):
  with gateway_client.GatewayClient(served.grpc_target) as client:
    response = client.recommend(user_id="u1", context="focus", k=5)
  assert response.source == "model" and not response.cold_start
  assert (response.model_name, response.model_version) == ("melody", 1)
  assert response.segment == "trial"
  ids = [item.track_id for item in response.items]
  assert len(ids) == 5 and {style_saved_model.track_style(t) for t in ids} == {3}
  assert set(response.items[0].head_scores) == {"interest", "interest_completion"}
  assert response.items[0].reasons == "style_affinity"
  status, doc = _http(served, json.dumps({"user_id": "u1", "context": "focus",
                                          "k": 5}).encode())
  assert status == 200
  assert [item["track_id"] for item in doc["items"]] == ids
  assert doc["source"] == "model" and doc["model_version"] == "1"


def test_the_grpc_answer_is_the_gateways_answer_message(served):
  request = gateway_proto.RecommendRequest(user_id="u1", context="workout", k=7)
  with gateway_client.GatewayClient(served.grpc_target) as client:
    over_grpc = client.recommend(request)
  direct = served.gateway.recommend(request)
  assert len(direct.items) == 7 and direct.weights.alpha > 0
  assert over_grpc == direct


def test_unknown_listener_gets_the_cold_start_state(served):
  with gateway_client.GatewayClient(served.grpc_target) as client:
    response = client.recommend(user_id="never-seen", k=3)
  assert response.cold_start and response.segment == "new" and len(response.items) == 3
  assert served.gateway.metrics.value("melody_gateway_cold_starts_total") >= 1


def test_weights_override_reaches_the_model(served):
  with gateway_client.GatewayClient(served.grpc_target) as client:
    response = client.recommend(user_id="u1", k=2, weights_override=(0.5, -1, 0.0))
  w = response.weights
  assert (w.alpha, w.beta, w.gamma) == pytest.approx((0.5, 0.2, 0.0))


@pytest.mark.parametrize("fields, field", [
    ({"user_id": ""}, "user_id"),
    ({"user_id": "u1", "k": 1000}, "k"),
    ({"user_id": "u1", "context": "dancing"}, "context"),
    ({"user_id": "u1", "surface": "car"}, "surface"),
    ({"user_id": "u1", "request_text": "x" * 1001}, "request_text"),
    ({"user_id": "u1", "experiment": "no such label"}, "experiment"),
    ({"user_id": "u1", "experiment": "canary"}, "experiment"),   # not a label of the model
    ({"user_id": "u1", "request_text": "calm piano"}, "request_text"),   # no intent module
])
def test_bad_requests_name_the_field(served, fields, field):
  with gateway_client.GatewayClient(served.grpc_target) as client:
    with pytest.raises(grpc.RpcError) as e:
      client.recommend(**fields)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert e.value.details().startswith(f"{field}: ")
  status, doc = _http(served, json.dumps(fields).encode())
  assert status == 400 and doc["field"] == field


def test_http_rejects_unknown_fields_and_oversized_bodies(served):
  status, doc = _http(served, b'{"user_id": "u1", "colour": "blue"}')
  assert status == 400 and "colour" in doc["error"]
  status, doc = _http(served, json.dumps({"user_id": "u" * 70_000}).encode())
  assert status == 413
  with gateway_client.GatewayClient(served.grpc_target) as client:
    with pytest.raises(grpc.RpcError) as e:
      client.recommend(user_id="u" * 70_000)
  assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_model_server_down_answers_the_segment_popularity_list(store):
  with _serve(store, "127.0.0.1:1") as server:   # nothing listens on port 1
    with gateway_client.GatewayClient(server.grpc_target) as client:
      response = client.recommend(user_id="u1", k=4)
    metrics = server.gateway.metrics
    assert response.source == "fallback_popularity" and response.segment == "trial"
    # u1's six completed plays are the trial segment's list; nothing else is in it.
    assert len(response.items) == 4
    assert {i.reasons for i in response.items} == {"popular_in_segment"}
    assert metrics.value("melody_gateway_fallbacks_total", reason="unavailable") == 1
    assert metrics.value("melody_gateway_model_retries_total") == 1
    assert metrics.value("melody_gateway_requests_total", transport="grpc", code="OK",
                         source="fallback_popularity") == 1
    status, doc = _http(server, json.dumps({"user_id": "someone", "k": 8}).encode())
    assert status == 200 and doc["source"] == "fallback_popularity" and doc["cold_start"]
    assert len(doc["items"]) == 6   # the overall list holds the six tracks played in full
    assert {i["reasons"] for i in doc["items"]} == {"popular_overall"}
    status, page = 200, urllib.request.urlopen(
        f"http://127.0.0.1:{server.http_port}/metrics", timeout=30).read().decode()
    assert 'melody_gateway_fallbacks_total{reason="unavailable"} 2.0' in page


def test_stop_turns_health_not_serving_and_refuses_calls(store, style_model_server):
  server = _serve(store, style_model_server.target).start()
  channel = grpc.insecure_channel(server.grpc_target)
  health = health_pb2_grpc.HealthStub(channel)
  assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == \
      health_pb2.HealthCheckResponse.SERVING
  server.stop(grace=1.0)
  with pytest.raises(grpc.RpcError):
    gateway_client.GatewayClient(server.grpc_target).recommend(user_id="u1", timeout=5)
  channel.close()


def test_the_request_built_from_a_state_passes_the_style_model_servers_checks(store):
  gw = gateway.Gateway(store, None, gateway_metrics.GatewayMetrics())
  request = gateway_proto.RecommendRequest(user_id="u1", context="workout", k=25,
                                           request_text="calm piano")
  request.weights_override.alpha = 2.0
  request.weights_override.beta = -1.0
  fields = gw.check(request)
  inputs = gateway.model_inputs(store.get("u1"), fields, T0 + 3600)
  request_schema.validate_recommend(inputs)
  spec = request_schema.recommend_input_spec(with_text=True)
  assert set(inputs) == set(spec)
  for name, s in spec.items():
    assert inputs[name].shape[1:] == tuple(s.shape[1:]), name
  assert inputs["override"][0] == 1 and inputs["k"] == 25
  assert list(inputs["alpha_beta_gamma"][0]) == [2.0, -1.0, 0.0]
  assert inputs["hist_len"][0] == 6 and inputs["sess_len"][0] == 0   # an hour later


@pytest.fixture
def silent_model_server():
  """A Predict endpoint that takes the call and does not answer until the test ends: a
  model server stuck behind a long batch, which no real model can be made to be on
  demand (a fast one can beat any short deadline)."""
  from concurrent import futures
  import threading
  release = threading.Event()

  def hold(request, context):
    release.wait(10)
    context.abort(grpc.StatusCode.UNAVAILABLE, "released")

  server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
  server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
      "tensorflow.serving.PredictionService",
      {"Predict": grpc.unary_unary_rpc_method_handler(hold)})])
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  yield f"127.0.0.1:{port}"
  release.set()
  server.stop(grace=None)


def test_a_model_call_past_its_deadline_falls_back(store, silent_model_server):
  metrics = gateway_metrics.GatewayMetrics()
  caller = model_caller.ModelCaller(silent_model_server, deadline_s=0.2)
  gw = gateway.Gateway(store, caller, metrics)
  response = gw.recommend(gateway_proto.RecommendRequest(user_id="u2", k=3))
  assert response.source == "fallback_popularity" and response.segment == "free"
  assert [i.reasons for i in response.items] == ["popular_overall"] * 3
  assert metrics.value("melody_gateway_fallbacks_total", reason="deadline_exceeded") == 1
  assert metrics.value("melody_gateway_model_retries_total") == 0
  caller.close()
