"""The ranking benchmark's scoring latency: ``RankingModel.score_candidates`` for one
listener encoded once and N candidates, timed in a fresh child process.
"""

import time
from typing import Dict, Sequence

import numpy as np

from bench import common


def _latency_job(sizes: Sequence[int], reps: int, seed: int, freeze: bool = True,
                 intra_op_threads: int = 1) -> Dict[str, Dict[str, float]]:
  """In a fresh process: p50/p99 of ``score_candidates`` for one listener, N candidates.

  The default config with its initial weights (latency depends on shapes, not on the
  weights' values) on synthetic inputs of the transformed-feature shapes. The process
  holds nothing else, and its objects are frozen out of the garbage collector as the
  model server does after a load, so the numbers are the scorer's, not those of a heap
  left over from training, Beam and TFT in the benchmark process. TensorFlow runs with
  ``intra_op_threads`` per op (1, as ``bench serving`` runs the model server: these ops
  are small, and splitting them over both cores costs more than it gains; the thread
  comparison is in docs/benchmarks.md).
  """
  import gc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if intra_op_threads:
    try:
      tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    except RuntimeError:
      pass   # TensorFlow already initialized in this process (e.g. under pytest)
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  from melody_testing import synthetic_batches  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  model = model_lib.RankingModel(config_lib.ModelConfig(), config_lib.TrainConfig())
  batch = synthetic_batches.synthetic_batch(max(sizes), seed=seed)
  model(batch, training=False)
  fn = tf.function(model.score_candidates,
                   input_signature=[model_lib.listener_input_spec(1),
                                    model_lib.candidate_input_spec(None)])
  listener = {k: tf.constant(np.asarray(batch[k])[:1]) for k in model_lib.LISTENER_FEATURES}
  if freeze:
    gc.collect()
    gc.freeze()
  out = {}
  for n in sizes:
    cand = {k: tf.constant(np.asarray(batch[k])[:n]) for k in model_lib.CANDIDATE_FEATURES}
    for _ in range(10):
      fn(listener, cand)["interest"].numpy()
    samples = []
    for _ in range(reps):
      t0 = time.perf_counter()
      fn(listener, cand)["interest"].numpy()
      samples.append(time.perf_counter() - t0)
    out[str(n)] = common.percentiles_ms(samples)
  return out


def scoring_latency(sizes=(100, 500, 1000), reps: int = 300,
                    seed: int = 7) -> Dict[str, Dict[str, float]]:
  """In-process scoring latency of the default config, measured in a fresh child process
  (see :func:`_latency_job`)."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import multiprocessing  # pylint: disable=g-import-not-at-top
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
    out = pool.submit(_latency_job, tuple(sizes), reps, seed).result()
  for n, stats in out.items():
    common.log("ranking",
               f"score {n} candidates: p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms")
  return out
