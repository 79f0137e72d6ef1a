"""Ranking benchmark: single-task vs shared-bottom vs MMoE vs PLE, training speed and
in-process scoring latency.

Data: the simulator (``features.generate.run``: promo tracks cost completion but carry
exposure and drive conversion, so interest and promotion conflict by construction),
transformed with ``features.preprocessing.transform_dataset``; and, when
``MELODY_DATA_DIR`` holds them, the real KKBox sample and 30Music slices (through
``features.datasets.registry`` -> ``features.examples``), with only the heads their
labels cover. Every model trains the same number of steps on the same data; quality is
the weighted per-head AUC (binary heads) or RMSE (regression heads) on the eval split,
mean over seeds. Training examples/s is measured for the default config (2 layers,
d_model 64, history 50, batch 512), and scoring latency for 100/500/1000 candidates
against one listener encoded once (the serving path, in process).

Scale knobs (environment): ``MELODY_BENCH_RANKING_STEPS`` (default 100),
``MELODY_BENCH_RANKING_BATCH`` (256), ``MELODY_BENCH_RANKING_SEEDS`` (3),
``MELODY_BENCH_RANKING_USERS`` (400 simulated users).

Writes ``bench/results/ranking.json``, a section of ``docs/benchmarks.md`` and
``docs/ranking_benchmark.png``.
"""

import os
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
from bench import common
from features import feature_spec as fs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "benchmarks.md")
PNG = os.path.join(REPO, "docs", "ranking_benchmark.png")
MODELS = ("single:interest", "single:subscription", "single:exposure", "shared_bottom",
          "mmoe", "ple")
HEADS = fs.LABEL_KEYS
BEGIN, END = "<!-- ranking:begin -->", "<!-- ranking:end -->"


def _env_int(name: str, default: int) -> int:
  return int(os.environ.get(name, default))


