"""``melody export --policy``: a bad policy stops the export before anything is written,
and the warmup file can call the ``policy`` signature."""

import argparse
import json
import os

import numpy as np

from serving import export_cli
from serving import request_schema
from serving import warmup


def _parser():
  parser = argparse.ArgumentParser()
  export_cli.register(parser.add_subparsers(dest="command"))
  return parser


def test_a_rejected_policy_never_reaches_a_model(tmp_path, capsys):
  bad = tmp_path / "policy.json"
  bad.write_text(json.dumps({"schema_version": 1, "version": "p-1"}))
  base = tmp_path / "models" / "melody"
  args = _parser().parse_args(["export", "--train-out", str(tmp_path / "train"), "--data",
                               str(tmp_path / "data"), "--base-dir", str(base),
                               "--policy", str(bad)])
  assert args.handler(args) == 2
  err = capsys.readouterr().err
  assert f"melody export: error: {bad}: weights: is missing" in err
  assert not os.path.exists(base)


def test_warmup_builds_policy_requests():
  names = set(request_schema.policy_input_spec())
  assert warmup.request_kind(names) == "policy"
  parsed = {"user_id": np.array([b"u1"], object)}
  inputs = warmup._request_inputs(  # pylint: disable=protected-access
      "policy", parsed, [], names, 0, 3, 0, None, overrides=False)
  assert list(inputs) == [request_schema.POLICY_INPUT]
  assert inputs[request_schema.POLICY_INPUT].shape == (3,)
