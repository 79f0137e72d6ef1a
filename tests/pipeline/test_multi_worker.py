"""The Trainer under ``MultiWorkerMirroredStrategy``: two workers on localhost, started
with ``TF_CONFIG`` as Kubeflow or Vertex would, train the same steps as one worker on
the same global batches and reach the same loss.

The workers are this file run as a script (``python test_multi_worker.py OUT``), so each
process configures its collectives before any other TensorFlow op.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

STEPS, GLOBAL_BATCH, ROWS = 6, 32, 192
# Float sums are all-reduced in another order than one worker's batch sums; Adam's
# first steps amplify that rounding a little. Losses agree to well under 1e-3.
TOLERANCE = 1e-3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _worker(out: str) -> None:
  """Trains the small model with the Trainer's pieces and writes its losses to ``out``."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pipeline import distribute  # pylint: disable=g-import-not-at-top
  strategy = distribute.strategy_from_env()   # before any other TensorFlow op
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from melody_testing import synthetic_batches  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  # One task and no id dropout: a smaller graph to trace, and no random draws that
  # would differ between one and two workers.
  model_config = config_lib.ModelConfig(d_model=16, num_layers=1, num_heads=2,
                                        expert_units=(16,), tower_units=(16,),
                                        tasks=("interest",), user_id_dropout=0.0)
  train_config = config_lib.TrainConfig(batch_size=GLOBAL_BATCH, seed=4, learning_rate=3e-3)
  model = trainer.build_model(model_config, train_config, strategy)
  arrays = synthetic_batches.synthetic_batch(ROWS, seed=2)
  data = tf.data.Dataset.from_tensor_slices(arrays)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  train_ds = data.repeat().batch(GLOBAL_BATCH, drop_remainder=True).with_options(options)
  metrics = trainer.train(model, train_ds, None, STEPS, 0,
                          os.path.join(os.path.dirname(out), "run"), GLOBAL_BATCH,
                          log_every=STEPS // 2)
  with open(out, "w") as f:
    json.dump({"loss": metrics["loss"],
               "steps": metrics["steps"], "replicas": strategy.num_replicas_in_sync
               if strategy else 1, "finite": bool(np.isfinite(metrics["loss"]))}, f)


def _start(out, tf_config=None):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), CUDA_VISIBLE_DEVICES="-1",
             TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_CONFIG", None)
  if tf_config is not None:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(out)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc, timeout=900):   # tracing is slow when the shared host is loaded
  try:
    output, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    output, _ = proc.communicate()
    raise AssertionError(f"worker timed out:\n{output[-3000:]}")
  assert proc.returncode == 0, output[-3000:]


@pytest.mark.slow   # three processes each trace a training step: ~40 s on 2 idle cores
def test_two_workers_match_one_worker(tmp_path):
  workers = [f"localhost:{_free_port()}" for _ in range(2)]
  procs = []
  for i in range(2):
    (tmp_path / f"w{i}").mkdir()
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
    procs.append(_start(tmp_path / f"w{i}" / "out.json", config))
  (tmp_path / "single").mkdir()
  procs.append(_start(tmp_path / "single" / "out.json"))
  for proc in procs:
    _wait(proc)
  single = json.loads((tmp_path / "single" / "out.json").read_text())
  chief = json.loads((tmp_path / "w0" / "out.json").read_text())
  other = json.loads((tmp_path / "w1" / "out.json").read_text())
  assert (single["replicas"], chief["replicas"], other["replicas"]) == (1, 2, 2)
  assert single["steps"] == chief["steps"] == STEPS
  # The mean loss of the last epoch (steps 4-6): each replica's share of the global
  # batch's mean, summed over the replicas.
  assert chief["loss"] == pytest.approx(single["loss"], rel=TOLERANCE)
  assert other["loss"] == pytest.approx(chief["loss"], rel=1e-6)
  # Only the chief's checkpoints stay where the run asked; the other worker's are scratch.
  assert (tmp_path / "w0" / "run" / "checkpoints").is_dir()
  assert (tmp_path / "w1" / "run" / ".worker-1" / "checkpoints").is_dir()
  assert not (tmp_path / "w1" / "run" / "checkpoints").exists()


if __name__ == "__main__":
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  _worker(sys.argv[1])
