"""The request log of ``melody serve --request-log``: one JSON line per answered call with
the inputs the model received, rotated past its size bound, off by default."""

import argparse

import numpy as np
import pytest

from serving import client
from serving import request_log
from serving import server_main
from melody_testing import toy_saved_model


def test_requests_are_json_lines_with_decoded_inputs(tmp_path):
  log = request_log.RequestLog(str(tmp_path / "logs" / "requests.jsonl"))
  log.write("melody", 3, "rank", {"user_id": np.array([b"u1", b"u2"], object),
                                  "context_hour": np.array([[7], [8]], np.int64),
                                  "alpha_beta_gamma": np.array([[1.0, 0.5, 0.25]] * 2,
                                                               np.float32)})
  log.close()
  (line,) = request_log.read(log.path)
  assert (line["model"], line["version"], line["signature"]) == ("melody", 3, "rank")
  assert line["inputs"] == {"user_id": ["u1", "u2"], "context_hour": [[7], [8]],
                            "alpha_beta_gamma": [[1.0, 0.5, 0.25]] * 2}


def test_the_log_is_rotated_past_its_bound_and_read_back_in_order(tmp_path):
  path = str(tmp_path / "requests.jsonl")
  log = request_log.RequestLog(path, max_bytes=400, backups=2)
  for i in range(20):
    log.write("m", 1, "s", {"user_id": np.array([f"u{i}".encode()], object)})
  log.close()
  assert (tmp_path / "requests.jsonl.1").exists() and (tmp_path / "requests.jsonl.2").exists()
  assert not (tmp_path / "requests.jsonl.3").exists()
  for name in ("requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"):
    assert (tmp_path / name).stat().st_size <= 400
  users = [line["inputs"]["user_id"][0] for line in request_log.read(path)]
  # The oldest lines went with the dropped backup; what is left is the newest, in order.
  assert users == [f"u{i}" for i in range(20 - len(users), 20)] and len(users) < 20


@pytest.mark.parametrize("max_bytes, backups", [(0, 1), (100, 0)])
def test_bad_bounds_are_refused(tmp_path, max_bytes, backups):
  with pytest.raises(ValueError):
    request_log.RequestLog(str(tmp_path / "r.jsonl"), max_bytes=max_bytes, backups=backups)


@pytest.mark.slow
def test_melody_serve_logs_answered_predicts_only_when_asked(tmp_path):
  toy_saved_model.write_version(str(tmp_path / "toy"), 1, scale=1.0)
  parser = argparse.ArgumentParser()
  server_main.add_serve_arguments(parser)
  log_path = tmp_path / "serving" / "requests.jsonl"
  args = parser.parse_args(["--model_name", "toy", "--model_base_path", str(tmp_path / "toy"),
                            "--port", "0", "--rest_api_port", "0",
                            "--request-log", str(log_path)])
  assert parser.parse_args(["--model_name", "toy"]).request_log is None   # off by default
  server = server_main.server_from_args(args).start()
  try:
    inputs = toy_saved_model.score_inputs(2, seed=4)
    with client.ModelClient(server.target, timeout=60) as c:
      c.predict("toy", "serving_default", inputs)
      with pytest.raises(Exception):
        c.predict("toy", "serving_default", {"x": inputs["x"]})   # refused: not logged
  finally:
    server.stop(grace=1)
  (line,) = request_log.read(str(log_path))
  assert (line["model"], line["version"], line["signature"]) == ("toy", 1, "serving_default")
  assert line["inputs"] == {"ids": inputs["ids"].tolist(), "x": inputs["x"].tolist()}
