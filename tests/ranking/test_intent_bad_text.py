"""Request text that is not UTF-8 is INVALID_ARGUMENT (gRPC) / 400 (REST) naming the input,
through the same validator the intent signatures use; good text still passes."""

import base64
import http.client
import json

import grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import request_schema
from serving import server as server_lib
from melody_testing import toy_saved_model


def test_validators_name_request_text_and_text():
  with pytest.raises(ValueError, match=r"'request_text' row 1 is not valid UTF-8"):
    request_schema.check_utf8({"request_text": np.array([b"calm", b"\xff\xfe"], object)},
                              "request_text")
  with pytest.raises(ValueError, match=r"'text' row 0 is not valid UTF-8"):
    request_schema.validate_intent({"k": np.int32(5), "text": np.array([b"\xc3"], object)})
  request_schema.validate_intent({"k": np.int32(5),
                                  "text": np.array(["caf\u00e9 ".encode(), b""], object)})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("models") / "toy")
  toy_saved_model.write_version(base, 1, scale=1.0)
  entry = model_config.ModelEntry("toy", base, version_labels={"stable": 1})
  options = server_lib.ServerOptions(port=0, rest_api_port=0, file_system_poll_wait_seconds=0)
  check = lambda arrays: request_schema.check_utf8(arrays, "words")  # noqa: E731
  server = server_lib.ModelServer([entry], options, validators={"toy": {"tag": check}}).start()
  yield server
  server.stop(grace=1)


def test_grpc_rejects_invalid_utf8_and_serves_good_text(served):
  with client.ModelClient(served.target, timeout=60) as c:
    with pytest.raises(grpc.RpcError) as err:
      c.predict("toy", "tag", {"words": np.array([b"rain", b"r\xe9in"], object)})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'words' row 1 is not valid UTF-8" in err.value.details()
    out = c.predict("toy", "tag", {"words": np.array(["caf\u00e9".encode()], object)})
  assert list(out["length"]) == [5]


def test_rest_answers_400_naming_the_input(served):
  body = {"signature_name": "tag",
          "instances": ["rain", {"b64": base64.b64encode(b"\xffrain").decode()}]}
  connection = http.client.HTTPConnection("127.0.0.1", served.rest_api_port, timeout=60)
  try:
    connection.request("POST", "/v1/models/toy:predict", body=json.dumps(body).encode())
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read().decode())
  finally:
    connection.close()
  assert status == 400
  assert "'words' row 1 is not valid UTF-8" in answer["error"]
