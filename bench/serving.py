"""Serving benchmark (``python -m bench.run serving``): gRPC vs in-process latency.

Measures the exported ranker (``serving.export``: the ``rank`` signature of one
SavedModel version, default ``ModelConfig``, untrained weights — latency does not depend
on them) on a simulated world's catalogue and real listeners, for N = 100 / 500 / 1000
candidates at concurrency 1, 4 and 16:

* ``grpc``: ``melody serve`` (``serving.server``) on 127.0.0.1 in a child process, with
  the export's ``models.config`` and ``batching_parameters.txt`` (as deployed: greedy
  server-side batching, so a lone request runs at once and requests that arrive while
  the batch threads are busy share one model call), called through ``serving.client``
  (the official ``PredictionServiceStub``) from ``concurrency`` threads;
* ``in_process``: the same SavedModel loaded with ``tf.saved_model.load`` in this
  process, its ``rank`` signature called from ``concurrency`` threads — the baseline,
  measured in the same run.

Reported per cell: p50 / p99 latency and QPS; per (N, concurrency) the gRPC p99 against
its budget ``1.3 x in-process p99 + 1 ms`` and the 500-candidate p99 at concurrency 1
(target <= 15 ms). Both processes freeze their heap out of the garbage collector
(``gc.freeze``: the server before its first version, the baseline after loading), so
neither side's p99 carries full-collection pauses over TensorFlow's objects. Results go to
``bench/results/serving.json`` and the table to ``docs/benchmarks_serving.md``.

Both sides run TensorFlow with the same thread settings: ``BENCH_SERVING_INTRA_OP``
intra-op threads (default 1: on a small shared box one thread per op and concurrency
across requests beats splitting every small op; stock TF Serving takes the same setting
as ``--tensorflow_intra_op_parallelism``) and TF's default inter-op pool.

Environment knobs: ``BENCH_SERVING_REQUESTS`` (timed requests per cell, default 300: p99 is
the 3rd-worst sample, not the 2nd),
``BENCH_SERVING_DIR`` (reuse a prepared world and export there),
``BENCH_SERVING_INTRA_OP`` (see above; 0 = TensorFlow's default).

This module owns what is measured (the world, the exported ranker; :func:`prepare_world`
and :func:`build_model` are shared with ``tests/serving``) and the run; the load
generator is ``bench.serving_load``, the request profile ``bench.serving_profile``, the
verdict and the docs page ``bench.serving_report``.
"""

import os
import tempfile
from typing import Dict, Optional

from serving import grpc_env

# The benchmark is a gRPC client entry point like `melody query`: it takes the same I/O
# path as ModelClient and the server child, which only works before grpc is imported.
grpc_env.prefer_polling_io()

from bench import serving_load  # pylint: disable=g-import-not-at-top,wrong-import-position
from bench import serving_profile  # pylint: disable=g-import-not-at-top,wrong-import-position
from bench import serving_report  # pylint: disable=g-import-not-at-top,wrong-import-position

SEED = 7
WORLD = {"users": 150, "days": 3, "tracks": 3000}


def prepare_world(root: str, users: int = 40, days: int = 2, tracks: int = 300,
                  seed: int = SEED) -> Dict[str, str]:
  """A ``melody data generate`` directory and its TFT output under ``root`` (reused when
  already complete).

  Returns:
    ``{"data": DIR, "tracks": tracks.parquet, "examples": glob, "tft": DIR}``.
  """
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from simulation import datagen  # pylint: disable=g-import-not-at-top
  data, tft_dir = os.path.join(root, "data"), os.path.join(root, "tft")
  done = os.path.join(root, "DONE")
  paths = {"data": data, "tracks": os.path.join(data, "tracks.parquet"),
           "examples": os.path.join(data, "examples", "*.tfrecord.gz"), "tft": tft_dir}
  if not os.path.exists(done):
    datagen.run(users=users, days=days, out=data, seed=seed, shards=1, tracks=tracks)
    preprocessing.transform_dataset(os.path.join(data, "examples", "train-*.tfrecord.gz"),
                                    tft_dir)
    with open(done, "w") as f:
      f.write("ok\n")
  return paths


def build_model(seed: int = SEED, config=None):
  """A built (initialized, untrained) ``RankingModel``; tiny unless ``config`` is given."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  from melody_testing import synthetic_batches  # pylint: disable=g-import-not-at-top
  config = config or config_lib.ModelConfig(
      d_model=16, num_layers=1, num_heads=2, expert_units=(16,), tower_units=(8,),
      num_experts=2)
  tf.keras.utils.set_random_seed(seed)
  model = model_lib.RankingModel(config)
  model(synthetic_batches.synthetic_batch(2), training=False)
  return model


def _export(root: str) -> Dict[str, str]:
  """World + default-size ranker exported once under ``root`` (reused when present)."""
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from serving import export  # pylint: disable=g-import-not-at-top
  from serving import model_config  # pylint: disable=g-import-not-at-top
  paths = prepare_world(os.path.join(root, "world"), **WORLD)
  base = os.path.join(root, "models", "melody")
  version = os.path.join(base, "1")
  model = build_model(config=config_lib.ModelConfig())   # same seed: same weights
  if not os.path.isdir(version):
    export.export_serving_model(model, paths["tft"], paths["tracks"], base, version=1,
                                n_max=max(serving_load.SIZES))
  paths["model"] = model
  paths.update(base=base, version=version,
               config=os.path.join(root, "models", "models.config"),
               batching=os.path.join(root, "models", model_config.BATCHING_PARAMETERS))
  return paths


def main(argv: Optional[list] = None) -> int:
  """Runs the benchmark, writes the results JSON and docs/benchmarks_serving.md."""
  del argv
  import sys  # pylint: disable=g-import-not-at-top
  if "tensorflow" in sys.modules:
    print("[bench] TensorFlow already initialized: in-process threads stay as they are",
          flush=True)
  os.environ.update(serving_load.thread_env())
  from bench import common  # pylint: disable=g-import-not-at-top
  count = int(os.environ.get("BENCH_SERVING_REQUESTS", "300"))
  root = os.environ.get("BENCH_SERVING_DIR")
  tmp = None
  if not root:
    tmp = tempfile.TemporaryDirectory(prefix="melody-bench-serving-")
    root = tmp.name
  try:
    paths = _export(root)
    stages = serving_profile.profile(paths, 500)
    rows = serving_load.measure(paths, count)
  finally:
    if tmp is not None:
      tmp.cleanup()
  summary = serving_report.summarize(rows)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
             "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
             "env": serving_load.thread_env()}
  results = {"rows": rows, **summary, "requests_per_cell": count, "world": WORLD,
             "tf_threads": threads, "grpc_io": grpc_env.describe(), "profile_n500": stages,
             "host": common.host_info()}
  common.write_results("serving", results)
  print(serving_report.write_doc(results))
  return 0
