"""The server counts request texts the intent model cut (``text_cut`` outputs) in its
metrics, for client calls only (warmup replays are not counted)."""

import os
import re
import urllib.request

import grpc
import numpy as np
import tensorflow as tf

from serving import client
from serving import model_config
from serving import server as server_lib
from serving import warmup
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

WIDTH = 8


class CuttingIntent(tf.Module):
  """``intent_candidates``: a text longer than WIDTH bytes is flagged as cut."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def intent_candidates(self, text):
    return {"track_ids": tf.strings.substr(text, 0, 3),
            "text_cut": tf.cast(tf.strings.length(text) > WIDTH, tf.int32)}


def _metric(text: str) -> float:
  found = re.search(r'melody_serving_request_text_cut_total\{model="intent",'
                    r'signature="intent_candidates"\} ([0-9.]+)', text)
  return float(found.group(1)) if found else 0.0


def test_cut_texts_are_counted_per_model_and_signature(tmp_path):
  base = tmp_path / "intent"
  module = CuttingIntent()
  version = str(base / "1")
  tf.saved_model.save(module, version,
                      signatures={"intent_candidates": module.intent_candidates})
  # A warmup record with a long text: replayed at load, never counted.
  os.makedirs(os.path.join(version, "assets.extra"))
  log = prediction_log_pb2.PredictionLog()
  log.predict_log.request.CopyFrom(client.predict_request(
      "intent", "intent_candidates", {"text": np.array([b"a long warmup text"], object)}))
  with tf.io.TFRecordWriter(os.path.join(version, warmup.WARMUP_FILE)) as writer:
    writer.write(log.SerializeToString())
  config = model_config.write_model_config(
      str(tmp_path / "models.config"), [model_config.ModelEntry("intent", str(base))])
  server = server_lib.ModelServer.from_config_file(config, server_lib.ServerOptions(
      port=0, metrics_port=0, file_system_poll_wait_seconds=0)).start()
  try:
    url = f"http://127.0.0.1:{server.metrics_port}/monitoring/prometheus/metrics"
    with grpc.insecure_channel(server.target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      texts = np.array([b"calm", b"calm piano for a rainy commute", b"rain", b"upbeat run mix"],
                       object)
      request = client.predict_request("intent", "intent_candidates", {"text": texts})
      stub.Predict(request, timeout=60)
      with urllib.request.urlopen(url, timeout=30) as page:
        assert _metric(page.read().decode()) == 2.0
      # Filtering the flag out of the answer still counts the cut.
      request.output_filter.append("track_ids")
      response = stub.Predict(request, timeout=60)
      assert set(response.outputs) == {"track_ids"}
      with urllib.request.urlopen(url, timeout=30) as page:
        assert _metric(page.read().decode()) == 4.0
  finally:
    server.stop(grace=1)
