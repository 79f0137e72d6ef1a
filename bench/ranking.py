"""Ranking benchmark: single-task vs shared-bottom vs MMoE vs PLE, training speed and
in-process scoring latency.

Data: the simulator (``simulation.datagen.run``: promo tracks cost completion but carry
exposure and lift conversion) transformed with ``features.preprocessing.transform_dataset``,
and, when ``MELODY_DATA_DIR`` holds them, the real KKBox sample and 30Music slices
(through ``features.datasets.registry`` -> ``features.splits``) with only the heads
their labels cover. The simulated world is the calibrated one except for one documented
benchmark setting: the conversion hazard is scaled (``world_overrides`` of
``datagen.run``), because at the calibrated rate a few thousand listeners convert only a
handful of times and the subscription head could not be measured at all.

Protocol (the same for every model of a dataset): ``steps`` steps of batch ``batch_size``
with the default optimiser and loss weights, no model selection (nothing is tuned on the
eval split, which holds users never seen in training), then every covered head is scored
on the eval split: weighted AUC (binary heads) or RMSE (regression heads). Simulator
numbers are means (and standard deviations) over ``seeds``; MMoE is compared with
shared-bottom on paired seeds. Training speed is measured on the path ``melody train``
and the TFX Trainer use (``pipeline.trainer.input_fn`` over the transformed TFRecords,
``pipeline.trainer.build_model``) for the default config (2 layers, d_model 64, history
50, batch 512), in steady state (from the end of the first step to the end of the last,
read by a batch callback), next to a per-part CPU profile of one step.

Scale knobs (environment): ``MELODY_BENCH_RANKING_STEPS`` (default 300),
``MELODY_BENCH_RANKING_REAL_STEPS`` (150, the real datasets), ``MELODY_BENCH_RANKING_BATCH``
(256), ``MELODY_BENCH_RANKING_SEEDS`` (3), ``MELODY_BENCH_RANKING_USERS`` (2000 simulated
listeners), ``MELODY_BENCH_RANKING_DAYS`` (10), ``MELODY_BENCH_RANKING_CONVERSION_SCALE``
(15), ``MELODY_BENCH_RANKING_EVAL_PERCENT`` (20) and ``MELODY_BENCH_RANKING_WORKERS``
(2: two single-threaded training runs side by side; 1: one two-threaded run at a time).
``MELODY_BENCH_RANKING_ONLY=latency`` re-measures only the scoring latency (a fresh
child process, seconds) into the existing results file and rewrites the docs and PNG;
``MELODY_BENCH_RANKING_ONLY=throughput`` likewise re-measures only the training speed
(the default config and its float32 baseline, on freshly generated simulator data, a
few minutes).

Writes ``bench/results/ranking.json``, a section of ``docs/benchmarks.md`` and
``docs/ranking_benchmark.png``.

Modules: ``ranking_data`` (datasets), ``ranking_models`` (variants, one run),
``ranking_compare`` (every run on a dataset), ``ranking_targets`` (means, paired
verdicts), ``ranking_speed`` (training speed), ``ranking_latency`` (scoring latency),
``ranking_report`` (docs section and PNG); this module runs them in order.
"""

import json
import os
import tempfile
import time
from typing import Dict

from bench import common
from bench import ranking_compare
from bench import ranking_data
from bench import ranking_latency
from bench import ranking_models
from bench import ranking_report
from bench import ranking_speed
from bench import ranking_targets

RESULTS = os.path.join(common.RESULTS_DIR, "ranking.json")


def _env_int(name: str, default: int) -> int:
  return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
  return float(os.environ.get(name, default))


def _now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _latency_targets(results: Dict[str, object]) -> None:
  results["targets"]["score_500_p99_le_10ms"] = results["latency"]["500"]["p99_ms"] <= 10.0


def _throughput_targets(results: Dict[str, object]) -> None:
  t = results["throughput"]
  results["targets"]["training_3000_examples_per_s_measured"] = t["examples_per_s"] >= 3000
  results["targets"]["training_3000_examples_per_s_2_dedicated_cores_est"] = (
      t["examples_per_s_2_dedicated_cores_est"] >= 3000)


def _save(results: Dict[str, object]) -> None:
  """Writes the results file, the docs section and the PNG."""
  results["host"] = common.host_info()   # the host of this (re-)measurement
  common.write_results("ranking", results)
  ranking_report.write_doc(results)
  ranking_report.write_png(results)


def remeasure_latency(path: str = RESULTS) -> None:
  """Re-measures only the scoring latency into an existing results file (no training),
  e.g. on a quiet machine after the long run; rewrites the docs section and the PNG."""
  with open(path) as f:
    results = json.load(f)
  results["latency"] = ranking_latency.scoring_latency(reps=300)
  results["latency_measured_at"] = _now()
  _latency_targets(results)
  _save(results)


