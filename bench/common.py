"""Shared helpers for benchmarks: progress lines, timing, peak RSS, ratio tables and the
results file.

The machine is shared and noisy, so every benchmark reports its numbers next to a
baseline measured in the same process and run, and the ratio between them.
"""

import json
import os
import platform
import resource
import sys
import time
from typing import Callable, Dict, List, Sequence

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def log(bench: str, msg: str) -> None:
  """A progress line on stderr, tagged with the benchmark's name."""
  print(f"[bench {bench}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
  """Best wall time in seconds of ``repeat`` calls of ``fn``."""
  best = float("inf")
  for _ in range(repeat):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def percentiles_ms(samples_s: Sequence[float]) -> Dict[str, float]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  a = np.asarray(samples_s, dtype=np.float64) * 1e3
  return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
          "mean_ms": float(a.mean()), "n": int(a.size)}


def peak_rss_mb(children: bool = False) -> float:
  """Peak resident set size of this process (or of its waited-for children), in MB."""
  who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
  return resource.getrusage(who).ru_maxrss / 1024.0


def table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
  """A plain-text (markdown) table of ``rows`` restricted to ``columns``."""
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
  return "\n".join(lines)


def write_results(name: str, payload: Dict[str, object]) -> str:
  """Writes ``bench/results/<name>.json`` with machine info; returns its path."""
  os.makedirs(RESULTS_DIR, exist_ok=True)
  payload = dict(payload)
  payload.setdefault("machine", {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()})
  payload.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  print(f"[bench] wrote {path}")
  return path
