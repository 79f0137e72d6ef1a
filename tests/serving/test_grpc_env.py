"""The gRPC I/O setting (serving/grpc_env.py): applied by the server's entry point and the
client, never by ``import serving``."""

import os
import subprocess
import sys

from serving import grpc_env


def _run(code: str) -> list:
  env = {k: v for k, v in os.environ.items() if k != grpc_env.VAR}
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, check=True, timeout=300).stdout.splitlines()


def test_import_serving_leaves_grpc_experiments_unset():
  out = _run("import os, serving, serving.cli, serving.client, serving.server_main; "
             "print(os.environ.get('GRPC_EXPERIMENTS'))")
  assert out == ["None"]


def test_server_entry_point_sets_polling_io_before_grpc_loads(tmp_path):
  code = ("import os, sys; from serving import server_main; "
          "assert 'grpc' not in sys.modules; "
          f"code = server_main.main(['--model_config_file', {str(tmp_path / 'none')!r}]); "
          "import grpc; from serving import grpc_env; "
          "print(code, os.environ['GRPC_EXPERIMENTS']); print(grpc_env.describe())")
  out = _run(code)
  assert out[0] == f"2 {grpc_env.POLLING_IO}"   # a bad config, but the setting came first
  assert out[1].startswith("polling I/O")


def test_client_helper_sets_polling_io_before_grpc_loads():
  out = _run("import os, sys; from serving import client; assert 'grpc' not in sys.modules; "
             "client.ModelClient('127.0.0.1:1').close(); "
             "print(os.environ['GRPC_EXPERIMENTS'])")
  assert out == [grpc_env.POLLING_IO]


def test_an_explicit_setting_or_a_late_import_is_left_alone(monkeypatch):
  monkeypatch.setenv(grpc_env.VAR, "")
  grpc_env.prefer_polling_io()
  assert os.environ[grpc_env.VAR] == ""
  assert grpc_env.describe() == "grpcio default I/O (GRPC_EXPERIMENTS='')"
  monkeypatch.delenv(grpc_env.VAR)
  monkeypatch.setitem(sys.modules, "grpc", sys.modules.get("grpc", object()))
  grpc_env.prefer_polling_io()   # too late: grpc read the variable when it was imported
  assert grpc_env.VAR not in os.environ
  assert grpc_env.describe() == "grpcio default I/O (GRPC_EXPERIMENTS=None)"
