"""Ranking benchmark: the default model against reference rankers (popularity, linear),
its own sequence-free ablations (flat MMoE/PLE, DIN-style target attention) and the
multi-task alternatives (single-task, shared-bottom, PLE); learning curves; training speed
and in-process scoring latency.

Data: the simulator (``simulation.datagen.run``: promo tracks cost completion but carry
exposure and lift conversion; sessions have skip momentum and modes) transformed with
``features.preprocessing.transform_dataset``, and, when ``MELODY_DATA_DIR`` holds them,
the real KKBox sample and 30Music slices (through ``features.datasets.registry`` ->
``features.splits``) with only the heads their labels cover. The simulated world is the
calibrated one except for one documented benchmark setting: the conversion hazard is
scaled (``world_overrides`` of ``datagen.run``), because at the calibrated rate a few
thousand listeners convert only a handful of times and the subscription head could not
be measured at all.

Protocol (the same for every model of a dataset): ``steps`` steps of batch ``batch_size``
with the default optimiser and loss weights, no model selection (nothing is tuned on the
eval split, which holds users never seen in training), then every covered head is scored
on the eval split: weighted AUC (binary heads) or RMSE (regression heads). Numbers are
means (and standard deviations) over ``seeds``; verdicts pair the seeds. The learning
curves hold out listeners of the training split (never the eval split). Training speed is
measured on the path ``melody train`` and the TFX Trainer use
(``pipeline.trainer.input_fn`` over the transformed TFRecords,
``pipeline.trainer.build_model``) for the default config (2 layers, d_model 64, history
50, batch 512), in steady state (from the end of the first step to the end of the last,
read by a batch callback), next to a per-part CPU profile of one step.

Scale knobs (environment): ``MELODY_BENCH_RANKING_STEPS`` (default 300),
``MELODY_BENCH_RANKING_REAL_STEPS`` (150, the real datasets), ``MELODY_BENCH_RANKING_BATCH``
(256), ``MELODY_BENCH_RANKING_SEEDS`` (3), ``MELODY_BENCH_RANKING_USERS`` (2000 simulated
listeners), ``MELODY_BENCH_RANKING_DAYS`` (10), ``MELODY_BENCH_RANKING_CONVERSION_SCALE``
(15), ``MELODY_BENCH_RANKING_EVAL_PERCENT`` (20) and ``MELODY_BENCH_RANKING_WORKERS``
(2: two single-threaded training runs side by side; 1: one two-threaded run at a time).
``MELODY_BENCH_RANKING_CURVE_STEPS`` (300,1000,2000: the learning-curve checkpoints) and
``MELODY_BENCH_RANKING_MODELS`` (comma-separated variants, in the order they run; all of
``ranking_models.MODELS`` by default).
``MELODY_BENCH_RANKING_SEQUENCE_STEPS`` (60: the per-impression budget of the
``sequence`` part, ``ranking_sequence``; ``MELODY_BENCH_RANKING_SEQUENCE_WALL=0`` leaves
out its equal-wall-time run), ``MELODY_BENCH_RANKING_REAL_SOURCES``
(kkbox,30music,30music_next_track: what the ``real`` part measures) and
``MELODY_BENCH_RANKING_NEXT_TRACK_STEPS`` (600 steps of 64 windows: the budget of each
trained next-track model, ``ranking_next_track``), ``MELODY_BENCH_RANKING_INPUT_PATH_ONLY``
(1: the ``throughput`` part re-measures only the input path, ``ranking_input_path``,
and keeps the rest of its block).
The benchmark runs in parts (``PARTS``: throughput, latency, simulator, curves, real,
sequence, convergence: ``ranking_convergence``, every model of
``MELODY_BENCH_RANKING_CONVERGENCE_MODELS`` trained to early stopping on held-out training
listeners, at most ``MELODY_BENCH_RANKING_CONVERGENCE_EPOCHS`` passes, 3);
``MELODY_BENCH_RANKING_ONLY=simulator,curves`` (comma-separated) runs only those into the
existing results file, keeping the others, and rewrites the docs and PNG, so each part can
run on its own on a shared machine. Each part records its time, host and load average.

Writes ``bench/results/ranking.json``, a section of ``docs/benchmarks.md`` and
``docs/ranking_benchmark.png``.

Modules: ``ranking_data`` (datasets), ``ranking_models`` (variants, one run),
``ranking_compare`` (every run on a dataset), ``ranking_targets`` (means, paired
verdicts), ``ranking_curves`` (learning curves), ``ranking_speed`` (training speed),
``ranking_latency`` (scoring latency), ``ranking_report`` and ``ranking_notes`` (docs
section and PNG); this module runs the parts in order.
"""

