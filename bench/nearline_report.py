"""The nearline benchmark's report: its table in docs/nearline.md and its picture.

This module owns turning ``bench/results/nearline.json`` into the "Measured" section of
``docs/nearline.md`` (between the ``bench:nearline`` markers, the rest of the page is
left as it is) and ``docs/nearline_benchmark.png`` (freshness per backend, gateway
overhead per concurrency).
"""

import os
from typing import Dict, List

from bench import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "nearline.md")
PNG = os.path.join(REPO, "docs", "nearline_benchmark.png")
BEGIN, END = "<!-- bench:nearline -->", "<!-- /bench:nearline -->"


def _gateway_phase_rows(g: Dict[str, object]) -> List[Dict[str, object]]:
  """The gateway's CPU per request by phase, and what its process spent besides them."""
  in_process = g.get("cpu_us_per_request_in_process", {})
  if not in_process or "1" not in g["by_concurrency"]:
    return []
  process_us = g["by_concurrency"]["1"]["gateway_cpu_ms_per_request"] * 1e3
  return ([{"phase": name, "CPU µs/request": round(us)} for name, us in in_process.items()]
          + [{"phase": "gRPC server machinery (gateway process CPU at c=1 minus all)",
              "CPU µs/request": round(process_us - in_process["all"])}])


def _gateway_tail_note(g: Dict[str, object]) -> str:
  """What bounds the paired p99: a direct call paired with another direct call, and the
  gateway's own wall time per request outside the model call."""
  null, own = g.get("direct_vs_direct_c1"), g.get("own_wall_ms_in_process")
  if not null or not own:
    return ""
  return (f"Control at c=1: two direct calls paired the same way differ by p50 "
          f"{null['paired_p50_ms']:.2f} ms, p99 {null['paired_p99_ms']:.2f} ms (the model "
          "call's own jitter, which every paired difference carries). The in-process "
          "gateway's wall time per request outside the model call: p50 "
          f"{own['p50_ms']:.2f} ms, p99 {own['p99_ms']:.2f} ms (without the gRPC server "
          "machinery of its port).")


