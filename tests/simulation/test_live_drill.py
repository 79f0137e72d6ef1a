"""The bad-candidate drill's parts: labels shuffled across plays (outcomes kept, their
link to listeners and tracks broken) or inverted (interest labels mirrored), the
Trainer's model published below the newest version, and forced to canary on a running
model server over a canary on trial, whose guardrail then rolls it back."""

import collections
import os

import numpy as np
import pytest

from melody_testing import canary_stack
from online import experiment_split
from simulation import live_args
from simulation import live_drill
from simulation import live_experiment
from simulation import live_loop

FIELDS = ("user_id", "track_id", "context_activity")


def _plays(n, rng):
  """Plays whose completion is a function of the track (what a model could learn)."""
  tracks = rng.integers(0, 20, n)
  return [{"user_id": f"u{i % 7}", "track_id": f"t{t:03d}", "context_activity": "work",
           "completion": t / 20.0, "skip": float(t < 5), "like": float(t > 15),
           "subscription": 0.0, "exposure": 0.0,
           "skip_profile": "brief" if t < 5 else None} for i, t in enumerate(tracks)]


def test_shuffled_labels_keep_the_outcomes_and_lose_their_link_to_the_tracks():
  rng = np.random.default_rng(3)
  plays = _plays(400, rng)
  shuffled = live_drill.shuffle_labels(plays, rng)
  assert [[p[f] for f in FIELDS] for p in shuffled] == [[p[f] for f in FIELDS] for p in plays]

  def outcomes(events):
    return collections.Counter(tuple(e[f] for f in live_drill.LABEL_FIELDS) for e in events)

  # Permuted together: every play's outcome vector is one that happened.
  assert outcomes(shuffled) == outcomes(plays)
  track = np.array([int(p["track_id"][1:]) for p in plays], float)
  before = np.corrcoef(track, [p["completion"] for p in plays])[0, 1]
  after = np.corrcoef(track, [p["completion"] for p in shuffled])[0, 1]
  assert before == pytest.approx(1.0) and abs(after) < 0.2


def test_inverted_labels_prefer_what_listeners_skip():
  rng = np.random.default_rng(5)
  plays = _plays(400, rng)
  original = [dict(p) for p in plays]
  inverted = live_drill.bad_labels("inverted", plays, rng)
  assert plays == original
  assert [[p[f] for f in FIELDS] for p in inverted] == [[p[f] for f in FIELDS] for p in plays]
  for before, after in zip(plays, inverted):
    assert after["completion"] == pytest.approx(1.0 - before["completion"])
    assert (after["skip"], after["like"]) == (1.0 - before["skip"], 1.0 - before["like"])
    assert after["skip_profile"] is None
    # The business labels are not the interest labels the fault mirrors.
    assert (after["subscription"], after["exposure"]) == (before["subscription"],
                                                          before["exposure"])
  # What a model learns from them: the tracks listeners finish look the worst.
  track = np.array([int(p["track_id"][1:]) for p in plays], float)
  assert np.corrcoef(track, [p["completion"] for p in inverted])[0, 1] == pytest.approx(-1.0)
  assert np.corrcoef(track, [p["skip"] for p in inverted])[0, 1] > 0.5


def test_a_bad_kind_or_label_is_refused_naming_it():
  rng = np.random.default_rng(1)
  with pytest.raises(ValueError, match="bad_candidate_kind"):
    live_drill.bad_labels("reversed", _plays(3, rng), rng)
  with pytest.raises(ValueError, match="bad_candidate_kind"):
    live_loop.LiveConfig(bad_candidate_kind="reversed")
  broken = _plays(3, rng)
  broken[2]["skip"] = None
  with pytest.raises(ValueError, match="event 2: skip"):
    live_drill.invert_labels(broken)
  broken[2]["skip"], broken[1]["completion"] = 1.0, 1.5
  with pytest.raises(ValueError, match="event 1: completion"):
    live_drill.invert_labels(broken)


