"""Shared fixtures of the online tests: a Redis server of their own, and both stores.

The Redis server is Debian's ``redis-server`` (``make setup`` installs it), started on a
free localhost port with its data in a temporary directory and stopped at the end of
the session; no running service is assumed. Tests that need it skip visibly when the
binary is absent.
"""

import shutil
import socket
import subprocess
import time

import pytest

from online import state_store


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
  """``redis://127.0.0.1:PORT/0`` of a redis-server this session started."""
  binary = shutil.which("redis-server")
  if binary is None:
    pytest.skip("redis-server not installed (make setup installs it)")
  data = tmp_path_factory.mktemp("redis")
  import redis  # pylint: disable=import-outside-toplevel
  for _ in range(3):   # another process may take the port between the probe and the bind
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
      try:
        client.ping()
        break
      except redis.ConnectionError:
        time.sleep(0.05)
    if proc.poll() is None:
      break
  else:
    pytest.fail("redis-server did not start")
  client.close()
  yield f"redis://127.0.0.1:{port}/0"
  proc.terminate()
  proc.wait(timeout=30)


@pytest.fixture
def redis_store_url(redis_url):
  """The session's Redis, emptied for this test."""
  import redis  # pylint: disable=import-outside-toplevel
  client = redis.Redis.from_url(redis_url)
  client.flushdb()
  client.close()
  return redis_url


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
  """A fresh store URL of each backend."""
  if request.param == "sqlite":
    return f"sqlite:///{tmp_path / 'state.db'}"
  return request.getfixturevalue("redis_store_url")


@pytest.fixture
def store(store_url):
  with state_store.open_store(store_url) as s:
    yield s
