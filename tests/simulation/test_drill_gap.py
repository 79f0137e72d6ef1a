"""The label-fault gap in the twin: the per-track learner's scores, and the order of the
rankers on the same listeners and draws."""

import numpy as np
import pytest

from simulation import drill_gap


def test_track_scores_are_shrunk_means_of_the_interest_outcome():
  plays = [{"track_id": "t000", "completion": 1.0, "skip": 0.0, "like": 1.0},
           {"track_id": "t000", "completion": 1.0, "skip": 0.0, "like": 0.0},
           {"track_id": "t002", "completion": 0.1, "skip": 1.0, "like": 0.0}]
  scores = drill_gap.track_scores(plays, 4, prior=1.0)
  mean = (1.5 + 1.0 - 0.9) / 3
  np.testing.assert_allclose(scores, [(2.5 + mean) / 3, mean, (-0.9 + mean) / 2, mean])
  with pytest.raises(ValueError, match="prior"):
    drill_gap.track_scores(plays, 4, prior=0.0)
  with pytest.raises(ValueError, match="track_id"):
    drill_gap.track_scores(plays, 2)


def test_inverted_labels_rank_worse_than_shuffled_ones_which_rank_worse_than_true_ones():
  rows = {r.ranker: r for r in drill_gap.compare(users=150, repeats=2)}
  order = ["oracle", "per-track learner, as logged", "per-track learner, shuffled",
           "per-track learner, inverted", "anti-oracle"]
  completion = [rows[name].completion for name in order]
  skip = [rows[name].skip for name in order]
  assert completion == sorted(completion, reverse=True)
  assert skip == sorted(skip)
  # The inverted learner is clearly worse than the true one, not a rounding apart.
  assert rows[order[1]].completion - rows[order[3]].completion > 0.05
  assert "| per-track learner, inverted |" in drill_gap.markdown(list(rows.values()))


@pytest.mark.parametrize("name,kwargs", [("users", {"users": 0}), ("k", {"k": 0}),
                                         ("repeats", {"repeats": 0}),
                                         ("k", {"k": 20, "tracks": 10})])
def test_bad_sizes_are_refused_naming_them(name, kwargs):
  with pytest.raises(ValueError, match=name):
    drill_gap.compare(**kwargs)
