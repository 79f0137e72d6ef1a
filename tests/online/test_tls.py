"""TLS and mutual TLS on the gateway and on ``melody serve``'s gRPC and REST ports, with
certificates the test makes (melody_testing.tls_certs): a client with a certificate the
client CA signed is served, a client without one (or with another CA's) is refused."""

import json
import ssl
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from melody_testing import style_saved_model
from melody_testing import tls_certs
from online import gateway
from online import gateway_client
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import stores
from serving import model_config
from serving import server as server_lib
from serving import tls


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
  root = tmp_path_factory.mktemp("certs")
  ca = tls_certs.Authority(str(root))
  rogue = tls_certs.Authority(str(root), name="rogue-ca")
  return {"ca": ca.ca, "server": ca.issue("server", server=True),
          "client": ca.issue("client", server=False),
          "rogue": rogue.issue("rogue-client", server=False)}


def _mtls(certs):
  return tls.TlsFiles(certs["server"].cert, certs["server"].key, certs["ca"].cert)


def _creds(certs, client=None):
  pair = certs[client] if client else None
  return tls.grpc_channel_credentials(certs["ca"].cert, pair.cert if pair else "",
                                      pair.key if pair else "")


def _https_get(url, certs, client=None):
  context = ssl.create_default_context(cafile=certs["ca"].cert)
  if client:
    context.load_cert_chain(certs[client].cert, certs[client].key)
  with urllib.request.urlopen(url, context=context, timeout=30) as r:
    return r.status, r.read()


def _refused(call):
  with pytest.raises((grpc.RpcError, urllib.error.URLError, ssl.SSLError,
                      ConnectionError)) as e:
    call()
  if isinstance(e.value, grpc.RpcError):
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def mtls_model_server(tmp_path_factory, certs):
  base = str(tmp_path_factory.mktemp("tls_style") / "melody")
  style_saved_model.publish(base)
  options = server_lib.ServerOptions(port=0, rest_api_port=0, file_system_poll_wait_seconds=0,
                                     tls=_mtls(certs))
  with server_lib.ModelServer([model_config.ModelEntry("melody", base)], options) as server:
    yield server


def test_model_server_grpc_and_rest_require_a_client_certificate(mtls_model_server, certs):
  target = f"127.0.0.1:{mtls_model_server.port}"

  def health(creds):
    with grpc.secure_channel(target, creds) as channel:
      return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=10).status

  assert health(_creds(certs, "client")) == health_pb2.HealthCheckResponse.SERVING
  _refused(lambda: health(_creds(certs)))
  _refused(lambda: health(_creds(certs, "rogue")))
  url = f"https://127.0.0.1:{mtls_model_server.rest_api_port}/v1/models/melody"
  status, body = _https_get(url, certs, "client")
  assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
  _refused(lambda: _https_get(url, certs))
  _refused(lambda: _https_get(url, certs, "rogue"))


def test_gateway_mtls_and_its_mtls_call_to_the_model_server(mtls_model_server, certs,
                                                              tmp_path):
  metrics = gateway_metrics.GatewayMetrics()
  caller = model_caller.ModelCaller(f"127.0.0.1:{mtls_model_server.port}", deadline_s=20,
                                    credentials=_creds(certs, "client"))
  with stores.open_store(str(tmp_path / "s.db")) as store:
    gw = gateway.Gateway(store, caller, metrics)
    with gateway_server.GatewayServer(gw, gateway_server.PortOptions(tls=_mtls(certs))) as srv:
      with gateway_client.GatewayClient(srv.grpc_target, _creds(certs, "client")) as client:
        response = client.recommend(user_id="u1", k=3)
      assert response.source == "model" and len(response.items) == 3
      for who in (None, "rogue"):
        with gateway_client.GatewayClient(srv.grpc_target, _creds(certs, who)) as client:
          _refused(lambda c=client: c.recommend(user_id="u1", k=3, timeout=10))
      url = f"https://127.0.0.1:{srv.http_port}/healthz"
      assert _https_get(url, certs, "client")[0] == 200
      _refused(lambda: _https_get(url, certs))
  assert metrics.value("melody_gateway_fallbacks_total", reason="unavailable") == 0


def test_tls_flags_are_checked(tmp_path):
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser()
  tls.add_tls_arguments(parser)
  assert tls.from_args(parser.parse_args([])) is None
  for argv in (["--tls-cert", "c"], ["--tls-client-ca", "ca"]):
    with pytest.raises(ValueError):
      tls.from_args(parser.parse_args(argv))
  with pytest.raises(OSError):
    tls.from_args(parser.parse_args(["--tls-cert", str(tmp_path / "no.crt"),
                                     "--tls-key", str(tmp_path / "no.key")]))
