"""The serving benchmark's load generator: rank requests, ``melody serve`` in a child
process, and the two transports (gRPC, in-process) driven from ``concurrency`` threads
in alternating rounds on the same requests.
"""

import concurrent.futures
import os
import threading
import time
from typing import Dict, List, Optional

import serving  # noqa: F401  (Keras 2 guard before TensorFlow)
from bench import common

SIZES = (100, 500, 1000)
CONCURRENCY = (1, 4, 16)
ROUNDS = 6


def thread_env() -> Dict[str, str]:
  """The TF threading environment both the server child and this process use."""
  intra = os.environ.get("BENCH_SERVING_INTRA_OP", "1")
  return {} if intra in ("", "0") else {"TF_NUM_INTRAOP_THREADS": intra}


def rank_requests(paths: Dict[str, str], n: int, count: int) -> List[Dict[str, object]]:
  """``count`` distinct one-listener rank requests of ``n`` real candidates."""
  from serving import catalog as catalog_lib  # pylint: disable=g-import-not-at-top
  from serving import warmup  # pylint: disable=g-import-not-at-top
  parsed = warmup.parse_examples(warmup.read_examples(paths["examples"], 400))
  catalog = catalog_lib.Catalog.from_tracks(paths["tracks"])
  rows = len(parsed["user_id"])
  return [warmup.rank_inputs(parsed, [(i * 13) % rows], n, catalog.track_ids)
          for i in range(count)]


def _drive(call, requests, concurrency: int) -> Dict[str, object]:
  """Runs ``call(request)`` over ``requests`` from ``concurrency`` threads.

  Returns:
    ``{"latencies": [s, ...], "wall": s}``.
  """
  latencies: List[float] = []
  lock = threading.Lock()
  position = iter(range(len(requests)))

  def worker():
    while True:
      with lock:
        i = next(position, None)
      if i is None:
        return
      t0 = time.perf_counter()
      call(requests[i])
      dt = time.perf_counter() - t0
      with lock:
        latencies.append(dt)

  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    for f in [pool.submit(worker) for _ in range(concurrency)]:
      f.result()
  return {"latencies": latencies, "wall": time.perf_counter() - t0}


def _cell(calls, requests, concurrency: int, rounds: int = ROUNDS) -> Dict[str, Dict]:
  """Both transports on the same requests, in alternating rounds.

  The machine is shared: interleaving short rounds of the two transports exposes both
  to the same background load, so their ratio means something even when absolute
  numbers drift.
  """
  for call in calls.values():   # warm the path (and thread pools) untimed
    for r in requests[:2 * concurrency]:
      call(r)
  samples = {name: {"latencies": [], "wall": 0.0} for name in calls}
  names = list(calls)
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      got = _drive(calls[name], requests[r::rounds], concurrency)
      samples[name]["latencies"] += got["latencies"]
      samples[name]["wall"] += got["wall"]
  out = {}
  for name, got in samples.items():
    stats = common.percentiles_ms(got["latencies"])
    stats["qps"] = len(got["latencies"]) / got["wall"]
    out[name] = stats
  return out


def measure(paths: Dict[str, str], count: int, sizes=SIZES,
            concurrency=CONCURRENCY) -> List[Dict[str, object]]:
  """Latency rows for every (transport, N, concurrency).

  Args:
    paths: the exported world (``version``, ``config``, ``batching``, ``examples``,
      ``tracks``).
    count: timed requests per cell.
    sizes: candidates per request.
    concurrency: client threads per cell.

  Returns:
    One row per (transport, N, concurrency): p50/p99/mean ms, qps, the 1-minute load.
  """
  import gc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from serving import client  # pylint: disable=g-import-not-at-top
  from serving import tensors  # pylint: disable=g-import-not-at-top
  loaded = tensors.load_saved_model(paths["version"])
  rank = loaded.signatures["rank"]
  gc.collect()
  gc.freeze()

  def local(inputs):
    out = rank(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}

  rows = []
  with _ServerProcess(paths["config"], paths["batching"]) as target:
    clients = threading.local()

    def remote(inputs):
      if not hasattr(clients, "c"):
        clients.c = client.ModelClient(target, timeout=60)
      return clients.c.predict("melody", "rank", inputs)

    for n in sizes:
      requests = rank_requests(paths, n, count)
      for c in concurrency:
        load = os.getloadavg()[0]
        cell = _cell({"in_process": local, "grpc": remote}, requests, c)
        for transport, stats in cell.items():
          rows.append({"transport": transport, "candidates": n, "concurrency": c,
                       "load_avg_1m": load, **stats})
          print(f"[bench] {transport:<10} N={n:<5} c={c:<3} p50 {stats['p50_ms']:7.2f} ms  "
                f"p99 {stats['p99_ms']:7.2f} ms  {stats['qps']:7.1f} qps  (load {load:.1f})",
                flush=True)
  return rows


class _ServerProcess:
  """``melody serve`` (``serving.server_main.main``) in a child process, as deployed: its own
  interpreter, so the benchmark's client threads do not share its GIL."""

  def __init__(self, config: str, batching: Optional[str] = None):
    self._config = config
    self._batching = batching
    self._proc = None

  def __enter__(self) -> str:
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self._proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from serving import server_main; "
         "sys.exit(server_main.main(sys.argv[1:]))", "--model_config_file", self._config,
         "--port", "0", "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0"]
        + (["--batching_parameters_file", self._batching] if self._batching else []),
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **thread_env()})
    for line in self._proc.stdout:
      if "gRPC on " in line:
        return line.split("gRPC on ")[1].split(",")[0].strip()
    raise RuntimeError(f"the model server exited with code {self._proc.wait()}")

  def __exit__(self, *exc) -> None:
    import signal  # pylint: disable=g-import-not-at-top
    self._proc.send_signal(signal.SIGTERM)
    self._proc.wait(timeout=60)
