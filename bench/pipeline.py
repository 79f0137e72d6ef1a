"""Pipeline benchmark (``make bench-pipeline``): examples/s per Beam runner, warm vs cold.

Two measurements, each against a baseline measured in the same run:

(a) runners: the examples Beam job (``features.examples_beam.write_examples``) on the
    same events, chunked by listener, on the DirectRunner ``in_memory`` (the baseline),
    the DirectRunner ``multi_processing`` with 2 workers, and the DaskRunner on a
    ``dask.distributed`` LocalCluster of 2 workers; examples/s of wall time, and whether
    every runner wrote the same examples.
(b) warm vs cold start, on simulated spans and on the 30Music slices when the shared
    data is there: a model trained on the earlier span(s) stands for the pushed model;
    on the window of the next two spans a cold model (the baseline) and a model warm-
    started with its weights train for the same budget, evaluated every
    ``EVAL_EVERY`` steps on the newest span's whole eval split. Reported: the cold
    model's final eval loss, the step at which the warm model first reaches it (goal: at
    most half the budget) and both models' headline AUCs at the end of the budget ("n/a
    (no positives)" for a head whose eval labels have one class).

Results go to ``bench/results/pipeline.json`` with the host and the load average; the
doc is ``docs/benchmarks_pipeline.md`` (``bench/pipeline_report.py``) with its PNG.
Environment knobs: ``BENCH_PIPELINE_STEPS`` (budget, default 100),
``BENCH_PIPELINE_USERS`` (simulated listeners, default 1000), ``BENCH_PIPELINE_REAL``
(0: simulated data only), ``BENCH_PIPELINE_PARTS`` (``runners``, ``warm`` or both,
comma-separated; a partial run keeps the other part's last results).
"""

import os
import tempfile
import time
from typing import Dict, List, Optional

import features  # noqa: F401  (Keras 2 guard before TensorFlow)
from bench import common