import json
import os
import tempfile
import time
from typing import Dict, Tuple

from bench import common
from bench import ranking_compare
from bench import ranking_convergence
from bench import ranking_curves
from bench import ranking_data
from bench import ranking_input_path
from bench import ranking_latency
from bench import ranking_models
from bench import ranking_next_track
from bench import ranking_report
from bench import ranking_sequence
from bench import ranking_sequence_report
from bench import ranking_speed
from bench import ranking_targets
from features import feature_spec

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
  if "input_path" in t:
    results["targets"]["trainer_path_ge_80pct_of_in_memory"] = (
        t["input_path"]["training"]["trainer_path_over_in_memory"] >= 0.8)


def _save(results: Dict[str, object]) -> None:
  """Writes the results file, the docs section and the PNG."""
  results["host"] = common.host_info()   # the host of this (re-)measurement
  common.write_results("ranking", results)
  ranking_report.write_doc(results)
  ranking_report.write_png(results)
  ranking_sequence_report.write_png(results.get("sequence"))


# The sources of the ``real`` part: per-impression heads on KKBox and 30Music, and
# 30Music next-track ranking (``ranking_next_track``).
NEXT_TRACK = "30music_next_track"
REAL_SOURCES = ("kkbox", "30music", NEXT_TRACK)
PARTS = ("throughput", "latency", "simulator", "curves", "real", "sequence", "convergence")
# Parts that train on the simulator data (generated once per invocation).
_SIM_PARTS = ("throughput", "simulator", "curves", "sequence", "convergence")
CURVE_MODELS = (ranking_models.LINEAR, ranking_models.FLAT_MMOE,
                ranking_models.FLAT_MMOE_RECENT, "mmoe")
# The ``convergence`` part's default variants: the causal model trained sequence-level
# against the reference rankers and the flat ablations.
CONVERGENCE_MODELS = (ranking_convergence.SEQUENCE_LEVEL, ranking_models.LINEAR,
                      ranking_models.FLAT_MMOE, ranking_models.FLAT_MMOE_RECENT)


def _settings() -> Dict[str, object]:
  conversion_scale = _env_float("MELODY_BENCH_RANKING_CONVERSION_SCALE", 15.0)
  return {"steps": _env_int("MELODY_BENCH_RANKING_STEPS", 300),
          "real_steps": _env_int("MELODY_BENCH_RANKING_REAL_STEPS", 150),
          "sequence_steps": _env_int("MELODY_BENCH_RANKING_SEQUENCE_STEPS", 60),
          "next_track_steps": _env_int("MELODY_BENCH_RANKING_NEXT_TRACK_STEPS", 600),
          "sequence_equal_wall": bool(_env_int("MELODY_BENCH_RANKING_SEQUENCE_WALL", 1)),
          "input_path_only": bool(_env_int("MELODY_BENCH_RANKING_INPUT_PATH_ONLY", 0)),
          "real_sources": [x.strip() for x in os.environ.get(
              "MELODY_BENCH_RANKING_REAL_SOURCES", ",".join(REAL_SOURCES)).split(",")
                           if x.strip()],
          "batch_size": _env_int("MELODY_BENCH_RANKING_BATCH", 256),
          "seeds": _env_int("MELODY_BENCH_RANKING_SEEDS", 3),
          "simulated_users": _env_int("MELODY_BENCH_RANKING_USERS", 2000),
          "models": [m.strip() for m in os.environ.get(
              "MELODY_BENCH_RANKING_MODELS", ",".join(ranking_models.MODELS)).split(",")
                     if m.strip()],
          "workers": _env_int("MELODY_BENCH_RANKING_WORKERS", 2),
          "convergence_models": [m.strip() for m in os.environ.get(
              "MELODY_BENCH_RANKING_CONVERGENCE_MODELS", ",".join(CONVERGENCE_MODELS)).split(
                  ",") if m.strip()],
          "convergence_max_epochs": _env_float("MELODY_BENCH_RANKING_CONVERGENCE_EPOCHS",
                                               3.0),
          "curve_steps": [int(x) for x in os.environ.get(
              "MELODY_BENCH_RANKING_CURVE_STEPS", "300,1000,2000").split(",")],
          "generator": {
              "users": _env_int("MELODY_BENCH_RANKING_USERS", 2000),
              "days": _env_int("MELODY_BENCH_RANKING_DAYS", 10),
              "conversion_scale": conversion_scale,
              "eval_percent": _env_int("MELODY_BENCH_RANKING_EVAL_PERCENT", 20),
              "world_overrides": {k: list(v) for k, v in
                                  ranking_data.conversion_overrides(conversion_scale).items()}}}


