"""The serving benchmark's profile of one request: p50 of the cumulative stages of the
``rank`` graph in process, and of the (de)serialization steps a gRPC call adds.
"""

import time
from typing import Dict, List

from bench import serving_load


def _p50_ms(fn, repeat: int = 40) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  for _ in range(3):
    fn()
  times = []
  for _ in range(repeat):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times) * 1e3)


def profile(paths: Dict[str, object], n: int = 500) -> List[Dict[str, object]]:
  """p50 of cumulative stages of ``rank`` in process, and of the gRPC (de)serialization
  steps, for one listener and ``n`` candidates: what dominates a request.

  Args:
    paths: the exported world, with the built ranker under ``"model"``.
    n: candidates in the request.

  Returns:
    ``[{"stage": name, "p50_ms": ms}, ...]`` in stage order.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from serving import client  # pylint: disable=g-import-not-at-top
  from serving import request_schema  # pylint: disable=g-import-not-at-top
  from serving import signatures  # pylint: disable=g-import-not-at-top
  from serving import tensors  # pylint: disable=g-import-not-at-top
  module = signatures.RankerServingModule(paths["model"], paths["tft"], paths["tracks"],
                                          n_max=max(serving_load.SIZES))
  inputs = serving_load.rank_requests(paths, n, 1)[0]
  t = {k: tf.constant(v) for k, v in inputs.items()}

  def tft_layer(x):
    raw = dict(request_schema.neutral_raw_tf(tf.shape(x["user_id"])[0]))
    raw.update({k: x[k] for k in request_schema.LISTENER_INPUTS})
    return module.tft_layer(raw)

  def scored(x):
    listener = module._listener(x)  # pylint: disable=protected-access
    rows = module.catalog_rows.lookup(x["candidate_ids"])
    cands = {k: tf.gather(v, rows) for k, v in module.candidate_table.items()}
    return module._score(listener["transformed"], cands)  # pylint: disable=protected-access

  def mixing_only(x):
    scores = tf.random.stateless_uniform(tf.shape(x["candidate_ids"]), [1, 2])
    return module._py.mixing({  # pylint: disable=protected-access
        "scores": scores,
        "is_promo": x["candidate_is_promo"],
        "artist_ids": tf.zeros_like(x["candidate_is_promo"])
    })

  # pylint: disable=protected-access
  stages = [
      ("TFT layer (listener)", tft_layer),
      ("+ listener encoder", lambda x: module.model.encode_listener(
          module._listener(x)["transformed"], training=False)),
      ("+ candidate table + scorer", scored),
      ("mixing alone", mixing_only),
      ("full rank graph", module._rank)
  ]
  # pylint: enable=protected-access
  out = []
  for name, f in stages:
    fn = tf.function(f, autograph=False, input_signature=[request_schema.rank_input_spec()])
    out.append({"stage": name, "p50_ms": _p50_ms(lambda fn=fn: fn(t))})
  fn = module.signatures()["rank"]
  outputs = {k: v.numpy() for k, v in fn(**t).items()}
  request = client.predict_request("melody", "rank", inputs)
  specs = {k: tensors.InputSpec(k, v.dtype.as_datatype_enum, tuple(v.shape.as_list()))
           for k, v in request_schema.rank_input_spec().items()}
  protos = {k: tensors.to_tensor_proto(v) for k, v in outputs.items()}
  for name, step in (
      ("client: build PredictRequest", lambda: client.predict_request("melody", "rank",
                                                                      inputs)),
      ("server: decode + check inputs", lambda: tensors.decode_inputs(request.inputs, specs,
                                                                      "rank")),
      ("server: encode outputs", lambda: {k: tensors.to_tensor_proto(v)
                                          for k, v in outputs.items()}),
      ("client: decode outputs", lambda: {k: tensors.from_tensor_proto(v)
                                          for k, v in protos.items()})):
    out.append({"stage": name, "p50_ms": _p50_ms(step)})
  for row in out:
    print(f"[bench] profile N={n}: {row['stage']:<32} {row['p50_ms']:7.3f} ms", flush=True)
  return out
