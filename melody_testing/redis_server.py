"""A throwaway Redis server for tests and benchmarks: Debian's ``redis-server`` on a free
localhost port, its data in a given directory, no persistence, stopped on exit.

No running Redis service is assumed (``make setup`` installs the binary when missing).
"""

import contextlib
import shutil
import socket
import subprocess
import time
from typing import Iterator


class RedisUnavailable(RuntimeError):
  """``redis-server`` is not installed or did not start."""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def redis_server(data_dir: str, start_timeout: float = 30.0) -> Iterator[str]:
  """Runs ``redis-server`` for the ``with`` block and yields its ``redis://`` URL.

  Raises:
    RedisUnavailable: the binary is missing or the server did not answer in time.
  """
  import redis  # pylint: disable=import-outside-toplevel
  binary = shutil.which("redis-server")
  if binary is None:
    raise RedisUnavailable("redis-server not installed (make setup installs it)")
  for _ in range(3):   # another process may take the port between the probe and the bind
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir,
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + start_timeout
    while proc.poll() is None and time.monotonic() < deadline:
      try:
        client.ping()
        break
      except redis.ConnectionError:
        time.sleep(0.05)
    client.close()
    if proc.poll() is None and time.monotonic() < deadline:
      break
    proc.kill()
    proc.wait()
  else:
    raise RedisUnavailable("redis-server did not start")
  try:
    yield f"redis://127.0.0.1:{port}/0"
  finally:
    proc.terminate()
    proc.wait(timeout=30)
