"""Shared pytest setup: Keras 2 before TensorFlow, markers, and the real-data location."""

import os
import sys

import keras_guard

keras_guard.ensure_legacy_keras()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: end-to-end or long tests (run by make test and CI)")
  config.addinivalue_line("markers", "realdata: needs the shared datasets under MELODY_DATA_DIR")


def real_data_dir() -> str:
  return os.path.abspath(os.environ.get(
      "MELODY_DATA_DIR", os.path.join(REPO, "..", "shared", "data")))


@pytest.fixture
def shared_data():
  """Path of the shared real datasets; skips visibly when they are absent."""
  path = real_data_dir()
  if not os.path.isdir(path):
    pytest.skip(f"real datasets not found at {path} (set MELODY_DATA_DIR)")
  return path


@pytest.fixture
def fixtures_dir():
  return FIXTURES
