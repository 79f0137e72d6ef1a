"""Shared fixtures of the online tests: a Redis server of their own, both stores, and a
model server serving a model with Melody's ``recommend`` signature.

The Redis server is Debian's ``redis-server`` (``make setup`` installs it), started on a
free localhost port with its data in a temporary directory and stopped at the end of
the session; no running service is assumed. Tests that need it skip visibly when the
binary is absent.
"""

import pytest

from melody_testing import redis_server
from melody_testing import style_saved_model
from online import stores
from serving import model_config
from serving import server as server_lib


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
  """``redis://127.0.0.1:PORT/0`` of a redis-server this session started."""
  try:
    with redis_server.redis_server(str(tmp_path_factory.mktemp("redis"))) as url:
      yield url
  except redis_server.RedisUnavailable as e:
    pytest.skip(str(e))


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
  with stores.open_store(store_url) as s:
    yield s


@pytest.fixture(scope="session")
def style_model_server(tmp_path_factory):
  """``melody serve``'s server (in process) serving melody_testing.style_saved_model as
  model ``melody``, version 1, on a free port."""
  base = str(tmp_path_factory.mktemp("style") / "melody")
  style_saved_model.publish(base)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  with server_lib.ModelServer([model_config.ModelEntry("melody", base)], options) as server:
    yield server