def test_the_flag_offers_every_kind_and_defaults_to_inverted():
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser()
  live_args.add_arguments(parser)
  kind = next(a for a in parser._actions if a.dest == "bad_candidate_kind")  # pylint: disable=protected-access
  assert set(kind.choices) == set(live_drill.KINDS)
  assert parser.parse_args([]).bad_candidate_kind == live_loop.LiveConfig().bad_candidate_kind
  assert live_loop.config_from_args(
      parser.parse_args(["--bad-candidate-kind", "shuffled"])).bad_candidate_kind == "shuffled"


def _model(root, name):
  path = os.path.join(root, name)
  os.makedirs(path)
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"model")
  return path


def test_the_trainer_output_is_published_below_the_newest_version(tmp_path):
  trainer = tmp_path / "pipeline" / "pipeline_root" / "Trainer" / "model"
  for artifact in ("8", "19"):
    _model(str(trainer / artifact), "Format-Serving")
  os.makedirs(trainer / "30" / "Format-Serving")  # a Trainer that did not finish
  assert live_drill.trainer_output(str(tmp_path / "pipeline")).endswith(
      os.path.join("19", "Format-Serving"))
  assert live_drill.trainer_output(str(tmp_path / "nothing")) == ""
  serving = tmp_path / "serving"
  for version in ("1700000000", "1700000400", "1700000399"):
    os.makedirs(serving / version)
  version = live_drill.publish_below_newest(str(trainer / "19" / "Format-Serving"),
                                            str(serving))
  assert version == 1700000398
  assert (serving / str(version) / "saved_model.pb").read_bytes() == b"model"
  assert sorted(os.listdir(serving))[-1] == "1700000400"
  assert not [n for n in os.listdir(serving) if not n.isdigit()]
  with pytest.raises(ValueError, match="no pushed version"):
    live_drill.publish_below_newest(str(trainer / "19" / "Format-Serving"),
                                    str(tmp_path / "empty"))


def _sessions(arm, n, skip, rng):
  return [{"user_id": f"{arm}-{i}", "session_id": "s", "arm": arm, "user_segment": "free",
           "completion": float(np.clip(rng.normal(0.5, 0.1), 0, 1)),
           "skip": float(rng.random() < skip), "like": 0.0, "subscription": 0.0}
          for i in range(n)]


def test_a_forced_candidate_replaces_the_canary_on_trial_and_is_rolled_back(tmp_path):
  split = experiment_split.ExperimentSplit("drill", 0.5, "s")
  with canary_stack.canary_stack(str(tmp_path / "stack"), {"stable": 1}, split,
                                 versions=(1, 2, 5)) as stack:
    bad = live_drill.publish_below_newest(os.path.join(stack.entry.base_path, "1"),
                                          stack.entry.base_path)
    assert bad == 4
    experiment = live_experiment.Experiment(
        live_experiment.stable_entry(stack.entry.base_path, 1),
        str(tmp_path / "models.config"), stack.server.target,
        live_experiment.TestSettings(min_samples=50))
    assert experiment.push_canary(2)
    assert experiment.force_canary(bad) == 2
    assert experiment.entry.labels == {"stable": 1, "canary": bad}
    assert stack.server.loaded_versions("melody") == (1, bad)
    arms = {stack.client.recommend(user_id=f"listener-{i}", k=3).model_version
            for i in range(30)}
    assert arms == {1, bad}
    rng = np.random.default_rng(8)
    decision = experiment.observe_day(
        1, _sessions("stable", 200, 0.2, rng) + _sessions("canary", 200, 0.5, rng), [])
    assert (decision["action"], decision["canary"]) == ("rollback", bad)
    assert decision["failed_guardrail"] == "skip_rate"
    assert experiment.entry.labels == {"stable": 1}
    assert stack.server.loaded_versions("melody") == (1,)
    assert experiment.force_canary(5) is None and experiment.canary == 5
