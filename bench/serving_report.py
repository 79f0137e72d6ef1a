"""The serving benchmark's verdict and report: the gRPC p99 against its budget per
(N, concurrency), the targets, and ``docs/benchmarks_serving.md`` rendered from the
results alone.
"""

import json
import os
from typing import Dict, List

from bench import common

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "benchmarks_serving.md")
RESULTS = os.path.join(common.RESULTS_DIR, "serving.json")

TARGET_RATIO = 1.3
TARGET_P99_MS_500 = 15.0
RATIO_SLACK_MS = 1.0


def summarize(rows: List[Dict[str, object]]) -> Dict[str, object]:
  """Ratios per (N, concurrency) and the two targets."""
  by = {(r["transport"], r["candidates"], r["concurrency"]): r for r in rows}
  ratios = []
  for (transport, n, c), r in sorted(by.items()):
    if transport != "grpc" or ("in_process", n, c) not in by:
      continue
    base = by[("in_process", n, c)]
    budget = TARGET_RATIO * base["p99_ms"] + RATIO_SLACK_MS
    ratios.append({"candidates": n, "concurrency": c, "grpc_p99_ms": r["p99_ms"],
                   "in_process_p99_ms": base["p99_ms"], "budget_ms": budget,
                   "ratio": r["p99_ms"] / budget, "met": r["p99_ms"] <= budget})
  p99_500 = by.get(("grpc", 500, 1), {}).get("p99_ms")
  ratio_c1 = max((r["ratio"] for r in ratios if r["concurrency"] == 1), default=None)
  return {
      "ratios": ratios,
      "targets": {
          "grpc_p99_at_most_ratio_x_in_process_p99_plus_1ms": TARGET_RATIO,
          "p99_ms_500_candidates_concurrency_1": TARGET_P99_MS_500},
      "worst_ratio_concurrency_1": ratio_c1,
      "worst_ratio_all": max((r["ratio"] for r in ratios), default=None),
      "grpc_p99_ms_500_c1": p99_500,
      "meets_ratio_target_c1": ratio_c1 is not None and ratio_c1 <= 1.0,
      "meets_ratio_target_all": bool(ratios) and all(r["met"] for r in ratios),
      "meets_p99_target_500_c1": p99_500 is not None and p99_500 <= TARGET_P99_MS_500,
  }


