"""The gRPC I/O setting ``import serving`` applies (serving/grpc_env.py)."""

import os
import subprocess
import sys

from serving import grpc_env


def test_import_serving_sets_polling_io_before_grpc_loads():
  env = {k: v for k, v in os.environ.items() if k != grpc_env.VAR}
  code = ("import sys, os, serving; assert 'grpc' not in sys.modules; import grpc; "
          "from serving import grpc_env; print(os.environ['GRPC_EXPERIMENTS']); "
          "print(grpc_env.describe())")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.splitlines()
  assert out[0] == grpc_env.POLLING_IO
  assert out[1].startswith("polling I/O")


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
