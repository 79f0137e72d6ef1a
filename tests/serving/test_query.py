"""Tests of ``melody query`` (serving.query, serving.cli): requests from a data
directory's events, in process, and over gRPC and REST against the local model server."""

import argparse
import os

import numpy as np
import pandas as pd
import pytest

from features import feature_spec
from melody_testing import version_copies
from ranking.fusion import reasons
from serving import cli
from serving import query
from serving import server as server_lib


@pytest.fixture(scope="module")
def env(ranker_export, tmp_path_factory):
  # The session's export of the tiny ranker (tests/conftest.py), served from a copy.
  paths = ranker_export["paths"]
  base = str(tmp_path_factory.mktemp("query") / "models" / "melody")
  version = version_copies.copy_as_first_version(ranker_export["v1"], base)
  events = pd.read_parquet(os.path.join(paths["data"], "events"))
  user = events["user_id"].value_counts().index[0]   # the most active listener
  return {"paths": paths, "version": version, "base": base, "events": events, "user": user}


def _args(env, *extra):
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers())
  return parser.parse_args(["query", "--user", env["user"], "--context", "commute",
                            "--data", env["paths"]["data"], *extra])


def test_listener_is_the_users_recent_plays(env):
  inputs = query.listener_from_events(env["paths"]["data"], env["user"], "commute")
  mine = env["events"][env["events"]["user_id"] == env["user"]].sort_values("ts")
  n = min(len(mine), feature_spec.HISTORY_LEN)
  assert inputs["hist_len"].tolist() == [n]
  recent = [t.encode() for t in mine["track_id"].to_numpy()[::-1][:n]]
  assert list(inputs["hist_track_ids"][0][:n]) == recent
  assert 1 <= inputs["sess_len"][0] <= feature_spec.SESSION_LEN   # the last play is a minute ago
  assert inputs["sess_track_ids"][0][0] == recent[0]
  assert inputs["context_activity"].tolist() == [b"commute"]
  assert inputs["user_segment"][0].decode() == mine["user_segment"].iloc[-1]


def test_bad_arguments_name_the_problem(env):
  with pytest.raises(ValueError, match="context 'nap'"):
    query.listener_from_events(env["paths"]["data"], env["user"], "nap")
  with pytest.raises(ValueError, match="user 'nobody'"):
    query.listener_from_events(env["paths"]["data"], "nobody", "commute")
  with pytest.raises(ValueError, match="--text"):
    query.build_request(env["paths"]["data"], env["user"], "commute", "rank", text="calm")


def test_rank_in_process_prints_the_ranked_table(env, capsys):
  assert query.main(_args(env, "--saved-model", env["version"], "--k", "7",
                          "--candidates", "30")) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("rank for user") and "reasons" in out[1]
  body = out[3:10]
  assert [int(line.split()[0]) for line in body] == list(range(1, 8))
  assert out[10].startswith("fusion weights")
  rows, weights = query.run(env["paths"]["data"], env["user"], "commute",
                            saved_model=env["version"], k=7, candidates=30)
  assert [r.track_id for r in rows] == [line.split()[1] for line in body]
  for r in rows:
    assert set(r.reasons.split(",")) <= set(reasons.REASON_CODES)
  assert np.isclose(sum(weights), 1.0, atol=1e-5)


def test_recommend_over_grpc_and_text_without_intent(env, capsys):
  options = server_lib.ServerOptions(port=0, rest_api_port=0, file_system_poll_wait_seconds=0)
  config = os.path.join(os.path.dirname(env["base"]), "models.config")
  with server_lib.ModelServer.from_config_file(config, options) as server:
    recommend = ["--signature", "recommend", "--k", "5", "--version-label", "stable"]
    assert query.main(_args(env, "--server", server.target, *recommend)) == 0
    over_grpc = capsys.readouterr().out
    out = over_grpc.splitlines()
    assert len(out) == 3 + 5 + 1
    tracks = set(pd.read_parquet(env["paths"]["tracks"])["track_id"])
    assert {line.split()[1] for line in out[3:8]} <= tracks
    assert query.main(_args(env, "--server", server.target, "--signature", "recommend",
                            "--text", "calm piano")) == 2
    assert "intent module" in capsys.readouterr().err

    # --rest prints the same table as gRPC.
    rest = f"127.0.0.1:{server.rest_api_port}"
    assert query.main(_args(env, "--rest", rest, *recommend)) == 0
    assert capsys.readouterr().out == over_grpc
    rank = ["--signature", "rank", "--k", "7", "--candidates", "30"]
    assert query.main(_args(env, "--server", server.target, *rank)) == 0
    over_grpc = capsys.readouterr().out
    assert query.main(_args(env, "--rest", rest, *rank)) == 0
    assert capsys.readouterr().out == over_grpc
    assert query.main(_args(env, "--rest", rest, "--model", "nope")) == 1
    assert "server error HTTP 404: model 'nope' is not served" in capsys.readouterr().err


def test_query_rest_flag_defaults_to_the_rest_port(env):
  assert _args(env).rest is None
  assert _args(env, "--rest").rest == "127.0.0.1:8501"
  assert _args(env, "--rest", "10.0.0.2:9000").rest == "10.0.0.2:9000"
