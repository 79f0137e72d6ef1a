"""The bad-candidate drill of the live loop: a model trained on corrupted labels, served as
the canary although the pipeline did not bless it.

This module owns making that model the honest way, from the day's plays with one of two
label faults (``KINDS``):

* ``shuffled``: the plays keep their listeners, tracks and contexts but their outcomes
  (completion, skip, like, conversion, exposure and skip profile, permuted together
  across plays) are dealt out at random, so no feature says anything about a label;
* ``inverted``: the interest labels are mirrored, as a label join that reads the
  outcome the wrong way round would leave them: completion becomes ``1 - completion``,
  skip ``1 - skip`` and like ``1 - like`` (the skip profile, which no longer describes
  the play, is dropped); conversion and exposure are kept. Such a model learns to prefer
  what listeners skip.

Those plays go through the same example builder and the same scheduled pipeline (its own
workdir, cold start, the day's span alone). The Evaluator does not bless such a model and
the Pusher does not push it, so the drill takes the Trainer's own output and publishes it
under the serving directory itself, as a version number just below the newest push: the
next scheduled run warm-starts from the newest version, never from the drill's model.
"""

import dataclasses
import glob
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from pipeline import window_runs
from simulation import live_pipeline

# The outcome fields of a play event; everything else is what a model may learn from.
LABEL_FIELDS = ("completion", "skip", "like", "subscription", "exposure", "skip_profile")
# The outcomes ``inverted`` mirrors (x -> 1 - x); each is a share or a 0/1 flag.
MIRRORED_FIELDS = ("completion", "skip", "like")
KINDS = ("shuffled", "inverted")


@dataclasses.dataclass
class BadCandidate:
  """The drill's model.

  Attributes:
    version: The version it was published as under the serving directory (None: the
      run failed before its Trainer finished).
    blessed: Whether the pipeline's Evaluator blessed it.
    note: What happened.
  """
  version: Optional[int]
  blessed: bool
  note: str


def shuffle_labels(events: Sequence[Dict[str, object]],
                   rng: np.random.Generator) -> List[Dict[str, object]]:
  """``events`` with their outcome fields permuted together across events."""
  order = rng.permutation(len(events))
  return [dict(event, **{name: events[j].get(name) for name in LABEL_FIELDS})
          for event, j in zip(events, order)]


def invert_labels(events: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
  """``events`` with their interest labels mirrored and their skip profile dropped.

  Raises:
    ValueError: an event's completion, skip or like is missing or outside [0, 1] (the
      message names the field and the event's position).
  """
  out = []
  for i, event in enumerate(events):
    mirrored = {}
    for name in MIRRORED_FIELDS:
      value = event.get(name)
      if value is None or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"event {i}: {name} must be in [0, 1] to be inverted, got {value!r}")
      mirrored[name] = 1.0 - float(value)
    out.append(dict(event, skip_profile=None, **mirrored))
  return out


def bad_labels(kind: str, events: Sequence[Dict[str, object]],
               rng: np.random.Generator) -> List[Dict[str, object]]:
  """``events`` with the label fault ``kind`` (one of ``KINDS``).

  Raises:
    ValueError: ``kind`` is not one of ``KINDS``.
  """
  if kind == "shuffled":
    return shuffle_labels(events, rng)
  if kind == "inverted":
    return invert_labels(events)
  raise ValueError(f"bad_candidate_kind must be one of {KINDS}, got {kind!r}")


def trainer_output(pipeline_workdir: str) -> str:
  """The newest serving model the pipeline's Trainer wrote, or ''."""
  models = glob.glob(os.path.join(pipeline_workdir, "pipeline_root", "Trainer", "model",
                                  "*", "Format-Serving"))
  models = [m for m in models if os.path.exists(os.path.join(m, "saved_model.pb"))]
  if not models:
    return ""
  return max(models, key=lambda m: int(os.path.basename(os.path.dirname(m))))


def publish_below_newest(model_dir: str, serving_dir: str) -> int:
  """Copies ``model_dir`` into ``serving_dir`` as a free version number just below the
  newest one there; returns the number.

  Raises:
    ValueError: ``serving_dir`` holds no version, or no free number below the newest.
  """
  taken = set(live_pipeline.versions(serving_dir))
  if not taken:
    raise ValueError(f"no pushed version under {serving_dir}")
  version = max(taken) - 1
  while version in taken and version > 0:
    version -= 1
  if version <= 0:
    raise ValueError(f"no free version number below {max(taken)} in {serving_dir}")
  live_pipeline.copy_version(model_dir, serving_dir, version)
  return version


def train_bad_candidate(events: Sequence[Dict[str, object]], drill_dir: str,
                        tracks_path: str, serving_dir: str, span: int,
                        options: live_pipeline.TrainingOptions,
                        rng: np.random.Generator, kind: str = "inverted") -> BadCandidate:
  """Trains a model on ``events`` with the label fault ``kind`` and publishes it.

  Args:
    events: The day's play events.
    drill_dir: The drill's own logged plays, spans and pipeline workdir.
    tracks_path: The catalogue.
    serving_dir: The served model's versions (where the model is published).
    span: The day's span (YYYYMMDD).
    options: Trainer steps and shards (the window is the day alone).
    rng: Draws the permutation (``shuffled``).
    kind: The label fault, one of ``KINDS``.

  Returns:
    The published version, whether the Evaluator blessed it, and a note.
  """
  logged = os.path.join(drill_dir, "logged")
  data = os.path.join(drill_dir, "data")
  workdir = os.path.join(drill_dir, "pipeline")
  live_pipeline.write_events(logged, f"{kind}-{span}", bad_labels(kind, events, rng))
  live_pipeline.build_spans(logged, tracks_path, data, options)
  config = live_pipeline.pipeline_config(data, workdir, options)
  try:
    outcomes = window_runs.run_spans(config, 1, until=span, verbose=False,
                                     drift_check=False)
  except Exception as e:  # pylint: disable=broad-except
    # A drill that cannot train is reported, not fatal to the loop.
    return BadCandidate(None, False, f"pipeline failed: {type(e).__name__}: {e}")
  blessed = any(o.run is not None and o.run.pushed for o in outcomes)
  model = trainer_output(workdir)
  if not model:
    return BadCandidate(None, blessed, "the Trainer wrote no model")
  version = publish_below_newest(model, serving_dir)
  return BadCandidate(version, blessed,
                      f"trained on {kind} labels of {window_runs.span_name(span)}, "
                      f"{'blessed' if blessed else 'not blessed'} by the Evaluator, "
                      f"published as version {version}")
