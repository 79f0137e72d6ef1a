"""``make bench-nearline``: the online layer's numbers.

Measures, on this machine and in one run:

* **events/s applied** per backend (SQLite file, Redis started here): one updater drains
  a log of ``EVENTS`` plays of ``LISTENERS`` listeners in micro-batches of
  ``MAX_BATCH``; wall time and CPU time of the process (events per CPU-second is the
  per-core rate);
* **event-to-state freshness** p50/p99 per backend: a writer appends plays at
  ``RATE`` events/s for ``FRESHNESS_S`` seconds while the updater runs with
  ``--interval INTERVAL_S``; each line's freshness is its commit time minus its write time;
* **gateway overhead**: the tiny exported ranker served by ``melody serve`` (a
  subprocess), ``recommend`` with a pool of N=500 candidates (k=125), called directly
  and through ``melody gateway`` (a subprocess, SQLite store), at concurrency 1 and 16;
  overhead = gateway latency - direct latency, per percentile and per pair; as a control,
  two direct calls paired the same way at c=1 (the model call's own jitter); the
  gateway's CPU per request by phase and its wall time outside the model call, in
  process;
* **bytes per listener** in each store after the throughput run.

Results go to ``bench/results/nearline.json``, the table and picture to the
benchmark section of ``docs/nearline.md`` and ``docs/nearline_benchmark.png``.
"""

import concurrent.futures
import contextlib
import gc
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

import numpy as np

from bench import common
from bench import nearline_report
from melody_testing import online_events
from melody_testing import redis_server

NAME = "nearline"
EVENTS = 200_000
LISTENERS = 20_000
MAX_BATCH = 20_000
RATE = 1_000
FRESHNESS_S = 15.0
INTERVAL_S = 1.0
POOL_N = 500
REQUESTS = 300
CONCURRENCY = (1, 16)
CACHE_STATES = 50_000   # the updater's default
_WARMUP = 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(msg: str) -> None:
  common.log(NAME, msg)


