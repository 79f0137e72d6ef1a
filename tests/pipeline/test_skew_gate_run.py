"""The skew gate on the real ``melody pipeline run --serving-log FILE`` path: a skewed
request log stops the run before TFX starts, naming the feature and the distance, and
leaves the pushed model and earlier artifacts as they were; a log like the training
data lets the run go on to TFX.

The run goes through the CLI as an operator types it. ``local_runner.execute`` (the
call that hands the compiled pipeline to LocalDagRunner) is replaced by a recorder, so
"TFX started" is observed directly and the test stays seconds long.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from features import example_io
from melody_cli import main as melody_main
from melody_testing import toy_events
from pipeline import local_runner
from pipeline import runs
from serving import request_log

N_TRACKS = 200


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A flat dataset (``examples/`` train and eval shards, ``tracks.parquet``)."""
  root = tmp_path_factory.mktemp("skew_run") / "data"
  events, tracks = toy_events.toy_events(n_users=40, events_per_user=15, n_tracks=N_TRACKS,
                                         seed=5)
  # Known durations and popularities, so the catalogue lookup of the gate and the
  # examples agree on every track.
  tracks["duration_s"] = tracks["duration_s"].fillna(240.0)
  tracks["popularity"] = tracks["popularity"].fillna(2.0)
  os.makedirs(root / "examples")
  tracks.to_parquet(root / "tracks.parquet")
  records = example_io.events_to_examples(events, tracks)
  cut = len(records) * 9 // 10
  for split, part in (("train", records[:cut]), ("eval", records[cut:])):
    example_io.write_shard(example_io.shard_path(str(root / "examples"), split, 0, 1), [part])
  return root, records[:cut]


def _write_log(path, records, activity=None) -> str:
  """One logged ``rank`` request per training example, as the serving path fills them;
  ``activity`` replaces every request's activity (a serving path filling it wrongly)."""
  log = request_log.RequestLog(str(path))
  for i, record in enumerate(records):
    f = tf.train.Example.FromString(record).features.feature
    values = {k: f[k].bytes_list.value[0] for k in
              ("user_segment", "context_activity", "context_surface", "cand_track_id")}
    log.write("melody", 1, "rank", {
        "user_id": np.array([f"u{i}".encode()], object),
        "user_segment": np.array([values["user_segment"]], object),
        "context_activity": np.array([activity or values["context_activity"]], object),
        "context_surface": np.array([values["context_surface"]], object),
        "candidate_ids": np.array([[values["cand_track_id"]]], object)})
  log.close()
  return str(path)


@pytest.fixture
def tfx_calls(monkeypatch):
  calls = []
  monkeypatch.setattr(local_runner, "execute", lambda p, run_id: calls.append((p, run_id)))
  return calls


def _earlier_work(workdir):
  """A pushed version and an earlier run's artifact the gate must leave alone."""
  pushed = workdir / "serving_model" / "1"
  pushed.mkdir(parents=True)
  (pushed / "saved_model.pb").write_bytes(b"pushed")
  artifact = workdir / "pipeline_root" / "Trainer" / "model" / "7"
  artifact.mkdir(parents=True)
  (artifact / "marker").write_text("earlier run")
  return {p: p.read_bytes() for p in (pushed / "saved_model.pb", artifact / "marker")}


def _run(data_root, workdir, log):
  return melody_main.main(["pipeline", "run", "--data", str(data_root), "--workdir",
                           str(workdir), "--steps", "5", "--serving-log", log])


def test_a_skewed_serving_log_stops_the_run_before_tfx(data, tmp_path, tfx_calls, capsys):
  data_root, records = data
  workdir = tmp_path / "work"
  before = _earlier_work(workdir)
  log = _write_log(tmp_path / "requests.jsonl", records, activity=b"focus")
  assert _run(data_root, workdir, log) == 1
  err = capsys.readouterr().err
  assert "serving requests skewed from examples" in err
  # No training example is "focus": every request's share of it is the distance.
  assert "feature 'context_activity': L-infinity distance 1.0000 > 0.3" in err
  assert "user_segment" not in err and "cand_duration_s" not in err
  assert not tfx_calls
  assert {p: p.read_bytes() for p in before} == before
  assert sorted(os.listdir(workdir / "serving_model")) == ["1"]
  # The stopped run is on record with the gate's message as its error.
  history = runs.list_runs(str(workdir / "metadata" / "metadata.sqlite"),
                           runs_dir=str(workdir / "runs"))
  assert [r.state for r in history] == [runs.FAILED]
  assert "context_activity" in history[0].error
  assert not history[0].components


def test_a_serving_log_like_training_lets_the_run_start(data, tmp_path, tfx_calls, capsys):
  data_root, records = data
  workdir = tmp_path / "work"
  log = _write_log(tmp_path / "requests.jsonl", records)
  assert _run(data_root, workdir, log) == 0
  assert "skewed" not in capsys.readouterr().err
  assert len(tfx_calls) == 1
  pipeline, run_id = tfx_calls[0]
  assert run_id
  assert [c.id for c in pipeline.components][0] == "ImportExampleGen"
  assert "Pusher" in [c.id for c in pipeline.components]


def test_a_missing_serving_log_is_named(data, tmp_path, tfx_calls, capsys):
  data_root, _ = data
  assert _run(data_root, tmp_path / "work", str(tmp_path / "absent.jsonl")) == 2
  assert "no serving request log at" in capsys.readouterr().err
  assert not tfx_calls
