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


def pytest_collection_modifyitems(items):
  """Runs the modules that hold slow tests first, each module's tests in their order.

  Under pytest-xdist (``make test``) each module is one unit of work handed out in this
  order, so the long end-to-end modules start at once instead of ending the run on one
  worker while the other idles.
  """
  slow_modules = {item.nodeid.split("::")[0] for item in items
                  if item.get_closest_marker("slow") is not None}
  items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)


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


# ------------------------------------------------- the session's tiny ranker export
# Exporting the ranker (build the serving module, trace, save, write warmup records) is
# the dearest step of the serving and online tests, so the modules that only need an
# exported version share this one and copy or extend it instead of exporting their own.
RANKER_N_MAX = 200
RANKER_WARMUP_RECORDS = 14


@pytest.fixture(scope="session")
def ranker_export(tmp_path_factory):
  """Version 1 of the tiny ranker, exported under ``BASE`` with the server configs.

  Returns:
    ``{"paths": prepare_world paths, "model": the RankingModel, "base": BASE,
    "v1": BASE/1}``. Tests may add versions to ``BASE`` but must not change ``BASE/1``.
  """
  # pylint: disable=import-outside-toplevel
  from bench import serving as bench_serving
  from serving import export
  # pylint: enable=import-outside-toplevel
  paths = bench_serving.prepare_world(str(tmp_path_factory.getbasetemp() / "serving_world"))
  model = bench_serving.build_model()
  base = str(tmp_path_factory.mktemp("export") / "models" / "melody")
  v1 = export.export_serving_model(model, paths["tft"], paths["tracks"], base,
                                   n_max=RANKER_N_MAX, num_warmup_records=RANKER_WARMUP_RECORDS)
  return {"paths": paths, "model": model, "base": base, "v1": v1}