EVAL_EVERY = 10
EVAL_BATCH = 64  # the whole eval span is evaluated, in batches of this size
BATCH = 256
# Key of the wall time per stage of the 30Music run (import, examples, each pipeline
# component), from tests/e2e/test_real_data_pipeline.py.
REAL_DATA_STAGES = "real_data_stages"
RUNNERS = (("DirectRunner in_memory", "DirectRunner", ["--direct_running_mode=in_memory"]),
           ("DirectRunner multi_processing (2)", "DirectRunner",
            ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
           ("DaskRunner LocalCluster (2 workers)", "DaskRunner", []))


def _log(msg: str) -> None:
  common.log("pipeline", msg)


def _simulated(root: str, users: int) -> str:
  from simulation import datagen  # pylint: disable=g-import-not-at-top
  out = os.path.join(root, "sim")
  datagen.run(users=users, days=3, out=out, seed=7, shards=2, tracks=3000, span_layout=True)
  return out


def _thirty_music(root: str) -> Optional[str]:
  import io  # pylint: disable=g-import-not-at-top
  from features import own_logs  # pylint: disable=g-import-not-at-top
  from features.datasets import importer, registry  # pylint: disable=g-import-not-at-top
  imported = os.path.join(root, "30music_import")
  data_dir = registry.default_data_dir()
  if importer.run_import("30music", data_dir, imported, stream=io.StringIO()) != 0:
    _log(f"30Music not found under {data_dir}: real-data rows skipped")
    return None
  out = os.path.join(root, "30music")
  own_logs.build_examples(os.path.join(imported, "events.parquet"),
                          os.path.join(imported, "tracks.parquet"), out, shards=2)
  return out


def _records(pattern: str) -> List[bytes]:
  from features import example_io  # pylint: disable=g-import-not-at-top
  return sorted(example_io.canonical(r) for r in example_io.iter_records(pattern))


def bench_runners(data_root: str, root: str) -> List[Dict[str, object]]:
  """(a): examples/s per runner on ``data_root``'s events (whole listeners per file)."""
  import glob  # pylint: disable=g-import-not-at-top
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  from features import examples_beam, own_logs  # pylint: disable=g-import-not-at-top
  events = pa.concat_tables(
      pq.read_table(p) for p in sorted(glob.glob(os.path.join(data_root, "events", "*.parquet")))
  ).to_pandas()
  chunk_dir = os.path.join(root, "chunks")
  os.makedirs(chunk_dir, exist_ok=True)
  chunks = []
  for i, table in enumerate(own_logs.user_chunks(events, chunk_users=400)):
    path = os.path.join(chunk_dir, f"part-{i:05d}.parquet")
    pq.write_table(table, path)
    chunks.append(path)
  tracks = os.path.join(data_root, "tracks.parquet")
  rows, reference = [], None
  for label, runner, args in RUNNERS:
    out = os.path.join(root, "runner_" + runner + str(len(rows)))
    t0 = time.perf_counter()
    examples_beam.write_examples(chunks, tracks, out, shards=2, runner=runner, beam_args=args)
    seconds = time.perf_counter() - t0
    written = _records(os.path.join(out, "*.tfrecord.gz"))
    reference = reference if reference is not None else written
    rows.append({"runner": label, "events": len(events), "examples": len(written),
                 "seconds": round(seconds, 2),
                 "examples_per_s": round(len(written) / seconds, 1),
                 "same_examples_as_baseline": written == reference})
    _log(f"{label}: {len(written):,} examples in {seconds:.1f}s")
  base = rows[0]["examples_per_s"]
  for row in rows:
    row["ratio_vs_in_memory"] = round(row["examples_per_s"] / base, 2)
  return rows


def _transform(data_root: str, days: List[str], out: str) -> Dict[str, str]:
  """TFT over the train files of ``days`` and the eval files of the last one, linked
  into one folder as a scheduled window run links them."""
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from pipeline import window_runs  # pylint: disable=g-import-not-at-top
  linked = window_runs.window_input(data_root, out, [int(d) for d in days])
  folder = os.path.join(linked, "examples", f"span-{days[-1]}")
  return preprocessing.transform_dataset(os.path.join(folder, "train-*"),
                                         os.path.join(out, "transform"),
                                         eval_file_pattern=os.path.join(folder, "eval-*"))


def _curve(model, train_ds, eval_ds, steps: int) -> List[Dict[str, float]]:
  curve = []
  done = 0
  while done < steps:
    model.fit(train_ds, epochs=1, steps_per_epoch=EVAL_EVERY, verbose=0)
    done += EVAL_EVERY
    ev = model.evaluate(eval_ds, return_dict=True, verbose=0)
    if "loss" not in ev:
      raise ValueError(f"the eval split has fewer than {EVAL_BATCH} examples")
    curve.append({"step": done, **{k: float(v) for k, v in ev.items()}})
  return curve


def bench_warm_vs_cold(name: str, data_root: str, root: str, steps: int) -> Dict[str, object]:
  """(b) on one dataset: the last three spans; the first trains the "pushed" model."""
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from features import example_io  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  spans = sorted(os.path.basename(p)[len("span-"):]
                 for p in glob.glob(os.path.join(data_root, "examples", "span-*")))
  # Spans with a usable eval split (a simulated run's last day spills a few plays past
  # midnight into a tiny extra span).
  spans = [s for s in spans if sum(1 for _ in example_io.iter_records(os.path.join(
      data_root, "examples", f"span-{s}", "eval-*"))) >= 2 * EVAL_BATCH][-3:]
  earlier, window = spans[:1], spans[1:]
  xf_old = _transform(data_root, earlier, os.path.join(root, name, "xf_old"))
  xf_new = _transform(data_root, window, os.path.join(root, name, "xf_new"))
  model_config, train_config = trainer.configs_from_custom({"batch_size": BATCH})

  def datasets(xf):
    spec = tft.TFTransformOutput(xf["transform_output"]).transformed_feature_spec()
    return (trainer.input_fn([xf["train"]], spec, BATCH, seed=7),
            trainer.input_fn([xf["eval"]], spec, EVAL_BATCH, seed=7, shuffle=False,
                             repeat=False))

  old_train, _ = datasets(xf_old)
  pushed = trainer.build_model(model_config, train_config)
  pushed.fit(old_train, epochs=1, steps_per_epoch=steps, verbose=0)
  train_ds, eval_ds = datasets(xf_new)
  cold = trainer.build_model(model_config, train_config)
  cold_curve = _curve(cold, train_ds, eval_ds, steps)
  warm = trainer.build_model(model_config, train_config)
  warm.build_variables()
  warm.set_weights(pushed.get_weights())
  warm_curve = _curve(warm, train_ds, eval_ds, steps)
  target = cold_curve[-1]["loss"]
  reached = next((p["step"] for p in warm_curve if p["loss"] <= target), None)
  aucs = sorted(k for k in cold_curve[-1] if k.endswith("_auc"))
  result = {"dataset": name, "spans_pushed_model": earlier, "window": window,
            "budget_steps": steps, "cold_final_eval_loss": round(target, 4),
            "warm_final_eval_loss": round(warm_curve[-1]["loss"], 4),
            "warm_steps_to_cold_final_loss": reached,
            "warm_steps_share_of_budget": None if reached is None else round(reached / steps, 3),
            "meets_goal_half_budget": reached is not None and reached <= steps / 2,
            "cold_curve": cold_curve, "warm_curve": warm_curve}
  for key in aucs:
    cold_auc, warm_auc = cold_curve[-1][key], warm_curve[-1][key]
    if cold_auc == warm_auc == 0.0:  # Keras' AUC over an eval split without positives
      result[f"cold_{key}"] = result[f"warm_{key}"] = "n/a (no positives)"
    else:
      result[f"cold_{key}"], result[f"warm_{key}"] = round(cold_auc, 4), round(warm_auc, 4)
  _log(f"{name}: cold final eval loss {target:.4f}; warm reaches it at step {reached} "
       f"of {steps}")
  return result


def _kept_stage_times() -> Dict[str, object]:
  """The real-data stage times already in the results (``REAL_DATA_STAGES``, measured
  by the 30Music end-to-end run, not by this benchmark), kept when it rewrites them."""
  old = common.read_results("pipeline")
  return {REAL_DATA_STAGES: old[REAL_DATA_STAGES]} if REAL_DATA_STAGES in old else {}


def _now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main() -> None:
  steps = int(os.environ.get("BENCH_PIPELINE_STEPS", "100"))
  users = int(os.environ.get("BENCH_PIPELINE_USERS", "1000"))
  parts = common.parts_from_env("BENCH_PIPELINE_PARTS", ("runners", "warm"))
  # A partial run keeps the other part's last results.
  results = (common.read_results("pipeline") if len(parts) < 2
             else dict(_kept_stage_times()))
  for part in {"runners", "warm"} - set(parts):
    # The part not measured now keeps when and at what load it was measured.
    results.setdefault(f"{part}_measured_at", results.get("written_at"))
    results.setdefault(f"{part}_load_average", results.get("load_average"))
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as root:
    sim = _simulated(root, users)
    real = _thirty_music(root) if os.environ.get("BENCH_PIPELINE_REAL", "1") == "1" else None
    if "runners" in parts:
      runners = bench_runners(real or sim, os.path.join(root, "runners"))
      print(common.table(runners, ["runner", "examples", "seconds", "examples_per_s",
                                   "ratio_vs_in_memory", "same_examples_as_baseline"]))
      results.update({"runners": runners, "runners_data": "30music" if real else "simulated",
                      "runners_load_average": {"before": load_before,
                                               "after": os.getloadavg()},
                      "runners_measured_at": _now()})
    if "warm" in parts:
      warm_before = os.getloadavg()
      warm = [bench_warm_vs_cold("simulated", sim, root, steps)]
      if real:
        warm.append(bench_warm_vs_cold("30music", real, root, steps))
      print(common.table(warm, ["dataset", "budget_steps", "cold_final_eval_loss",
                                "warm_final_eval_loss", "warm_steps_to_cold_final_loss",
                                "meets_goal_half_budget"]))
      results.update({"warm_vs_cold": warm, "warm_measured_at": _now(),
                      "warm_load_average": {"before": warm_before,
                                            "after": os.getloadavg()}})
  results.update({"eval_every": EVAL_EVERY, "eval_batch": EVAL_BATCH, "batch_size": BATCH,
                  "parts_measured": parts, "host": common.host_info(),
                  "written_at": _now(),
                  "load_average": {"before": load_before, "after": os.getloadavg()}})
  common.write_results("pipeline", results)
  from bench import pipeline_report  # pylint: disable=g-import-not-at-top
  pipeline_report.main()


if __name__ == "__main__":
  main()
