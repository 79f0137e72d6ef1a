"""Shared helpers for benchmarks: progress lines, timing, peak RSS, ratio tables, the
host description and the results file.

The machine is shared and noisy, so every benchmark reports its numbers next to a
baseline measured in the same process and run, and the ratio between them.
"""

import importlib.metadata
import json
import os
import platform
import resource
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from ranking import hardware

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
    return str(v).replace("|", "\\|")   # a model name like "mmoe|ple" stays one cell
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
  return "\n".join(lines)


def _tensorflow_version() -> str:
  for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    try:
      return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      continue
  return "unknown"


def host_info(cpu: Optional[hardware.CpuInfo] = None) -> Dict[str, object]:
  """The ``host`` block of a results file: what the numbers were measured on.

  Speed ratios (bfloat16 vs float32 above all) depend on the CPU's instruction sets, so
  every result names the CPU, its core count and the flags that matter.

  Args:
    cpu: the processor to describe; this host's when omitted.

  Returns:
    ``cpu_model``, ``cores``, ``flags`` (avx2, fma, avx512f, avx512_bf16, amx_bf16 ->
    present), ``tensorflow`` (version) and ``train_precision_auto`` (what
    ``ModelConfig.train_precision="auto"`` resolves to on that CPU).
  """
  cpu = cpu or hardware.host_cpu()
  return {"cpu_model": cpu.model_name or "unknown", "cores": cpu.cores,
          "flags": cpu.reported_flags(), "tensorflow": _tensorflow_version(),
          "train_precision_auto": hardware.resolve_train_precision(hardware.AUTO, cpu)}


def host_line(host: Dict[str, object]) -> str:
  """One Markdown line naming the CPU a results file was measured on."""
  if not host:
    return "CPU: not recorded."
  flags = host.get("flags", {})
  present = [f for f in hardware.REPORTED_FLAGS if flags.get(f)]
  absent = [f for f in hardware.REPORTED_FLAGS if f in flags and not flags[f]]
  text = (f"CPU: {host.get('cpu_model', 'unknown')}, {host.get('cores', '?')} cores; "
          f"flags {', '.join(present) or 'none of interest'}")
  if absent:
    text += f" (no {', '.join(absent)})"
  return text + f"; TensorFlow {host.get('tensorflow', '?')}."


def read_results(name: str) -> Dict[str, object]:
  """``bench/results/<name>.json`` as written last; empty when there is none."""
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def parts_from_env(variable: str, known: Sequence[str]) -> List[str]:
  """The parts of a benchmark to measure: ``variable`` (comma-separated names among
  ``known``; all of them when unset). Raises ValueError naming unknown parts."""
  parts = os.environ.get(variable, ",".join(known)).split(",")
  unknown = sorted(set(parts) - set(known))
  if unknown:
    raise ValueError(f"{variable}: unknown part(s) {unknown}")
  return parts


def write_results(name: str, payload: Dict[str, object]) -> str:
  """Writes ``bench/results/<name>.json`` with machine and host info; returns its path."""
  os.makedirs(RESULTS_DIR, exist_ok=True)
  payload = dict(payload)
  payload.setdefault("host", host_info())
  payload.setdefault("machine", {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()})
  payload.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  print(f"[bench] wrote {path}")
  return path