def remeasure_throughput(path: str = RESULTS) -> None:
  """Re-measures only the training speed (default config and its float32 baseline) into
  an existing results file, on freshly generated simulator data (a few minutes)."""
  with open(path) as f:
    results = json.load(f)
  settings = results.get("settings", {})
  generator = settings.get("generator", {})
  with tempfile.TemporaryDirectory(prefix="melody_bench_throughput_") as work:
    _, sim_paths, _ = ranking_data.simulator_data(
        work, settings.get("simulated_users", 2000), generator.get("days", 10),
        generator.get("conversion_scale", 15.0), generator.get("eval_percent", 20))
    thr = ranking_speed.training_throughput(sim_paths)
  thr.pop("model")
  thr["measured_at"] = _now()
  results["throughput"] = thr
  ranking_speed.log_throughput(thr)
  _throughput_targets(results)
  _save(results)


def main() -> None:
  """Runs the benchmark (or one re-measure, see the module docstring) and writes it out."""
  only = os.environ.get("MELODY_BENCH_RANKING_ONLY")
  if only == "latency":
    remeasure_latency()
    return
  if only == "throughput":
    remeasure_throughput()
    return
  steps = _env_int("MELODY_BENCH_RANKING_STEPS", 300)
  real_steps = _env_int("MELODY_BENCH_RANKING_REAL_STEPS", 150)
  batch_size = _env_int("MELODY_BENCH_RANKING_BATCH", 256)
  seeds = tuple(range(1, _env_int("MELODY_BENCH_RANKING_SEEDS", 3) + 1))
  users = _env_int("MELODY_BENCH_RANKING_USERS", 2000)
  days = _env_int("MELODY_BENCH_RANKING_DAYS", 10)
  conversion_scale = _env_float("MELODY_BENCH_RANKING_CONVERSION_SCALE", 15.0)
  eval_percent = _env_int("MELODY_BENCH_RANKING_EVAL_PERCENT", 20)
  workers = _env_int("MELODY_BENCH_RANKING_WORKERS", 2)
  data_dir = os.environ.get("MELODY_DATA_DIR",
                            os.path.join(ranking_report.REPO, "..", "shared", "data"))
  generator = {"users": users, "days": days, "conversion_scale": conversion_scale,
               "eval_percent": eval_percent,
               "world_overrides": {k: list(v) for k, v in
                                   ranking_data.conversion_overrides(conversion_scale).items()}}
  results: Dict[str, object] = {
      "settings": {"steps": steps, "real_steps": real_steps, "batch_size": batch_size,
                   "seeds": len(seeds), "simulated_users": users,
                   "models": list(ranking_models.MODELS), "workers": workers,
                   "generator": generator},
      "datasets": {}}
  t_start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="melody_bench_ranking_") as work:
    common.log("ranking", "simulator data ...")
    sim, sim_paths, _ = ranking_data.simulator_data(work, users, days, conversion_scale,
                                                    eval_percent)
    generator.update(ranking_data.converters(os.path.join(work, "sim"), eval_percent))
    # Speed first, while the process holds one model and nothing else.
    common.log("ranking", "training throughput ...")
    thr = ranking_speed.training_throughput(sim_paths)
    model = thr.pop("model")
    results["throughput"] = thr
    ranking_speed.log_throughput(thr)
    del model
    results["latency"] = ranking_latency.scoring_latency(reps=300)
    block = ranking_compare.compare_models(sim, steps, batch_size, seeds, workers=workers,
                                           work_dir=work)
    block["label_profile"] = ranking_data.label_profile(sim["train"])
    results["datasets"]["simulator"] = block
    for source in ("kkbox", "30music"):
      try:
        common.log("ranking", f"{source} data ...")
        real = ranking_data.real_data(work, source, data_dir)
        results["datasets"][source] = ranking_compare.compare_models(
            real, real_steps, batch_size, seeds[:1], workers=workers, work_dir=work)
      except Exception as e:  # pylint: disable=broad-except
        # Report the reason in the results rather than hiding the dataset.
        common.log("ranking", f"{source}: not measured ({type(e).__name__}: {e})")
        results["datasets"][source] = {"error": f"{type(e).__name__}: {e}"}
  results["targets"] = ranking_targets.targets(results["datasets"]["simulator"])
  _throughput_targets(results)
  _latency_targets(results)
  results["runtime_s"] = time.perf_counter() - t_start
  results["written_at"] = _now()
  _save(results)
  for name, block in results["datasets"].items():
    if block.get("mean"):
      print(f"\n{name}\n" + ranking_report.mean_table(block["mean"],
                                                       ranking_models.metric_columns()))
  print("\n" + "\n".join(f"{k}: {v}" for k, v in results["targets"].items()))