def _check_models(settings: Dict[str, object]) -> Dict[str, object]:
  unknown = [m for m in settings["models"] if m not in ranking_models.MODELS]
  if unknown:
    raise ValueError(f"unknown ranking bench model(s) {unknown}; known: {ranking_models.MODELS}")
  trainable = [m for m in ranking_models.MODELS if m != ranking_models.POPULARITY]
  known = trainable + [ranking_convergence.SEQUENCE_LEVEL]
  unknown = [m for m in settings["convergence_models"] if m not in known]
  if unknown:
    raise ValueError(f"unknown convergence model(s) {unknown}; known: {known}")
  return settings


def parts_from_env() -> Tuple[str, ...]:
  """The parts named by ``MELODY_BENCH_RANKING_ONLY`` (comma-separated), else all."""
  only = os.environ.get("MELODY_BENCH_RANKING_ONLY", "").strip()
  if not only:
    return PARTS
  parts = tuple(p.strip() for p in only.split(",") if p.strip())
  unknown = [p for p in parts if p not in PARTS]
  if unknown:
    raise ValueError(f"unknown ranking bench part(s) {unknown}; known: {PARTS}")
  return parts


def _run_part(part: str, results, work: str, sim, sim_paths, st) -> None:
  seeds = tuple(range(1, st["seeds"] + 1))
  if part == "throughput":
    if not (st["input_path_only"] and "throughput" in results):
      thr = ranking_speed.training_throughput(sim_paths)
      thr.pop("model")
      results["throughput"] = thr
      ranking_speed.log_throughput(thr)
    results["throughput"]["input_path"] = ranking_input_path.measure(sim_paths, sim["train"])
    results["throughput"]["input_path"]["measured_at"] = _now()
  elif part == "latency":
    results["latency"] = ranking_latency.scoring_latency(reps=300)
  elif part == "simulator":
    block = ranking_compare.compare_models(sim, st["steps"], st["batch_size"], seeds,
                                           models=st["models"], workers=st["workers"],
                                           work_dir=work)
    block["label_profile"] = ranking_data.label_profile(sim["train"])
    results["datasets"]["simulator"] = block
  elif part == "sequence":
    results["sequence"] = ranking_sequence.sequence_comparison(
        sim, st["sequence_steps"], st["batch_size"], seeds,
        equal_wall=st["sequence_equal_wall"])
  elif part == "convergence":
    results["convergence"] = ranking_convergence.compare_at_convergence(
        sim, st["convergence_models"], st["batch_size"], seeds,
        max_epochs=st["convergence_max_epochs"])
  elif part == "curves":
    held = ranking_curves.holdout_listeners(sim["train"])
    covered = {h: bool(ranking_compare.head_coverage(held, h)["covered"])
               for h in ranking_models.HEADS}
    results["curves"] = {
        "rows": ranking_curves.learning_curves(held, CURVE_MODELS, st["curve_steps"],
                                               st["batch_size"], 1, covered),
        "fit_examples": int(len(held["train"][feature_spec.LABEL_KEYS[0]])),
        "holdout_examples": int(len(held["eval"][feature_spec.LABEL_KEYS[0]]))}
  elif part == "real":
    data_dir = os.environ.get("MELODY_DATA_DIR",
                              os.path.join(ranking_report.REPO, "..", "shared", "data"))
    for source in st.get("real_sources", REAL_SOURCES):
      if source == NEXT_TRACK:
        results["next_track"] = _next_track(data_dir, st, seeds)
        continue
      try:
        common.log("ranking", f"{source} data ...")
        real = ranking_data.real_data(work, source, data_dir)
        results["datasets"][source] = ranking_compare.compare_models(
            real, st["real_steps"], st["batch_size"], seeds, models=st["models"],
            workers=st["workers"], work_dir=work)
      except Exception as e:  # pylint: disable=broad-except
        # Report the reason in the results rather than hiding the dataset.
        common.log("ranking", f"{source}: not measured ({type(e).__name__}: {e})")
        results["datasets"][source] = {"error": f"{type(e).__name__}: {e}"}