def throughput(url: str, root: str, cache_states: int) -> Dict[str, float]:
  """Drains a log of ``EVENTS`` plays into an empty store at ``url``; the updater keeps
  up to ``cache_states`` committed states in memory (0: reads every state back)."""
  from online import event_source  # pylint: disable=g-import-not-at-top
  from online import nearline  # pylint: disable=g-import-not-at-top
  from online import stores  # pylint: disable=g-import-not-at-top
  events = os.path.join(root, "throughput")
  if not os.path.isdir(events):
    os.makedirs(events)
    online_events.append(os.path.join(events, "plays.jsonl"), online_events.random_plays(
        seed=5, users=LISTENERS, per_user=EVENTS // LISTENERS))
  with stores.open_store(url) as store:
    updater = nearline.Updater(
        event_source.DirectorySource(events), store,
        nearline.NearlineOptions(max_batch=MAX_BATCH, cache_states=cache_states))
    server_cpu = _redis_cpu_s(url)
    phases: Dict[str, float] = {}
    with _phase_cpu(phases, store):
      wall, cpu = time.perf_counter(), time.process_time()
      total = updater.drain()
      wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"events": total.applied, "listeners": store.listener_count(),
           "cache_states": cache_states, "wall_s": wall, "cpu_s": cpu,
           "events_per_s": total.applied / wall, "events_per_cpu_s": total.applied / cpu,
           "bytes_per_listener": store.bytes_per_listener(),
           "load_avg_1m": os.getloadavg()[0],
           # Where the updater's CPU goes, per event (the rest: reading the logs,
           # bookkeeping).
           "cpu_us_per_event": {name: seconds / total.applied * 1e6
                                for name, seconds in phases.items()}}
    if server_cpu is not None:
      # Redis runs the state scripts in its own process: its CPU counts too.
      out["server_cpu_s"] = _redis_cpu_s(url) - server_cpu
      out["events_per_cpu_s_with_server"] = total.applied / (cpu + out["server_cpu_s"])
    return out


@contextlib.contextmanager
def _phase_cpu(phases: Dict[str, float], store):
  """Adds up the CPU time of the updater's parse, apply and commit steps in ``phases``
  while the block runs."""
  from online import batch_apply  # pylint: disable=g-import-not-at-top
  from online import event_batch  # pylint: disable=g-import-not-at-top
  with _cpu_by_phase(phases, [(event_batch, "parse_lines", "parse"),
                              (batch_apply, "apply_events", "apply"),
                              (store, "commit", "commit")]):
    yield


@contextlib.contextmanager
def _cpu_by_phase(phases: Dict[str, float], targets):
  """Adds up in ``phases[phase]`` the CPU time of the calls of ``owner.name`` for each
  ``(owner, name, phase)`` of ``targets`` while the block runs."""
  originals = [getattr(owner, name) for owner, name, _ in targets]

  def timed(fn, phase):
    def run(*args, **kwargs):
      start = time.process_time()
      try:
        return fn(*args, **kwargs)
      finally:
        phases[phase] = phases.get(phase, 0.0) + time.process_time() - start
    return run

  for (owner, name, phase), fn in zip(targets, originals):
    setattr(owner, name, timed(fn, phase))
  try:
    yield
  finally:
    for (owner, name, _), fn in zip(targets, originals):
      setattr(owner, name, fn)


def _redis_cpu_s(url: str):
  """CPU seconds the Redis server at ``url`` has used (None for another store)."""
  if not url.startswith("redis://"):
    return None
  import redis  # pylint: disable=g-import-not-at-top
  client = redis.Redis.from_url(url)
  info = client.info("cpu")
  client.close()
  return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def freshness(url: str, root: str) -> Dict[str, float]:
  """Writes plays at ``RATE``/s while the updater runs; freshness percentiles."""
  from online import event_source  # pylint: disable=g-import-not-at-top
  from online import nearline  # pylint: disable=g-import-not-at-top
  from online import stores  # pylint: disable=g-import-not-at-top
  events = tempfile.mkdtemp(dir=root, prefix="fresh-")
  log = os.path.join(events, "live.jsonl")
  writes: List = []     # (lines written so far, monotonic time)
  commits: List = []    # (lines applied so far, monotonic time)
  stop = threading.Event()

  def writer():   # runs in this thread while the updater runs in another
    written, step, start = 0, 0.02, time.monotonic()
    while time.monotonic() - start < FRESHNESS_S:
      n = int(RATE * step)
      now = int(time.time())
      online_events.append(log, [online_events.play(f"u{(written + i) % 5000:05d}", now,
                                                    f"t{(written + i) % 997:03d}")
                                 for i in range(n)])
      written += n
      writes.append((written, time.monotonic()))
      time.sleep(step)

  with stores.open_store(url) as store:
    updater = nearline.Updater(event_source.DirectorySource(events), store,
                               nearline.NearlineOptions(interval_s=INTERVAL_S,
                                                        max_batch=MAX_BATCH))
    applied = [0]

    def on_batch(report):
      applied[0] += report.lines
      commits.append((applied[0], time.monotonic()))

    running = threading.Thread(target=updater.run, args=(stop, on_batch))
    running.start()
    writer()
    deadline = time.monotonic() + 10 * INTERVAL_S + 60
    while applied[0] < writes[-1][0] and time.monotonic() < deadline:
      time.sleep(0.05)
    stop.set()
    running.join()
  line_written = np.concatenate([np.full(n - prev, t) for (n, t), prev in
                                 zip(writes, [0] + [w[0] for w in writes[:-1]])])
  done, at = np.asarray([c[0] for c in commits]), np.asarray([c[1] for c in commits])
  line_applied = at[np.searchsorted(done, np.arange(len(line_written)), side="right")]
  lag = line_applied - line_written
  return {"events": int(len(lag)), "rate_per_s": RATE, "interval_s": INTERVAL_S,
          "p50_s": float(np.percentile(lag, 50)), "p99_s": float(np.percentile(lag, 99)),
          "max_s": float(lag.max())}


def _process(argv: List[str], pattern: str, timeout: float = 600):
  """Starts a subprocess and waits for the stdout line matching ``pattern``."""
  env = dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  deadline = time.monotonic() + timeout
  for line in proc.stdout:
    match = re.search(pattern, line)
    if match:
      threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
      return proc, match.group(1)
    if time.monotonic() > deadline:
      break
  proc.kill()
  raise RuntimeError(f"{argv[:3]} did not print {pattern!r}")


def _process_cpu_s(pid: int) -> float:
  """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _paired_latencies(direct, via_gateway, n: int, concurrency: int):
  """Latencies of ``n`` direct and ``n`` gateway calls, each worker alternating the two
  (so both see the same load on this shared machine)."""
  def one(i):
    out = []
    for call in ((direct, via_gateway) if i % 2 else (via_gateway, direct)):
      t = time.perf_counter()
      call(i)
      out.append(time.perf_counter() - t)
    return out if i % 2 else out[::-1]
  for i in range(_WARMUP):   # warm connections and caches
    direct(i)
    via_gateway(i)
  # This process holds TensorFlow's ~350k Python objects: an automatic full collection
  # walking them (0.1-0.2 s) would land in whichever call runs, on either path.
  gc.collect()
  gc.freeze()
  try:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
      pairs = list(pool.map(one, range(n)))
  finally:
    gc.unfreeze()
  return [d for d, _ in pairs], [g for _, g in pairs]


def _gateway_phases(db: str, model_target: str, users: List[str], k: int):
  """The gateway's own CPU per request by phase (microseconds), measured in this process
  around an in-process ``Gateway`` calling the same model server: what a request costs
  besides the gRPC server machinery of ``melody gateway``; and the percentiles of each
  request's wall time outside the model call."""
  # pylint: disable=g-import-not-at-top
  from online import gateway
  from online import gateway_metrics
  from online import gateway_proto
  from online import model_caller
  from online import predict_wire
  from online import stores
  # pylint: enable=g-import-not-at-top
  requests = [gateway_proto.RecommendRequest(user_id=u, context="commute", k=k)
              for u in users]
  caller = model_caller.ModelCaller(model_target, deadline_s=30.0)
  phases: Dict[str, float] = {}
  with stores.open_store(db) as store:
    recommender = gateway.Gateway(store, caller, gateway_metrics.GatewayMetrics())
    for request in requests[:_WARMUP]:
      recommender.recommend(request)
    # Each request's wall time outside the model call: the gateway's own part of a
    # call's latency, free of the model server's jitter (which a paired difference of
    # two model calls carries twice).
    model_s = [0.0]
    inner = caller._predict   # pylint: disable=protected-access

    def timed_predict(*args, **kwargs):
      start = time.perf_counter()
      try:
        return inner(*args, **kwargs)
      finally:
        model_s[0] += time.perf_counter() - start
    caller._predict = timed_predict   # pylint: disable=protected-access
    own_s = []
    targets = [(store, "get", "state read"), (gateway, "listener_inputs", "model inputs"),
               (predict_wire, "predict_inputs", "request encode"),
               (caller, "_predict", "model call (gRPC client, response parse)"),
               (gateway, "_answer_items", "response items")]
    with _cpu_by_phase(phases, targets):
      cpu = time.process_time()
      for i in range(REQUESTS):
        model_s[0], wall = 0.0, time.perf_counter()
        response = recommender.recommend(requests[i % len(requests)])
        own_s.append(time.perf_counter() - wall - model_s[0])
        start = time.process_time()
        response.SerializeToString()   # what the gRPC server does with the answer
        phases["response encode"] = (phases.get("response encode", 0.0)
                                     + time.process_time() - start)
      cpu = time.process_time() - cpu
  caller.close()
  out = {name: seconds / REQUESTS * 1e6 for name, seconds in phases.items()}
  out["rest (checks, metrics, response message)"] = cpu / REQUESTS * 1e6 - sum(out.values())
  out["all"] = cpu / REQUESTS * 1e6
  return out, common.percentiles_ms(own_s)


def gateway_overhead(root: str) -> Dict[str, object]:
  """Direct ``recommend`` calls vs the same through ``melody gateway``."""
  from serving import grpc_env  # pylint: disable=g-import-not-at-top
  # The I/O path melody gateway and ModelClient use, when grpc is not imported yet.
  grpc_env.prefer_polling_io()
  # pylint: disable=g-import-not-at-top
  import pandas as pd
  from bench import serving as bench_serving
  from online import event_source
  from online import gateway
  from online import gateway_client
  from online import nearline
  from online import stores
  from serving import client
  from serving import export
  # pylint: enable=g-import-not-at-top
  paths = bench_serving.prepare_world(os.path.join(root, "world"), tracks=2 * POOL_N)
  base = os.path.join(root, "models", "melody")
  if not os.path.isdir(os.path.join(base, "1")):
    export.export_serving_model(bench_serving.build_model(), paths["tft"], paths["tracks"],
                                base, version=1, n_max=POOL_N)
  tracks = pd.read_parquet(paths["tracks"])["track_id"].astype(str).tolist()
  users = [f"u{i:04d}" for i in range(200)]
  events = os.path.join(root, "gateway_events")
  db = os.path.join(root, "gateway_state.db")
  if not os.path.isdir(events):
    os.makedirs(events)
    now = int(time.time())
    online_events.append(os.path.join(events, "a.jsonl"), [
        online_events.play(u, now - 60 * j, tracks[(7 * i + j) % len(tracks)])
        for i, u in enumerate(users) for j in range(30)])
  k = POOL_N // 4   # recommend ranks a pool of 4k candidates (serving.signatures)
  with stores.open_store(db) as store:
    nearline.Updater(event_source.DirectorySource(events), store).drain()
    states = store.get_many(users)
  py = sys.executable
  model_proc, model_target = _process(
      [py, "-m", "serving.server_main", "--model_name", "melody", "--model_base_path", base,
       "--port", "0", "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0"],
      r"gRPC on (\S+)")
  gw_proc = None
  try:
    gw_proc, gw_target = _process(
        [py, "-m", "online.gateway_main", "--store", db, "--model-server", model_target,
         "--port", "0", "--http-port", "-1", "--deadline-ms", "30000"], r"gRPC on (\S+)")
    fields = {"context": "commute", "surface": "home", "k": k, "text": "", "weights": None}
    inputs = [gateway.model_inputs(states[u], fields, int(time.time())) for u in users]
    direct = client.ModelClient(model_target, timeout=60)
    via = gateway_client.GatewayClient(gw_target, timeout=60)
    out = {"pool_n": POOL_N, "k": k, "requests": REQUESTS, "by_concurrency": {}}
    for c in CONCURRENCY:
      _log(f"gateway overhead at c={c}")
      load, gw_cpu = os.getloadavg()[0], _process_cpu_s(gw_proc.pid)
      d, g = _paired_latencies(
          lambda i: direct.predict("melody", "recommend", inputs[i % len(users)]),
          lambda i: via.recommend(user_id=users[i % len(users)], context="commute", k=k),
          REQUESTS, c)
      gw_cpu = _process_cpu_s(gw_proc.pid) - gw_cpu
      d_ms, g_ms = common.percentiles_ms(d), common.percentiles_ms(g)
      paired = np.subtract(g, d) * 1e3
      out["by_concurrency"][str(c)] = {
          "direct": d_ms, "gateway": g_ms,
          "overhead_p50_ms": g_ms["p50_ms"] - d_ms["p50_ms"],
          "overhead_p99_ms": g_ms["p99_ms"] - d_ms["p99_ms"],
          # Each pair ran back to back on one worker: its difference is less exposed to
          # load swings than the difference of two percentiles.
          "paired_overhead_p50_ms": float(np.percentile(paired, 50)),
          "paired_overhead_p99_ms": float(np.percentile(paired, 99)),
          # All the gateway process does per request (the model server's work is the
          # same for both paths): insensitive to waiting on a loaded machine.
          "gateway_cpu_ms_per_request": gw_cpu / (REQUESTS + _WARMUP) * 1e3,
          "load_avg_1m": [load, os.getloadavg()[0]]}
    _log("direct against direct at c=1 (the paired difference of two model calls)")
    d1, d2 = _paired_latencies(
        lambda i: direct.predict("melody", "recommend", inputs[i % len(users)]),
        lambda i: direct.predict("melody", "recommend", inputs[i % len(users)]),
        REQUESTS, 1)
    null = np.subtract(d2, d1) * 1e3
    out["direct_vs_direct_c1"] = {"paired_p50_ms": float(np.percentile(null, 50)),
                                  "paired_p99_ms": float(np.percentile(null, 99)),
                                  "load_avg_1m": os.getloadavg()[0]}
    direct.close()
    via.close()
    _log("gateway CPU by phase, in process")
    out["cpu_us_per_request_in_process"], out["own_wall_ms_in_process"] = _gateway_phases(
        db, model_target, users, k)
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out
  finally:
    for proc in (gw_proc, model_proc):
      if proc is not None:
        proc.terminate()
        proc.wait(timeout=60)


def main(argv=None) -> int:
  """Runs the benchmark; writes the results JSON, the doc section and the picture."""
  del argv
  # A partial run keeps the other part's last results.
  parts = common.parts_from_env("MELODY_BENCH_NEARLINE_PARTS", ("stores", "gateway"))
  results = common.read_results(NAME) if len(parts) < 2 else {}
  results.update({"load_avg_before": list(os.getloadavg()), "config": {
      "events": EVENTS, "listeners": LISTENERS, "max_batch": MAX_BATCH, "rate": RATE,
      "freshness_s": FRESHNESS_S, "interval_s": INTERVAL_S, "cache_states": CACHE_STATES},
      "parts_measured": parts})
  results.setdefault("backends", {})
  with tempfile.TemporaryDirectory(prefix="melody-bench-nearline-") as root:
    if "stores" in parts:
      with redis_server.redis_server(root) as redis_url:
        urls = {"sqlite": lambda db: f"sqlite:///{root}/state{db}.db",
                "redis": lambda db: redis_url.rsplit("/", 1)[0] + f"/{db}"}
        for backend, url in urls.items():
          _log(f"{backend}: throughput over {EVENTS} events")
          row = {"throughput": throughput(url(0), root, CACHE_STATES)}
          _log(f"{backend}: throughput over {EVENTS} events, no state cache")
          row["throughput_uncached"] = throughput(url(1), root, 0)
          _log(f"{backend}: freshness at {RATE} events/s, interval {INTERVAL_S} s")
          row["freshness"] = freshness(url(2), root)
          results["backends"][backend] = row
    if "gateway" in parts:
      results["gateway"] = gateway_overhead(root)
  results["load_avg_after"] = list(os.getloadavg())
  results["host"] = common.host_info()
  results["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
  common.write_results(NAME, results)
  nearline_report.write(results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