def section(results: Dict[str, object]) -> str:
  """The Markdown of the measured numbers."""
  rows = []
  for backend, row in results["backends"].items():
    t, f = row["throughput"], row["freshness"]
    uncached = row.get("throughput_uncached", {})
    rows.append({"backend": backend, "events/s (wall)": round(t["events_per_s"]),
                 "events per CPU-s": round(t["events_per_cpu_s"]),
                 "events per CPU-s, no profile cache": round(
                     uncached.get("events_per_cpu_s", 0)),
                 "events per CPU-s, with Redis's CPU": round(
                     t.get("events_per_cpu_s_with_server", t["events_per_cpu_s"])),
                 "freshness p50 s": f["p50_s"], "freshness p99 s": f["p99_s"],
                 "bytes/listener": round(t["bytes_per_listener"])})
  phases = [{"backend": backend, "run": run,
             **{f"{name} µs/event": round(us, 2) for name, us in
                row[run].get("cpu_us_per_event", {}).items()},
             "all µs/event": round(1e6 / row[run]["events_per_cpu_s"], 2)}
            for backend, row in results["backends"].items()
            for run in ("throughput", "throughput_uncached") if run in row]
  g = results["gateway"]
  over = [{"concurrency": c, "direct p50 ms": v["direct"]["p50_ms"],
           "direct p99 ms": v["direct"]["p99_ms"], "gateway p50 ms": v["gateway"]["p50_ms"],
           "gateway p99 ms": v["gateway"]["p99_ms"], "overhead p50 ms": v["overhead_p50_ms"],
           "overhead p99 ms": v["overhead_p99_ms"],
           "paired overhead p50 ms": v.get("paired_overhead_p50_ms", float("nan")),
           "paired overhead p99 ms": v.get("paired_overhead_p99_ms", float("nan")),
           "gateway CPU ms/request": v.get("gateway_cpu_ms_per_request", float("nan")),
           "load avg 1 min": "–".join(f"{x:.1f}" for x in v.get("load_avg_1m", []))}
          for c, v in g["by_concurrency"].items()]
  gateway_phases = _gateway_phase_rows(g)
  cfg = results["config"]
  load = ", ".join(f"{x:.2f}" for x in results["load_avg_before"])
  load_after = ", ".join(f"{x:.2f}" for x in results["load_avg_after"])
  return "\n".join([
      BEGIN,
      f"Measured by `make bench-nearline` ({results.get('written_at', '')}); "
      + common.host_line(results.get("host", {}))
      + f" Load average (1, 5, 15 min) before the run: {load}; after: {load_after}.",
      "",
      f"Updater: {cfg['events']} plays of {cfg['listeners']} listeners drained in batches "
      f"of {cfg['max_batch']}; freshness: {cfg['rate']} plays/s written for "
      f"{cfg['freshness_s']:.0f} s with `--interval {cfg['interval_s']}`. Events per "
      "CPU-second count the updater process's CPU (one core); the no-cache column reads "
      "every listener's profile back from the store in every batch; the Redis column adds "
      "the Redis server's CPU.",
      "",
      common.table(rows, list(rows[0])),
      "",
      "Where the updater's CPU goes, per applied event: parsing the batch's lines, "
      "deciding the events against the profiles (`online/batch_apply.py`, the duplicate "
      "look-ups included), committing (encoding the rows, the store client, SQLite's own "
      "work; Redis's server CPU is not in it); the rest of `all` is reading the logs and "
      "bookkeeping.",
      "",
      common.table(phases, list(phases[0])) if phases else "",
      "",
      (f"Gateway rows measured {g['measured_at']} (load per row below). "
       if "measured_at" in g else "")
      + f"Gateway: `recommend` of the tiny exported ranker over a pool of N={g['pool_n']} "
      f"candidates (k={g['k']}), {g['requests']} pairs of calls per row: a direct TF Serving "
      "Predict and the same listener through `melody gateway` (state read, request build, "
      "Predict), each worker alternating the two so both see the same load. Overhead: "
      "the difference of the percentiles, and the percentiles of the per-pair differences; "
      "gateway CPU: the gateway process's CPU time per request (load does not inflate it "
      "as it does latency).",
      "",
      common.table(over, list(over[0])),
      "",
      _gateway_tail_note(g),
      "",
      "The gateway's own CPU per request by phase: an in-process `Gateway` on the same "
      "store and model server, `time.process_time` around each phase (the model call is "
      "the gRPC client's work and the response parse; the model server's work is in "
      "another process); the server machinery is the rest of the gateway process's CPU.",
      "",
      common.table(gateway_phases, list(gateway_phases[0])) if gateway_phases else "",
      "",
      "![nearline benchmark](nearline_benchmark.png)",
      END])


def plot(results: Dict[str, object]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
  names = list(results["backends"])
  for i, name in enumerate(names):
    f = results["backends"][name]["freshness"]
    left.bar([i - 0.2, i + 0.2], [f["p50_s"], f["p99_s"]], width=0.4,
             color=["tab:blue", "tab:orange"])
  left.axhline(2 * results["config"]["interval_s"], color="grey", ls="--",
               label="goal p99: 2 x interval")
  left.set_xticks(range(len(names)), names)
  left.set_ylabel("event-to-state seconds (p50 blue, p99 orange)")
  left.legend(loc="upper left", fontsize=8)
  conc = list(results["gateway"]["by_concurrency"])
  for j, key in enumerate(("direct", "gateway")):
    values = [results["gateway"]["by_concurrency"][c][key]["p99_ms"] for c in conc]
    right.bar([i + (j - 0.5) * 0.4 for i in range(len(conc))], values, width=0.4, label=key)
  right.set_xticks(range(len(conc)), [f"c={c}" for c in conc])
  right.set_ylabel("recommend p99 ms")
  right.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(PNG, dpi=110)


def write(results: Dict[str, object]) -> None:
  """Replaces the measured section of docs/nearline.md and writes the picture."""
  with open(DOC) as f:
    text = f.read()
  if BEGIN in text and END in text:
    head, rest = text.split(BEGIN, 1)
    text = head + section(results) + rest.split(END, 1)[1]
  else:
    text = text.rstrip("\n") + "\n\n" + section(results) + "\n"
  with open(DOC, "w") as f:
    f.write(text)
  plot(results)
  print(f"[bench] wrote {DOC} and {PNG}")