def markdown(rows: List[Dict[str, object]], summary: Dict[str, object], stages=(),
             grpc_io: str = "") -> str:
  """``docs/benchmarks_serving.md`` from the results.

  Args:
    rows: the latency rows of ``serving_load.measure``.
    summary: :func:`summarize` of those rows.
    stages: the ``serving_profile.profile`` rows (no profile section when empty).
    grpc_io: the gRPC I/O path the run used (``serving.grpc_env.describe()`` then).

  Returns:
    The Markdown text.
  """
  lines = [
      "# Serving benchmark",
      "",
      "Written by `python -m bench.run serving` (`bench/serving.py`); raw numbers in",
      "`bench/results/serving.json`. The `rank` signature of one exported SavedModel",
      "(default `ModelConfig`: d_model 64, 2 Transformer layers, MMoE) over real",
      "listeners of a simulated world, one listener per request, N real candidates;",
      "`grpc` = `melody serve` (`serving.server`) in a child process on 127.0.0.1 with the",
      "export's `batching_parameters.txt` (greedy batching: no request waits; requests",
      "arriving while the batch threads are busy share one model call), called through",
      "the official stub; TensorFlow runs with one",
      "intra-op thread on both sides (`tf_threads` in the JSON); gRPC on both sides",
      f"uses {grpc_io} (`grpc_io`; see `serving/grpc_env.py`),",
      "`in_process` = the same SavedModel's signature called in the benchmark process.",
      "The machine is shared (2 cores, other jobs running), so p99 carries their noise;",
      "the two transports run in alternating rounds on the same requests so that both",
      "see the same background load (`load_avg_1m` is the 1-minute load when a cell",
      "started).",
      "",
      common.host_line(summary.get("host", {})),
      "",
      "## Latency",
      "",
      common.table(rows, ["transport", "candidates", "concurrency", "p50_ms", "p99_ms",
                          "qps", "n", "load_avg_1m"]),
      "",
      f"## gRPC p99 against its budget {TARGET_RATIO:g} x in-process p99 + "
      f"{RATIO_SLACK_MS:g} ms",
      "",
      "`ratio` = gRPC p99 / budget (target <= 1).",
      "",
      common.table(summary["ratios"], ["candidates", "concurrency", "grpc_p99_ms",
                                       "in_process_p99_ms", "budget_ms", "ratio", "met"]),
      "",
      "## Targets",
      "",
      f"- worst gRPC p99 / budget at concurrency 1: "
      f"{summary['worst_ratio_concurrency_1']:.3f} (target <= 1: "
      f"{'met' if summary['meets_ratio_target_c1'] else 'MISSED'}); at every "
      f"concurrency: {summary['worst_ratio_all']:.3f} "
      f"({'met' if summary['meets_ratio_target_all'] else 'MISSED'})",
      f"- gRPC p99 at N=500, concurrency 1: {summary['grpc_p99_ms_500_c1']:.2f} ms "
      f"(target <= {TARGET_P99_MS_500:g} ms: "
      f"{'met' if summary['meets_p99_target_500_c1'] else 'MISSED'})",
      "",
  ]
  if stages:
    lines += [
        "## Profile (N=500, one listener, p50 of 40 calls)",
        "",
        "Cumulative stages of the `rank` graph in process, then the Python",
        "(de)serialization steps a gRPC call adds (the rest of the gRPC overhead is the",
        "transport and the hand-offs between the client and server processes):",
        "",
        common.table(list(stages), ["stage", "p50_ms"]),
        "",
    ]
  lines += [
      "## gRPC I/O path",
      "",
      "`melody serve` and `serving.client.ModelClient` turn grpcio's EventEngine I/O",
      "experiments off (`serving/grpc_env.py`), so the thread that waits for a call polls the",
      "socket itself. Each hand-off between threads after an idle gap costs about 0.1 ms on a",
      "small VM (a TCP echo between two processes: 20 us back to back, 150 us after a 7 ms",
      "sleep), and a model server is idle on its socket while the model runs. Measured by hand,",
      "not by this benchmark (grpcio 1.85, 2 vCPUs, p50; the echo rows in runs back to back,",
      "the `Predict` rows in two timelines an hour apart):",
      "",
      "| call | EventEngine | polling |",
      "|---|---|---|",
      "| raw-bytes echo, back to back | 0.44-0.56 ms | 0.35-0.39 ms |",
      "| raw-bytes echo after a 7 ms sleep | 1.18-1.53 ms | 0.70-0.99 ms |",
      "| `Predict` (N=100): client send to handler | 1.02 ms | 0.79 ms |",
      "| `Predict` (N=100): handler return to client | 0.72 ms | 0.52 ms |",
      "",
      "## What the graph does to stay fast",
      "",
      "- The listener goes through the TFT layer and the encoder once per request; the",
      "  candidates' transformed features are rows of a table built at export, so a",
      "  request never runs TFT per candidate.",
      "- Familiarity, session style and the artist cap use per-listener count vectors",
      "  (`tf.math.bincount`) gathered per candidate, O(N); comparing every candidate",
      "  tag with every session tag instead ([B, N, 8, 80]) costs about as much in that",
      "  one reduction as the whole target attention.",
      "- Reason codes are a gather from a constant table of the 2^7 code combinations,",
      "  not per-request string joins.",
      "- With one listener, the target attention runs per head ONE `[N, dh] x [dh, L]`",
      "  matmul (not N batched 1-row products), the MMoE computes all task gates in one",
      "  matmul on the split (listener once, candidates per row) input, and the experts'",
      "  first layer is one `[F, K*U]` matmul.",
      "- The server moves tensors as raw `tensor_content` bytes both ways (one copy, no",
      "  per-type Python conversion) and freezes the heap it holds before its first",
      "  version out of the garbage collector (~350k objects of TensorFlow and Keras): a",
      "  full collection over them holds the GIL ~0.5 s, which otherwise lands in some",
      "  request's p99.",
      "- The server calls the signature through its flat positional entry point (inputs",
      "  already checked against the specs), not the keyword call that re-binds 22",
      "  keyword arguments per request: 1.5-2.5 ms off the gRPC - in-process p50 gap.",
      "- Greedy server-side batching (the export's `batching_parameters.txt`: no timeout,",
      "  one batch thread per two cores): a lone request runs at once on its RPC thread,",
      "  requests arriving while the model is busy share the next call (the listener",
      "  encoder, TFT layer and mixing run once for all of them), so under load the",
      "  server spends less CPU per request than separate in-process calls do.",
      "- One intra-op thread: the ops are small, so splitting each across the two cores",
      "  costs more in hand-offs than it gains, and concurrent requests use the cores.",
      "- Remaining cost is the model itself (scorer over N candidates, encoders) and, on",
      "  the gRPC side, Python protobuf work plus the transport between two processes;",
      "  the stock C++ `tensorflow_model_server` serves the same SavedModel without the",
      "  Python part.",
      "",
  ]
  return "\n".join(lines)


def write_doc(results: Dict[str, object]) -> str:
  """Writes :data:`DOC` from a results dict (rows, summary, profile, gRPC I/O); returns
  its text."""
  text = markdown(results["rows"], results, results.get("profile_n500", ()),
                  results.get("grpc_io", ""))
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(text)
  return text


def render(path: str = RESULTS) -> None:
  """Rewrites the docs page from a results file (no measuring)."""
  with open(path) as f:
    write_doc(json.load(f))
