"""``melody gateway`` as a process: its flags, serving Recommend, and SIGTERM draining to
exit status 0."""

import os
import re
import signal
import subprocess
import sys

import pytest

from online import gateway_client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_gateway_process_serves_then_stops_on_sigterm(style_model_server, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.Popen(
      [sys.executable, "-m", "online.gateway_main", "--store", str(tmp_path / "s.db"),
       "--model-server", style_model_server.target, "--port", "0", "--http-port", "0",
       "--grace-seconds", "2"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    target = None
    for line in proc.stdout:
      match = re.search(r"gRPC on (\S+)", line)
      if match:
        target = match.group(1)
        break
    assert target, proc.stderr.read()
    with gateway_client.GatewayClient(target, timeout=60) as client:
      response = client.recommend(user_id="first-visit", k=4)
    assert response.source == "model" and response.cold_start and len(response.items) == 4
  finally:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 0
  assert "melody gateway: stopped" in out