def _log(msg: str) -> None:
  print(f"[bench ranking] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ data
def _write(path: str, records: List[bytes]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


def _load_transformed(paths: Dict[str, str]) -> Dict[str, Dict[str, np.ndarray]]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  spec = tft.TFTransformOutput(paths["transform_output"]).transformed_feature_spec()
  out = {}
  for split in ("train", "eval"):
    files = sorted(tf.io.gfile.glob(paths[split]))
    parts = []
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
      parts.append({k: v.numpy() for k, v in tf.io.parse_example(raw, spec).items()})
    out[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return out


def simulator_data(work: str, users: int) -> Dict[str, Dict[str, np.ndarray]]:
  from features import generate  # pylint: disable=g-import-not-at-top
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  sim = os.path.join(work, "sim")
  generate.run(users=users, days=10, out=sim, seed=7, shards=2)
  paths = preprocessing.transform_dataset(
      os.path.join(sim, "examples", "train-*.tfrecord.gz"), os.path.join(sim, "xf"),
      eval_file_pattern=os.path.join(sim, "examples", "eval-*.tfrecord.gz"))
  return _load_transformed(paths)


def real_data(work: str, source: str, data_dir: str,
              max_events: int = 40_000) -> Dict[str, Dict[str, np.ndarray]]:
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  from features import events as ev  # pylint: disable=g-import-not-at-top
  from features import examples as ex  # pylint: disable=g-import-not-at-top
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from features.datasets import registry  # pylint: disable=g-import-not-at-top
  events, tracks, _ = registry.load(source, data_dir)
  # Whole users, first ones by id, up to ``max_events`` plays: keeps the Beam transform
  # and the per-model training comparable in cost to the simulator run.
  counts = events.groupby("user_id").size().sort_index()
  keep = counts.index[np.cumsum(counts.to_numpy()) <= max_events]
  events = events[events["user_id"].isin(keep)]
  events = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
  table = pa.Table.from_pandas(events, schema=ev.EVENT_SCHEMA, preserve_index=False)
  split = ex.split_examples(table, ex.TrackIndex(tracks))
  root = os.path.join(work, source)
  for name, records in split.items():
    _write(os.path.join(root, "raw", f"{name}-00000-of-00001.tfrecord.gz"), records)
  paths = preprocessing.transform_dataset(
      os.path.join(root, "raw", "train-*.tfrecord.gz"), os.path.join(root, "xf"),
      eval_file_pattern=os.path.join(root, "raw", "eval-*.tfrecord.gz"))
  return _load_transformed(paths)


# --------------------------------------------------------------------------- training
def _dataset(arrays, batch_size, seed):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = len(next(iter(arrays.values())))
  ds = tf.data.Dataset.from_tensor_slices(arrays).shuffle(min(n, 20000), seed=seed)
  return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(2)


def train_and_eval(name: str, data, steps: int, batch_size: int, seed: int,
                   covered: Dict[str, bool]) -> Dict[str, float]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  model_config = config_lib.model_config_from_name(name)
  train_config = config_lib.TrainConfig(batch_size=batch_size, seed=seed)
  model = model_lib.RankingModel(model_config, train_config)
  model.compile(model_lib.make_optimizer(model, train_config))
  ds = _dataset(data["train"], batch_size, seed)
  warm = min(10, steps // 5)
  model.fit(ds, steps_per_epoch=warm, verbose=0)
  t0 = time.perf_counter()
  model.fit(ds, steps_per_epoch=steps - warm, verbose=0)
  train_s = time.perf_counter() - t0
  ev = tf.data.Dataset.from_tensor_slices(data["eval"]).batch(2048)
  metrics = model.evaluate(ev, return_dict=True, verbose=0)
  row = {"model": name, "seed": seed,
         "train_examples_per_s": (steps - warm) * batch_size / train_s}
  for head in model_config.labels:
    if not covered.get(head):
      continue
    key = f"{head}_auc" if head in fs.BINARY_LABELS else f"{head}_rmse"
    row[key] = float(metrics[key])
  return row


def mean_rows(rows: List[Dict[str, object]]) -> List[Dict[str, object]]:
  out = []
  for name in MODELS:
    mine = [r for r in rows if r["model"] == name]
    if not mine:
      continue
    keys = sorted({k for r in mine for k in r if k not in ("model", "seed")})
    out.append(dict({"model": name, "seeds": len(mine)},
                    **{k: float(np.mean([r[k] for r in mine if k in r])) for k in keys}))
  return out


def _covered(data, head: str, min_positives: int = 10) -> bool:
  """A head is measured when both splits carry its label (weight > 0) and, for a binary
  head, the eval split has at least ``min_positives`` positives and negatives."""
  for split in ("train", "eval"):
    w = data[split][fs.weight_key(head)] > 0
    if not w.any():
      return False
  if head in fs.BINARY_LABELS:
    y = data["eval"][head][data["eval"][fs.weight_key(head)] > 0]
    return min(int((y > 0.5).sum()), int((y <= 0.5).sum())) >= min_positives
  return True


def compare_models(data, steps, batch_size, seeds) -> Dict[str, object]:
  covered = {h: _covered(data, h) for h in HEADS}
  rows = []
  for name in MODELS:
    tasks = (name.split(":")[1],) if name.startswith("single:") else tuple(fs.TASKS)
    if not any(covered[h] for t in tasks for h in fs.TASKS[t]):
      continue
    for seed in seeds:
      row = train_and_eval(name, data, steps, batch_size, seed, covered)
      _log(f"{name} seed {seed}: " + ", ".join(
          f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
      rows.append(row)
  return {"runs": rows, "mean": mean_rows(rows), "covered_heads": covered,
          "train_examples": int(len(data["train"][fs.LABEL_KEYS[0]])),
          "eval_examples": int(len(data["eval"][fs.LABEL_KEYS[0]]))}


def targets(mean: List[Dict[str, object]]) -> Dict[str, object]:
  """The issue's quality targets, checked on the simulator means."""
  by = {r["model"]: r for r in mean}
  out = {}
  if "mmoe" in by and "single:interest" in by:
    gaps = {}
    for head in ("interest_skip_auc", "interest_like_auc"):
      if head in by["mmoe"] and head in by["single:interest"]:
        gaps[head] = by["mmoe"][head] - by["single:interest"][head]
    out["mmoe_minus_single_interest_auc"] = gaps
    out["mmoe_within_0.003_auc_of_single_on_interest"] = all(g >= -0.003 for g in gaps.values())
  if "mmoe" in by and "shared_bottom" in by:
    out["mmoe_minus_shared_bottom"] = {
        "subscription_auc": by["mmoe"].get("subscription_auc", np.nan)
                            - by["shared_bottom"].get("subscription_auc", np.nan),
        "exposure_rmse": by["mmoe"].get("exposure_rmse", np.nan)
                         - by["shared_bottom"].get("exposure_rmse", np.nan)}
  return out


# ------------------------------------------------------------------ speed and latency
def training_throughput(data, steps: int = 30, batch_size: int = 512) -> Dict[str, float]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(1)
  tc = config_lib.TrainConfig(batch_size=batch_size)
  model = model_lib.RankingModel(config_lib.ModelConfig(), tc)
  model.compile(model_lib.make_optimizer(model, tc))
  ds = _dataset(data["train"], batch_size, 1)
  model.fit(ds, steps_per_epoch=3, verbose=0)
  t0, c0 = time.perf_counter(), time.process_time()
  model.fit(ds, steps_per_epoch=steps, verbose=0)
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  load = os.getloadavg()[0]
  return {"examples_per_s": steps * batch_size / wall, "batch_size": batch_size,
          "steps": steps, "cpu_s_per_step": cpu / steps, "wall_s_per_step": wall / steps,
          # What 2 dedicated cores would do: CPU time per step spread over both.
          "examples_per_s_2_dedicated_cores_est": 2 * batch_size / (cpu / steps),
          "load_average_1m": load, "model": model}


def scoring_latency(model, data, sizes=(100, 500, 1000), reps: int = 200):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  fn = tf.function(model.score_candidates,
                   input_signature=[model_lib.listener_input_spec(1),
                                    model_lib.candidate_input_spec(None)])
  ev = data["eval"]
  listener = {k: tf.constant(ev[k][:1]) for k in model_lib.LISTENER_FEATURES}
  out = {}
  for n in sizes:
    idx = np.arange(n) % len(ev[fs.LABEL_KEYS[0]])
    cand = {k: tf.constant(ev[k][idx]) for k in model_lib.CANDIDATE_FEATURES}
    for _ in range(10):
      fn(listener, cand)["interest"].numpy()
    samples = []
    for _ in range(reps):
      t0 = time.perf_counter()
      fn(listener, cand)["interest"].numpy()
      samples.append(time.perf_counter() - t0)
    out[str(n)] = common.percentiles_ms(samples)
    _log(f"score {n} candidates: p50 {out[str(n)]['p50_ms']:.2f} ms, "
         f"p99 {out[str(n)]['p99_ms']:.2f} ms")
  return out


# -------------------------------------------------------------------------- reports
def _table(mean, heads) -> str:
  cols = ["model", "seeds"] + [h for h in heads if any(h in r for r in mean)] + [
      "train_examples_per_s"]
  return common.table(mean, cols)


def _metric_columns():
  return [f"{h}_auc" if h in fs.BINARY_LABELS else f"{h}_rmse" for h in HEADS]


def write_doc(results: Dict[str, object]) -> None:
  lines = [BEGIN, "## Ranking (`make bench-ranking`, `bench/ranking.py`)", ""]
  s = results["settings"]
  lines.append(
      f"Measured {results['written_at']} on {os.cpu_count()} shared cores (1-min load "
      f"average {results['throughput']['load_average_1m']:.1f} while timing). Every model "
      f"trains {s['steps']} steps of batch {s['batch_size']} (default architecture: "
      "2 layers, d_model 64, history 50) and is evaluated on the held-out users; numbers "
      f"are means over {s['seeds']} seeds. AUC: higher is better; RMSE: lower is better.")
  order = {"simulator": 0, "kkbox": 1, "30music": 2}
  for name, block in sorted(results["datasets"].items(), key=lambda kv: order.get(kv[0], 9)):
    lines += ["", f"### {name} ({block.get('train_examples', 0):,} train / "
              f"{block.get('eval_examples', 0):,} eval examples)", ""]
    if "error" in block:
      lines.append(f"Not measured: {block['error']}")
      continue
    missing = [h for h, ok in block.get("covered_heads", {}).items() if not ok]
    if missing:
      lines += [f"Heads not measurable here (label absent, or fewer than 10 positives or "
                f"negatives in the eval split): {', '.join(missing)}.", ""]
    if block["mean"]:
      lines.append(_table(block["mean"], _metric_columns()))
    else:
      lines.append("No model trained: no head is measurable on this source.")
  t = results["throughput"]
  lines += ["", "### Training speed (default config, batch 512)", "",
            f"- measured: **{t['examples_per_s']:,.0f} examples/s** "
            f"({t['wall_s_per_step'] * 1e3:.0f} ms/step wall, "
            f"{t['cpu_s_per_step'] * 1e3:.0f} ms/step CPU)",
            f"- 2 dedicated cores, estimated from CPU time: "
            f"{t['examples_per_s_2_dedicated_cores_est']:,.0f} examples/s (target 3,000)",
            "", "### Scoring latency (one listener encoded once, N candidates broadcast)", "",
            common.table([dict(candidates=int(n), **v) for n, v in results["latency"].items()],
                         ["candidates", "p50_ms", "p99_ms", "mean_ms", "n"]),
            "", "### Targets", ""]
  for k, v in results["targets"].items():
    lines.append(f"- `{k}`: {v}")
  lines += ["", f"![ranking benchmark]({os.path.basename(PNG)})", "", END]
  section = "\n".join(lines) + "\n"
  old = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n\n"
  if BEGIN in old and END in old:
    new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END) + 1:]
  else:
    new = old.rstrip("\n") + "\n\n" + section
  with open(DOC, "w") as f:
    f.write(new)


def write_png(results: Dict[str, object]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  sim = results["datasets"].get("simulator", {})
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  if "mean" in sim:
    heads = [h for h in _metric_columns()
             if h.endswith("_auc") and any(h in r for r in sim["mean"])]
    models = [r["model"] for r in sim["mean"]]
    width = 0.8 / max(1, len(models))
    for i, r in enumerate(sim["mean"]):
      axes[0].bar(np.arange(len(heads)) + i * width, [r.get(h, np.nan) for h in heads],
                  width, label=r["model"])
    axes[0].set_xticks(np.arange(len(heads)) + 0.4 - width / 2)
    axes[0].set_xticklabels([h.replace("_auc", "") for h in heads])
    axes[0].set_ylabel("AUC (simulator eval)")
    lo = np.nanmin([r.get(h, np.nan) for r in sim["mean"] for h in heads])
    axes[0].set_ylim(max(0.4, lo - 0.05), None)
    axes[0].legend(fontsize=7)
  lat = results["latency"]
  ns = [int(n) for n in lat]
  axes[1].plot(ns, [lat[str(n)]["p50_ms"] for n in ns], "o-", label="p50")
  axes[1].plot(ns, [lat[str(n)]["p99_ms"] for n in ns], "o-", label="p99")
  axes[1].axhline(10, color="grey", ls="--", lw=1, label="target p99 @500")
  axes[1].set_xlabel("candidates per request")
  axes[1].set_ylabel("ms (in process)")
  axes[1].legend()
  fig.tight_layout()
  fig.savefig(PNG, dpi=110)
  plt.close(fig)


def render(path: str = os.path.join(common.RESULTS_DIR, "ranking.json")) -> None:
  """Rewrites the docs section and the PNG from a results file (no training)."""
  import json  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    results = json.load(f)
  write_doc(results)
  write_png(results)


def main() -> None:
  steps = _env_int("MELODY_BENCH_RANKING_STEPS", 100)
  batch_size = _env_int("MELODY_BENCH_RANKING_BATCH", 256)
  seeds = tuple(range(1, _env_int("MELODY_BENCH_RANKING_SEEDS", 3) + 1))
  users = _env_int("MELODY_BENCH_RANKING_USERS", 400)
  data_dir = os.environ.get("MELODY_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))
  results: Dict[str, object] = {
      "settings": {"steps": steps, "batch_size": batch_size, "seeds": len(seeds),
                   "simulated_users": users, "models": list(MODELS)},
      "datasets": {}}
  with tempfile.TemporaryDirectory(prefix="melody_bench_ranking_") as work:
    _log("simulator data ...")
    sim = simulator_data(work, users)
    # Speed first, while the process holds one model and nothing else.
    _log("training throughput ...")
    thr = training_throughput(sim)
    model = thr.pop("model")
    results["throughput"] = thr
    _log(f"training: {thr['examples_per_s']:,.0f} examples/s")
    results["latency"] = scoring_latency(model, sim, reps=300)
    del model
    results["datasets"]["simulator"] = compare_models(sim, steps, batch_size, seeds)
    for source in ("kkbox", "30music"):
      try:
        _log(f"{source} data ...")
        real = real_data(work, source, data_dir)
        results["datasets"][source] = compare_models(real, steps, batch_size, seeds[:1])
      except Exception as e:  # pylint: disable=broad-except
        # Report the reason in the results rather than hiding the dataset.
        _log(f"{source}: not measured ({type(e).__name__}: {e})")
        results["datasets"][source] = {"error": f"{type(e).__name__}: {e}"}
  results["targets"] = targets(results["datasets"]["simulator"]["mean"])
  results["targets"]["training_3000_examples_per_s_measured"] = (
      results["throughput"]["examples_per_s"] >= 3000)
  results["targets"]["training_3000_examples_per_s_2_dedicated_cores_est"] = (
      results["throughput"]["examples_per_s_2_dedicated_cores_est"] >= 3000)
  results["targets"]["score_500_p99_le_10ms"] = results["latency"]["500"]["p99_ms"] <= 10.0
  results["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
  common.write_results("ranking", results)
  write_doc(results)
  write_png(results)
  for name, block in results["datasets"].items():
    if "mean" in block:
      print(f"\n{name}\n" + _table(block["mean"], _metric_columns()))
  print("\n" + "\n".join(f"{k}: {v}" for k, v in results["targets"].items()))
