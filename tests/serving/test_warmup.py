"""Warmup covers every signature: the records ``serving.warmup`` builds, and the server
replaying them so that the first live call of each signature builds no function
(``melody_testing.function_probe`` counts the functions a call instantiates).
"""

import functools
import os
import shutil

import numpy as np
import pytest

from features import example_io
from melody_testing import function_probe
from melody_testing import toy_events
from melody_testing import toy_saved_model
from serving import client
from serving import model_config
from serving import request_schema
from serving import server as server_lib
from serving import tensors
from serving import warmup

RANK = tuple(request_schema.rank_input_spec())
# The signatures Melody exports with an intent module, by their input names.
MELODY_SIGNATURES = {
    "rank": RANK, "serving_default": RANK,
    "recommend": tuple(request_schema.recommend_input_spec(True)),
    "intent_candidates": ("text", "k"),
    "score_examples": (warmup.EXAMPLES_INPUT,), "transform_features": (warmup.EXAMPLES_INPUT,),
}
# One input dict per toy signature (toy_saved_model.SIGNATURES).
TOY_INPUTS = {
    "serving_default": toy_saved_model.score_inputs(2, seed=3),
    "tag": {"words": np.asarray([b"a", b"bc"], dtype=object)},
    "fixed": {"m": np.ones((2, 2), np.float32)},
    "ragged": {"v": np.ones((2, 3), np.float32)},
    "explode": {"flag": np.zeros(2, np.int32)},
}


@pytest.fixture(scope="module")
def records():
  events, tracks = toy_events.toy_events(n_users=4, events_per_user=6)
  return example_io.events_to_examples(events, tracks)


def _signatures(requests):
  return [r.model_spec.signature_name for r in requests]


def test_every_signature_gets_records_each_round(records):
  names = sorted(MELODY_SIGNATURES)
  requests = warmup.warmup_requests(records, "melody", 60, MELODY_SIGNATURES,
                                    num_records=3 * len(names), max_batch_size=5)
  assert _signatures(requests) == names * 3
  batches = {name: set() for name in names}
  for request in requests:
    name = request.model_spec.signature_name
    arrays = {k: tensors.from_tensor_proto(v) for k, v in request.inputs.items()}
    assert set(arrays) == set(MELODY_SIGNATURES[name]), name
    if name in ("rank", "serving_default"):
      request_schema.validate_rank(arrays, 60)
      batches[name].add(len(arrays["candidate_ids"]))
    elif name in ("score_examples", "transform_features"):
      assert set(arrays["examples"]) <= set(records)
      batches[name].add(len(arrays["examples"]))
    elif name == "recommend":
      assert set(arrays["request_text"]) <= {b""} | {t.encode() for t in warmup.SAMPLE_TEXTS}
  # Batchable signatures are warmed up alone, in pairs and at the batcher's largest batch.
  assert batches["rank"] == batches["score_examples"] == {1, 2, 5}


def test_a_signature_without_a_known_request_fails_the_export(records):
  with pytest.raises(ValueError, match=r"no warmup request .*\['query'\]"):
    warmup.warmup_requests(records, "melody", 60, {**MELODY_SIGNATURES, "new": ("query",)})
  with pytest.raises(ValueError, match=r"\[6, 1000\]"):
    warmup.warmup_requests(records, "melody", 60, MELODY_SIGNATURES, num_records=5)
  with pytest.raises(ValueError, match="1000"):
    warmup.warmup_requests(records, "melody", 60, MELODY_SIGNATURES, num_records=1001)


def _publish_toy(base, version, with_warmup):
  """Toy ``version`` under ``base``; its warmup file calls every signature twice."""
  staging = toy_saved_model.write_version(base + "-staging", version, scale=float(version))
  if with_warmup:
    requests = [client.predict_request("toy", name, inputs)
                for _ in range(2) for name, inputs in TOY_INPUTS.items()]
    warmup.write_warmup(staging, requests)
  os.makedirs(base, exist_ok=True)
  os.rename(staging, os.path.join(base, str(version)))
  shutil.rmtree(base + "-staging")


def test_the_first_call_of_every_signature_after_load_builds_no_function(tmp_path):
  assert set(TOY_INPUTS) == set(toy_saved_model.SIGNATURES)
  warm, cold = str(tmp_path / "warm"), str(tmp_path / "cold")
  _publish_toy(warm, 1, with_warmup=True)
  _publish_toy(cold, 1, with_warmup=False)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0,
                                     enable_batching=True)
  entries = [model_config.ModelEntry("warm", warm), model_config.ModelEntry("cold", cold)]
  with server_lib.ModelServer(entries, options) as server, \
      client.ModelClient(server.target, timeout=60) as c:
    assert server.registry.get_sample_value("melody_serving_warmup_requests_total",
                                            {"model": "warm"}) == 2 * len(TOY_INPUTS)
    built = function_probe.functions_built_by
    for name, inputs in TOY_INPUTS.items():
      assert built(functools.partial(c.predict, "warm", name, inputs)) == 0, name
    # The probe sees a cold signature: the version without warmup builds on first call.
    assert built(lambda: c.predict("cold", "tag", TOY_INPUTS["tag"])) >= 1
    assert built(lambda: c.predict("cold", "tag", TOY_INPUTS["tag"])) == 0
