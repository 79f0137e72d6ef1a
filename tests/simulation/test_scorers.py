"""The report's scorers and the model-vs-oracle comparison: finding the pushed model,
clear errors without one, the oracle's policies for every table shape, and the
disagreement section."""

import os

import numpy as np
import pytest

from features import feature_spec
from ranking.fusion import spec as fusion_spec
from simulation import policies
from simulation import scorers
from simulation import weight_choice
from simulation.world_config import SIM_ACTIVITIES


def _version(base, name):
  os.makedirs(os.path.join(base, name))
  open(os.path.join(base, name, "saved_model.pb"), "wb").close()


def test_latest_pushed_and_clear_errors(tmp_path):
  base = str(tmp_path / "serving_model")
  with pytest.raises(ValueError, match="no pushed model under .*--scorer oracle"):
    scorers.resolve_model("model", None, base)
  _version(base, "1796600000")
  _version(base, "1796700000")
  os.makedirs(os.path.join(base, "1796800000"))        # a push still being written
  os.makedirs(os.path.join(base, ".tmp-3"))
  assert scorers.latest_pushed(base) == os.path.join(base, "1796700000")
  assert scorers.resolve_model("both", None, base) == os.path.join(base, "1796700000")
  assert scorers.resolve_model("oracle", None, base) is None
  with pytest.raises(ValueError, match="holds no saved_model.pb"):
    scorers.resolve_model("model", str(tmp_path), base)
  with pytest.raises(ValueError, match="scorer must be one of"):
    scorers.resolve_model("ensemble", None, base)


def test_the_model_scorer_refuses_another_catalogue(tmp_path):
  extra = tmp_path / "1" / "assets.extra"
  extra.mkdir(parents=True)
  (extra / "melody_serving.json").write_text('{"catalog_size": 300}')
  with pytest.raises(ValueError, match="catalogue of 300 tracks, the world has 5000"):
    scorers.ModelScorer(str(tmp_path / "1"), n_tracks=5000)


def test_oracle_policies_for_every_table_shape():
  oracle = scorers.OracleScorer(slate_len=5)
  assert isinstance(oracle.policy(None), policies.FusionPolicy)
  table = scorers.segment_table([0.5, 0.25, 0.25])
  plain = oracle.policy(table)
  want = table.copy()
  want[feature_spec.SEGMENTS.index("paid"), 1] = 0.0
  np.testing.assert_allclose(fusion_spec.segment_table(plain.fusion), want)
  cells = scorers.context_table({"free/focus": [0.1, 0.2, 0.7]}, table)
  assert cells.shape == (len(feature_spec.SEGMENTS), len(SIM_ACTIVITIES), 3)
  ctx = oracle.policy(cells)
  free, focus = feature_spec.SEGMENTS.index("free"), SIM_ACTIVITIES.index("focus")
  np.testing.assert_allclose(ctx.table[free, focus], [0.1, 0.2, 0.7])
  np.testing.assert_allclose(ctx.table[free, SIM_ACTIVITIES.index("commute")], table[free])


def _choice(frontier, rec_free, completion):
  grid = [{"weights": [1.0, 0.0, 0.0], "frontier": frontier, "meets_floor": True},
          {"weights": [0.0, 0.0, 1.0], "frontier": True, "meets_floor": False}]
  outcome = {"completion_rate": completion, "promo_share": 0.1, "exposure_per_session": 0.3,
             "expected_conversions_per_1k_sessions": 1.0, "expected_reward_per_session": 5.0}
  return {"scorer": {"name": "model", "version": "/m/1", "users": 10}, "grid": grid,
          "recommended": {"free": {"weights": rec_free}},
          "recommended_vs_current": {"recommended": outcome}}


def test_disagreement_names_what_differs():
  model, oracle = _choice(False, [1.0, 0.0, 0.0], 0.5), _choice(True, [0.5, 0.5, 0.0], 0.6)
  d = weight_choice.disagreement(model, oracle)
  assert [r["model"] for r in d["frontier"]] == [False, True]
  assert [r["oracle"] for r in d["frontier"]] == [True, True]
  assert d["recommended"]["free"] == {"model": [1.0, 0.0, 0.0], "oracle": [0.5, 0.5, 0.0]}
  assert d["recommended"]["new"] == {"model": None, "oracle": None}
  assert d["recommended_outcomes"]["oracle"]["completion_rate"] == 0.6
  md = "\n".join(weight_choice.markdown({**model, "scorer_disagreement": d}))
  assert "### Model vs oracle scorer" in md
  assert "| free | 1/0/0 **differs** | 0.5/0.5/0 |" in md
  assert "| new | - | - |" in md
