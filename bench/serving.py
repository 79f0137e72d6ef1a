"""Serving benchmark (``python -m bench.run serving``): gRPC vs in-process latency.

Placeholder helpers first (a small simulated world, its TFT output and a ranker), shared
with ``tests/serving``; the benchmark itself follows.
"""

import os
from typing import Dict, Optional

import serving  # noqa: F401  (Keras 2 guard before TensorFlow)

SEED = 7


def prepare_world(root: str, users: int = 40, days: int = 2, tracks: int = 300,
                  seed: int = SEED) -> Dict[str, str]:
  """A ``melody data generate`` directory and its TFT output under ``root`` (reused when
  already complete).

  Returns:
    ``{"data": DIR, "tracks": tracks.parquet, "examples": glob, "tft": DIR}``.
  """
  from features import generate  # pylint: disable=g-import-not-at-top
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  data, tft_dir = os.path.join(root, "data"), os.path.join(root, "tft")
  done = os.path.join(root, "DONE")
  paths = {"data": data, "tracks": os.path.join(data, "tracks.parquet"),
           "examples": os.path.join(data, "examples", "*.tfrecord.gz"), "tft": tft_dir}
  if not os.path.exists(done):
    generate.run(users=users, days=days, out=data, seed=seed, shards=1, tracks=tracks)
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
  from ranking import testing  # pylint: disable=g-import-not-at-top
  config = config or config_lib.ModelConfig(
      d_model=16, num_layers=1, num_heads=2, expert_units=(16,), tower_units=(8,),
      num_experts=2)
  tf.keras.utils.set_random_seed(seed)
  model = model_lib.RankingModel(config)
  model(testing.synthetic_batch(2), training=False)
  return model


def main(argv: Optional[list] = None) -> int:
  raise NotImplementedError("serving benchmark: coming")