def _part_key(part: str, st) -> str:
  """The name a part's run is recorded under: a ``real`` run of some sources names them,
  so the sources it left out still read as measured by an earlier run."""
  if part == "real" and tuple(st["real_sources"]) != REAL_SOURCES:
    return f"real ({','.join(st['real_sources'])})"
  return part


def _next_track(data_dir: str, st, seeds) -> Dict[str, object]:
  """The 30Music next-track block (``ranking_next_track``), or why it was not measured."""
  try:
    common.log("ranking", "30music next track ...")
    return ranking_next_track.compare(os.path.join(data_dir, "30music_slices"),
                                      st["next_track_steps"], 64, seeds)
  except Exception as e:  # pylint: disable=broad-except
    common.log("ranking", f"30music next track: not measured ({type(e).__name__}: {e})")
    return {"error": f"{type(e).__name__}: {e}"}


def main() -> None:
  """Runs the benchmark's parts (all, or those of ``MELODY_BENCH_RANKING_ONLY``) and
  writes the results, the docs section and the PNG.

  A run of some parts keeps the other parts' results from the existing results file;
  every part records when it ran, on which host and at what load.
  """
  parts = parts_from_env()
  results: Dict[str, object] = {"datasets": {}}
  if parts != PARTS and os.path.exists(RESULTS):
    with open(RESULTS) as f:
      results = json.load(f)
  st = _check_models(_settings())
  # The header settings describe the full run; a part run alone records its own below.
  if parts == PARTS or "settings" not in results:
    results["settings"] = st
  results.setdefault("datasets", {})
  results.setdefault("parts", {})
  gen = st["generator"]
  with tempfile.TemporaryDirectory(prefix="melody_bench_ranking_") as work:
    sim, sim_paths = None, None
    if any(p in _SIM_PARTS for p in parts):
      common.log("ranking", "simulator data ...")
      sim, sim_paths, _ = ranking_data.simulator_data(
          work, gen["users"], gen["days"], gen["conversion_scale"], gen["eval_percent"])
      gen.update(ranking_data.converters(os.path.join(work, "sim"), gen["eval_percent"]))
    for part in parts:
      common.log("ranking", f"part {part} ...")
      load_before, t0 = os.getloadavg(), time.perf_counter()
      _run_part(part, results, work, sim, sim_paths, st)
      results["parts"][_part_key(part, st)] = {
          "measured_at": _now(), "runtime_s": time.perf_counter() - t0, "settings": st,
          "load_average_before": list(load_before),
          "load_average_after": list(os.getloadavg()), "host": common.host_info()}
      _finish(results)   # saved after every part: a later part's failure loses nothing
  for name, block in results["datasets"].items():
    if block.get("mean"):
      print(f"\n{name}\n" + ranking_report.mean_table(block["mean"],
                                                       ranking_models.metric_columns()))
  print("\n" + "\n".join(f"{k}: {v}" for k, v in results["targets"].items()))


def _finish(results: Dict[str, object]) -> None:
  """Recomputes the targets from whatever the results hold and saves them."""
  results["targets"] = {}
  if "simulator" in results["datasets"]:
    results["targets"] = ranking_targets.targets(results["datasets"]["simulator"])
  if "throughput" in results:
    _throughput_targets(results)
  if "latency" in results:
    _latency_targets(results)
  results["written_at"] = _now()
  _save(results)
