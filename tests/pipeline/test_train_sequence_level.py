"""``melody train --sequence-level``: the Trainer trains the causal model on sequence
examples of toy events and exports a model the serving path scores like the trained one."""

import argparse
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from features import example_io
from melody_testing import toy_events
from pipeline import cli as pipeline_cli
from pipeline import sequence_input
from pipeline import train_local
from pipeline import trainer


def _write(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


def test_the_flag_reaches_the_trainer_config():
  parser = argparse.ArgumentParser()
  pipeline_cli.register(parser.add_subparsers(dest="cmd"))
  args = parser.parse_args(["train", "--data", "d", "--sequence-level"])
  assert args.sequence_level
  model_config, train_config = trainer.configs_from_custom(
      {"model_config": "mmoe", "sequence_level": True})
  assert train_config.sequence_level and model_config.sequence_model == "causal"
  model_config, train_config = trainer.configs_from_custom({"model_config": "mmoe"})
  assert not train_config.sequence_level and model_config.sequence_model == "transformer"


@pytest.mark.slow   # TFT over Beam, one training-step trace and the export: ~1-2 min
def test_melody_train_sequence_level_trains_exactly_the_steps(tmp_path):
  events, tracks = toy_events.toy_events(n_users=8, events_per_user=12, n_tracks=40)
  records = example_io.events_to_examples(events, tracks)
  data = tmp_path / "data"
  _write(str(data / "examples" / "train-00000-of-00001.tfrecord.gz"), records[:72])
  _write(str(data / "examples" / "eval-00000-of-00001.tfrecord.gz"), records[72:])
  tracks.to_parquet(str(data / "tracks.parquet"))
  out = tmp_path / "out"
  args = argparse.Namespace(data=str(data), out=str(out), steps=5, batch_size=100,
                            config="mmoe", seed=3, sequence_level=True)
  assert train_local.main(args) == 0
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["steps"] == 5 and np.isfinite(metrics["loss"])
  assert np.isfinite(metrics["eval_loss"])   # evaluated per impression
  assert (out / "serving_model" / "1" / "saved_model.pb").exists()

  # The chunks cover every training impression once: 6 listeners of 12 plays.
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  spec = tft.TFTransformOutput(str(out / "transform")).transformed_feature_spec()
  files = sorted(tf.io.gfile.glob(str(out / "transform" / "transformed" / "train-*")))
  ds, per_step = sequence_input.sequence_dataset(files, spec, 100, context=10)
  assert per_step == pytest.approx(12.0 * 2)   # 2 chunks a step, 12 impressions each
  batch = next(iter(ds))
  assert batch["step_weight"].shape == (2, 50)
