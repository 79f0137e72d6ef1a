"""Tests of the ranking benchmark's ``convergence`` part: the stopping rule, the selection
score and the report lines."""

import pytest

from bench import ranking_convergence


def test_patience_stops_after_checks_without_improvement_and_keeps_the_best():
  rule = ranking_convergence.Patience(patience=2, min_delta=0.001)
  assert rule.update(1.0) and not rule.done
  assert rule.update(1.5) and not rule.done
  assert not rule.update(1.5005) and not rule.done   # within min_delta: no improvement
  assert not rule.update(1.2) and rule.done
  assert rule.best == 1.5 and rule.best_check == 1 and rule.checks == 4


def test_patience_rejects_a_rule_that_never_waits():
  with pytest.raises(ValueError, match="patience must be at least 1, got 0"):
    ranking_convergence.Patience(patience=0)


def test_selection_score_adds_aucs_subtracts_rmses_of_measured_heads_only():
  logs = {"val_interest_skip_auc": 0.78, "val_interest_like_auc": 0.75,
          "val_interest_completion_rmse": 0.39, "val_exposure_rmse": 0.08,
          "val_subscription_auc": 0.66, "interest_skip_auc": 0.99, "val_loss": 3.0}
  covered = {"interest_skip": True, "interest_like": True, "interest_completion": True,
             "exposure": True, "subscription": False}
  score = ranking_convergence.selection_score(logs, covered, prefix="val_")
  assert score == pytest.approx(0.78 + 0.75 - 0.39 - 0.08)


def test_lines_table_every_model_and_the_paired_differences():
  row = {"seeds": 2, "interest_skip_auc": 0.78, "interest_skip_auc_std": 0.001,
         "best_examples": 512000, "train_cpu_s": 300.0}
  block = {"mean": [dict(row, model="a"), dict(row, model="b", interest_skip_auc=0.77)],
           "paired": {"a minus b": {"interest_skip_auc": {"mean": 0.01, "se": 0.002},
                                    "best_examples": {"mean": -5.0, "se": 1.0}}},
           "rule": {"check_examples": 51200, "patience": 2, "max_examples": 1024000,
                    "max_epochs": 6, "holdout_percent": 15, "score": "s"},
           "seeds": [1, 2], "batch_size": 256, "fit_examples": 100, "holdout_examples": 20}
  text = "\n".join(ranking_convergence.lines(block, None))
  assert "| a | 2 | 0.7800 ± 0.0010 | 512,000 | 300 |" in text
  assert "| b | 2 | 0.7700 ± 0.0010 |" in text
  assert "`a minus b` (paired over seeds): interest_skip_auc +0.0100 (se 0.0020)" in text
  assert "best_examples" not in text.split("paired over seeds")[1]
  assert ranking_convergence.lines(None, None) == []


def test_convergence_models_are_checked(monkeypatch):
  from bench import ranking  # pylint: disable=g-import-not-at-top
  check = ranking._check_models   # pylint: disable=protected-access
  settings = ranking._settings     # pylint: disable=protected-access
  monkeypatch.setenv("MELODY_BENCH_RANKING_CONVERGENCE_MODELS", "causal|sequence_level,linear")
  assert check(settings())["convergence_models"] == ["causal|sequence_level", "linear"]
  monkeypatch.setenv("MELODY_BENCH_RANKING_CONVERGENCE_MODELS", "linear,popularity")
  with pytest.raises(ValueError, match=r"unknown convergence model\(s\) \['popularity'\]"):
    check(settings())


def test_summarise_pairs_the_default_with_every_other_model_by_seed():
  def run(model, seed, auc):
    return {"model": model, "seed": seed, "interest_skip_auc": auc, "best_examples": 10,
            "train_wall_s": 1.0, "train_cpu_s": 1.0, "trace": [{"examples": 10}]}
  rows = [run("a", 1, 0.80), run("b", 1, 0.78), run("a", 2, 0.81), run("b", 2, 0.78)]
  split = {name: {"interest_completion": [0.0] * n} for name, n in
           (("fit", 7), ("holdout", 3), ("eval", 5))}
  block = ranking_convergence.summarise(rows, ["a", "b"], "a", {"patience": 2}, split, 256)
  diff = block["paired"]["a minus b"]["interest_skip_auc"]
  assert diff["mean"] == pytest.approx(0.025) and diff["per_seed"] == pytest.approx([0.02, 0.03])
  assert [r["model"] for r in block["mean"]] == ["a", "b"]
  assert block["seeds"] == [1, 2] and block["fit_examples"] == 7
  assert block["holdout_examples"] == 3
