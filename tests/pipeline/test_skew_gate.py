"""The training/serving skew gate (pipeline.skew_gate): logged serving requests that look
like the training span pass; a deliberately skewed log stops the run, naming the feature
and the distance."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipeline import configs
from pipeline import schema_tools
from pipeline import skew_gate
from serving import request_log

SCHEMA = os.path.join(configs.CURATED_SCHEMA_DIR, "schema.pbtxt")
N_TRACKS = 200


def _catalog(path) -> pd.DataFrame:
  rng = np.random.default_rng(0)
  tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(N_TRACKS)],
                         "duration_s": np.where(np.arange(N_TRACKS) < 150,
                                                rng.normal(210, 20, N_TRACKS),
                                                rng.normal(600, 30, N_TRACKS)),
                         "popularity": rng.uniform(0, 6, N_TRACKS)})
  tracks.to_parquet(path)
  return tracks


def _span(folder, tracks: pd.DataFrame, n: int = 600) -> str:
  """A span of examples with the watched features: common tracks, a mixed context."""
  rng = np.random.default_rng(1)
  os.makedirs(folder)
  path = os.path.join(folder, "train-00000-of-00001.tfrecord.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for i in range(n):
      track = tracks.iloc[int(rng.integers(150))]
      f = {"user_segment": [("free", "paid")[i % 2].encode()],
           "context_activity": [("commute", "focus", "explore")[i % 3].encode()],
           "context_surface": [("home", "search")[i % 2].encode()]}
      feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
                 for k, v in f.items()}
      feature["cand_duration_s"] = tf.train.Feature(
          float_list=tf.train.FloatList(value=[track.duration_s]))
      feature["cand_popularity"] = tf.train.Feature(
          float_list=tf.train.FloatList(value=[track.popularity]))
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())
  return folder


def _log(path, n: int, activity=None, tracks=(0, 150), seed: int = 2) -> list:
  rng = np.random.default_rng(seed)
  log = request_log.RequestLog(str(path))
  for i in range(n):
    log.write("melody", 1, "rank", {
        "user_id": np.array([f"u{i}".encode()], object),
        "user_segment": np.array([("free", "paid")[i % 2].encode()], object),
        "context_activity": np.array([(activity or ("commute", "focus", "explore")[i % 3])
                                      .encode()], object),
        "context_surface": np.array([("home", "search")[i % 2].encode()], object),
        "candidate_ids": np.array([[f"t{t}".encode() for t in
                                    rng.integers(*tracks, size=10)]], object)})
  log.close()
  return request_log.read(str(path))


@pytest.fixture(scope="module")
def span(tmp_path_factory):
  root = tmp_path_factory.mktemp("skew")
  tracks = _catalog(root / "tracks.parquet")
  return root, _span(str(root / "examples" / "span-20240102"), tracks)


def test_skew_thresholds_live_in_the_schema():
  by_name = {f.name: f for f in schema_tools.read(SCHEMA).feature}
  for name, threshold in schema_tools.LINF_SKEW.items():
    assert by_name[name].skew_comparator.infinity_norm.threshold == threshold, name
  for name, threshold in schema_tools.JS_SKEW.items():
    assert by_name[name].skew_comparator.jensen_shannon_divergence.threshold == threshold
  assert set(skew_gate.watched_features(schema_tools.read(SCHEMA))) == (
      set(schema_tools.LINF_SKEW) | set(schema_tools.JS_SKEW))


def test_requests_like_the_training_span_pass(span):
  root, folder = span
  requests = _log(root / "plain.jsonl", 90)
  skew_gate.check_serving_log(SCHEMA, folder, requests, str(root / "tracks.parquet"))


def test_a_skewed_log_names_the_feature_and_the_distance(span):
  root, folder = span
  # Every request logged as "workout" (a serving path that fills the activity wrongly),
  # and candidates from the long tracks only.
  requests = _log(root / "skewed.jsonl", 90, activity="workout", tracks=(150, N_TRACKS))
  with pytest.raises(skew_gate.SkewError) as e:
    skew_gate.check_serving_log(SCHEMA, folder, requests, str(root / "tracks.parquet"))
  message = str(e.value)
  assert "span-20240102" in message
  assert "feature 'context_activity': L-infinity distance 1.0000 > 0.3" in message
  assert "feature 'cand_duration_s': Jensen-Shannon divergence" in message
  assert "user_segment" not in message and "context_surface" not in message


def test_serving_requests_become_the_watched_features():
  catalog = pd.DataFrame({"duration_s": [100.0, 200.0], "popularity": [1.0, 2.0]},
                         index=pd.Index(["a", "b"], name="track_id"))
  requests = [{"inputs": {"user_segment": ["paid"], "context_activity": ["focus"],
                          "candidate_ids": [["a", "b", "zz", ""]]}},
              {"inputs": {"x": [1.0]}}]   # another signature's request: no listener
  frames = skew_gate.serving_frame(
      requests, ["user_segment", "context_activity", "cand_duration_s"], catalog)
  assert frames["listener"].to_dict("list") == {"user_segment": ["paid"],
                                                "context_activity": ["focus"]}
  assert frames["candidate"]["cand_duration_s"].tolist() == [100.0, 200.0]
