"""The serving side of the live loop as real processes: model server, nearline, gateway.

This module owns starting `melody serve`, `melody nearline` and `melody gateway` as
subprocesses on free local ports, waiting until each answers, restarting one of them
(the drills), reading the nearline's Prometheus counters, and stopping all three. Their
logs go to ``WORKDIR/logs/<name>.log``.
"""

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Dict, List

import grpc

from online import state_store
from online import stores


def free_port() -> int:
  """A port no one listens on right now (the OS picks it)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_grpc(target: str, timeout_s: float) -> None:
  with grpc.insecure_channel(target) as channel:
    grpc.channel_ready_future(channel).result(timeout=timeout_s)


def _wait_http(url: str, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with urllib.request.urlopen(url, timeout=5) as response:
        response.read()
      return
    except OSError:
      if time.monotonic() > deadline:
        raise
      time.sleep(0.2)


@dataclasses.dataclass
class StackPaths:
  """Where the processes read and write.

  Attributes:
    models_config: The model server's ``models.config``.
    events_dir: The event logs the nearline updater tails.
    store: The listener state store (SQLite file).
    weights_override: The promo controller's override file the gateway watches.
    logs_dir: Process logs.
  """
  models_config: str
  events_dir: str
  store: str
  weights_override: str
  logs_dir: str


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
  """The gateway's experiment (name, canary share and salt of the split), its deadline
  and the policy file it serves ("" for none: the model's weight table)."""
  experiment: str = "live"
  canary_share: float = 0.1
  salt: str = "melody-live"
  deadline_ms: float = 2000.0
  policy: str = ""


class LiveStack:
  """The three processes, started in order (server, nearline, gateway).

  Args:
    paths: Their files.
    gateway: The experiment the gateway splits on.
    startup_timeout_s: How long a process may take to answer. TensorFlow's import and a
      model's load are a minute of CPU; a process niced on a machine loaded five times
      over gets a tenth of a core, and took over 5 minutes.
  """

  def __init__(self, paths: StackPaths, gateway: GatewaySettings = GatewaySettings(),
               startup_timeout_s: float = 900.0):
    self.paths = paths
    self.settings = gateway
    self.timeout = startup_timeout_s
    self.server_port = free_port()
    self.gateway_port = free_port()
    self.gateway_http = free_port()
    self.nearline_metrics = free_port()
    self.procs: Dict[str, subprocess.Popen] = {}
    os.makedirs(paths.logs_dir, exist_ok=True)
    os.makedirs(paths.events_dir, exist_ok=True)

  @property
  def server_target(self) -> str:
    return f"127.0.0.1:{self.server_port}"

  @property
  def gateway_target(self) -> str:
    return f"127.0.0.1:{self.gateway_port}"

  def _argv(self, name: str) -> List[str]:
    p, g = self.paths, self.settings
    if name == "server":
      return ["serve", "--model_config_file", p.models_config, "--port",
              str(self.server_port), "--rest_api_port", "0",
              "--file_system_poll_wait_seconds", "0"]
    if name == "nearline":
      return ["nearline", "--events", p.events_dir, "--store", p.store, "--interval", "1",
              "--metrics-port", str(self.nearline_metrics)]
    argv = ["gateway", "--store", p.store, "--model-server", self.server_target,
            "--experiment", g.experiment, "--canary-share", str(g.canary_share),
            "--salt", g.salt, "--weights-override", p.weights_override,
            "--deadline-ms", str(g.deadline_ms), "--port", str(self.gateway_port),
            "--http-port", str(self.gateway_http)]
    return argv + (["--policy", g.policy] if g.policy else [])

  def start(self, name: str) -> None:
    """Starts ``name`` (server, nearline or gateway) and waits until it answers."""
    log = open(os.path.join(self.paths.logs_dir, f"{name}.log"), "ab")
    cmd = [sys.executable, "-m", "melody_cli.main"] + self._argv(name)
    self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if name == "server":
      _wait_grpc(self.server_target, self.timeout)
    elif name == "gateway":
      _wait_grpc(self.gateway_target, self.timeout)
    else:
      _wait_http(f"http://127.0.0.1:{self.nearline_metrics}/metrics", self.timeout)

  def start_all(self) -> None:
    for name in ("server", "nearline", "gateway"):
      self.start(name)

  def stop(self, name: str, kill: bool = False) -> None:
    """Stops ``name``: SIGTERM (graceful) or SIGKILL (a crash)."""
    proc = self.procs.pop(name, None)
    if proc is None:
      return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
      proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()

  def stop_all(self) -> None:
    for name in ("gateway", "nearline", "server"):
      self.stop(name)

  def nearline_counts(self) -> Dict[str, float]:
    """The nearline's ``melody_nearline_events`` counters by outcome (0 when down)."""
    url = f"http://127.0.0.1:{self.nearline_metrics}/metrics"
    try:
      with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    except OSError:
      return {}
    counts = {}
    for m in re.finditer(r'^melody_nearline_events_total\{outcome="(\w+)"\} ([0-9.e+]+)$',
                         text, re.M):
      counts[m.group(1)] = float(m.group(2))
    return counts

  def __enter__(self) -> "LiveStack":
    return self

  def __exit__(self, *exc) -> None:
    self.stop_all()


def wait_applied(store_path: str, events_dir: str, timeout_s: float = 300.0) -> bool:
  """Waits until the store's offsets reach the end of every event log; True if they did.

  Raises nothing: a nearline that is behind after ``timeout_s`` is reported by False.
  """
  deadline = time.monotonic() + timeout_s
  while True:
    sizes = {name: os.path.getsize(os.path.join(events_dir, name))
             for name in os.listdir(events_dir) if name.endswith(".jsonl")}
    with stores.open_store(store_path) as store:
      offsets = store.offsets()
    if all(offsets.get(n) is not None and offsets[n].offset >= size
           for n, size in sizes.items()):
      return True
    if time.monotonic() > deadline:
      return False
    time.sleep(1.0)


def reason_kind(reason: str) -> str:
  """A quarantine reason without its line's details (``not JSON: unexpected end of data
  at column 231`` -> ``not JSON``, ``late by 2492736 s (limit 604800 s)`` -> ``late``),
  so that a day's report counts lines per kind."""
  return reason.split(":", 1)[0].split(" by ", 1)[0].strip()


def quarantined(store_path: str, file: str) -> List[state_store.Quarantined]:
  """The store's quarantined lines of event log ``file``, their reasons by kind."""
  with stores.open_store(store_path) as store:
    return [dataclasses.replace(q, reason=reason_kind(q.reason))
            for q in store.quarantined() if q.file == file]
