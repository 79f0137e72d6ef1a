"""The live loop's model copies: another run's newest push adopted as the first stable
under its own number, whole or not at all."""

import os

import pytest

from simulation import live_pipeline


def _push(serving_dir, version, payload):
  path = os.path.join(serving_dir, str(version))
  os.makedirs(os.path.join(path, "variables"))
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(payload)


def test_the_newest_push_of_another_run_is_adopted_under_its_number(tmp_path):
  demo = str(tmp_path / "demo" / "serving_model")
  for version in (9, 1700000100, 1700000020):
    _push(demo, version, str(version).encode())
  live = str(tmp_path / "live" / "serving_model")
  assert live_pipeline.adopt_version(demo, live) == 1700000100
  assert os.listdir(live) == ["1700000100"]
  with open(os.path.join(live, "1700000100", "saved_model.pb"), "rb") as f:
    assert f.read() == b"1700000100"
  assert os.path.isdir(os.path.join(live, "1700000100", "variables"))
  assert live_pipeline.versions(live) == [1700000100]


def test_adopting_from_a_run_that_pushed_nothing_fails(tmp_path):
  os.makedirs(tmp_path / "empty")
  with pytest.raises(ValueError, match="no pushed version"):
    live_pipeline.adopt_version(str(tmp_path / "empty"), str(tmp_path / "live"))
  assert not os.path.exists(tmp_path / "live")
