"""Shared fixtures of the serving tests: one real export of the tiny ranker per session.

Exporting the ranker (build the serving module, trace, save, write warmup records) is
the dearest step of the serving tests, so the modules that only need an exported version
share this one and copy or extend it instead of exporting their own.
"""

import pytest

from bench import serving as bench_serving
from serving import export

RANKER_N_MAX = 200
RANKER_WARMUP_RECORDS = 14


@pytest.fixture(scope="session")
def ranker_export(tmp_path_factory):
  """Version 1 of the tiny ranker, exported under ``BASE`` with the server configs.

  Returns:
    ``{"paths": prepare_world paths, "model": the RankingModel, "base": BASE,
    "v1": BASE/1}``. Tests may add versions to ``BASE`` but must not change ``BASE/1``.
  """
  paths = bench_serving.prepare_world(str(tmp_path_factory.getbasetemp() / "serving_world"))
  model = bench_serving.build_model()
  base = str(tmp_path_factory.mktemp("export") / "models" / "melody")
  v1 = export.export_serving_model(model, paths["tft"], paths["tracks"], base,
                                   n_max=RANKER_N_MAX, num_warmup_records=RANKER_WARMUP_RECORDS)
  return {"paths": paths, "model": model, "base": base, "v1": v1}
