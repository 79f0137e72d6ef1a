"""Shared pytest setup: Keras 2 before TensorFlow, markers, and the real-data location."""

import os
import shutil
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


# The dearest modules of `make test`, dearest first (worker-seconds on a clean clone).
# Under pytest-xdist each module is one unit of work, handed out in collection order:
# starting the longest first lets the two workers finish close together. A module not
# named here follows them, the modules with slow tests first.
LONGEST_MODULES = (
    "tests/e2e/test_scheduled_pipeline.py",
    "tests/simulation/test_live_loop.py",
    "tests/e2e/test_real_data_pipeline.py",
    "tests/e2e/test_play_only_pipeline.py",
    "tests/e2e/test_kkbox_pipeline.py",
    "tests/serving/test_export.py",
    "tests/pipeline/test_trainer.py",
    "tests/ranking/test_intent_composed.py",
    "tests/ranking/test_intent_training.py",
    "tests/pipeline/test_multi_worker.py",
    "tests/simulation/test_calibration.py",
    "tests/serving/test_serving_e2e.py",
)


def pytest_collection_modifyitems(items):
  """Orders the tests by module: ``LONGEST_MODULES`` first, in that order, then the
  modules that hold slow tests, then the rest; each module's tests in their order."""
  slow_modules = {item.nodeid.split("::")[0] for item in items
                  if item.get_closest_marker("slow") is not None}

  def key(item):
    module = item.nodeid.split("::")[0]
    rank = LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)
    return rank, module not in slow_modules

  items.sort(key=key)


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
# The world and the export are built once per session, by the first xdist worker that
# needs them (``melody_testing.session_share``); each worker serves its own copy.
RANKER_N_MAX = 200
RANKER_WARMUP_RECORDS = 14


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory):
  """``bench.serving.prepare_world``'s small simulated world and its TFT output, shared
  read-only by every worker of the session."""
  # pylint: disable=import-outside-toplevel
  from bench import serving as bench_serving
  from melody_testing import session_share
  # pylint: enable=import-outside-toplevel
  return session_share.build_once(tmp_path_factory, "serving_world",
                                  bench_serving.prepare_world)


def _export_ranker_once(model, paths):
  """A builder for ``session_share``: version 1 under ``DIR/melody``; returns its path."""
  from serving import export  # pylint: disable=import-outside-toplevel

  def build(root):
    done = os.path.join(root, "DONE")
    if not os.path.exists(done):
      shutil.rmtree(root, ignore_errors=True)
      export.export_serving_model(model, paths["tft"], paths["tracks"],
                                  os.path.join(root, "melody"), version=1,
                                  n_max=RANKER_N_MAX,
                                  num_warmup_records=RANKER_WARMUP_RECORDS)
      with open(done, "w", encoding="utf-8") as f:
        f.write("ok\n")
    return os.path.join(root, "melody", "1")
  return build


@pytest.fixture(scope="session")
def ranker_export(serving_world, tmp_path_factory):
  """Version 1 of the tiny ranker, under this worker's own ``BASE`` with the server configs.

  Returns:
    ``{"paths": prepare_world paths, "model": the RankingModel, "base": BASE,
    "v1": BASE/1}``. Tests may add versions to ``BASE`` but must not change ``BASE/1``.
  """
  # pylint: disable=import-outside-toplevel
  from bench import serving as bench_serving
  from melody_testing import session_share
  from melody_testing import version_copies
  # pylint: enable=import-outside-toplevel
  # The same seed builds the same weights in every worker.
  model = bench_serving.build_model()
  shared = session_share.build_once(tmp_path_factory, "ranker_export",
                                    _export_ranker_once(model, serving_world))
  base = str(tmp_path_factory.mktemp("export") / "models" / "melody")
  v1 = version_copies.copy_as_first_version(shared, base)
  return {"paths": serving_world, "model": model, "base": base, "v1": v1}
