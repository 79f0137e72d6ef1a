"""The head scorers a weight grid is rolled out with: the trained model or the oracle.

This module owns which scorer ranks the report's rollouts and how it is found: the
trained model (an exported SavedModel's ``rank`` signature, so what is measured is what
is served; by default the latest version the pipeline pushed), or the oracle
(``policies.HeadScorer``: the world's expected response plus seeded noise, for what-if
studies). Both give a policy for any weight table through one method,
:meth:`OracleScorer.policy` / :meth:`ModelScorer.policy`: ``None`` is the scorer's own
table (the ``FusionConfig`` defaults, or the weights the model was exported with), a
``[segments, 3]`` table goes per segment and a ``[segments, activities, 3]`` table per
(segment, activity); the model receives them as the per-request override.
"""

import dataclasses
import os
from typing import Optional

import numpy as np

from features import feature_spec
from ranking.fusion.spec import FusionConfig
from simulation import policies
from simulation import rollout as rollout_lib
from simulation.world_config import SIM_ACTIVITIES

SCORERS = ("model", "oracle", "both")
DEFAULT_SERVING_DIR = os.path.join("runs", "pipeline", "serving_model")
DEFAULT_MODEL_USERS = 1000   # a SavedModel ranks ~1k sessions/s here: rollouts stay minutes


def latest_pushed(serving_dir: str) -> str:
  """The newest numbered version holding a SavedModel under ``serving_dir``.

  Raises:
    ValueError: there is none.
  """
  versions = sorted((int(n) for n in (os.listdir(serving_dir) if os.path.isdir(serving_dir)
                                      else ()) if n.isdigit()
                     and os.path.isfile(os.path.join(serving_dir, n, "saved_model.pb"))),
                    reverse=True)
  if not versions:
    raise ValueError(f"no pushed model under {serving_dir!r} (run `melody pipeline run`, "
                     "name one with --model, or roll out the stand-in with --scorer oracle)")
  return os.path.join(serving_dir, str(versions[0]))


def resolve_model(scorer: str, model_dir: Optional[str],
                  serving_dir: str = DEFAULT_SERVING_DIR) -> Optional[str]:
  """The SavedModel a ``scorer`` choice rolls out (None for ``oracle``).

  Raises:
    ValueError: an unknown scorer, or no model to roll out.
  """
  if scorer not in SCORERS:
    raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
  if scorer == "oracle":
    return None
  if model_dir:
    if not os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
      raise ValueError(f"--model {model_dir!r} holds no saved_model.pb")
    return model_dir
  return latest_pushed(serving_dir)


def model_catalog_size(model_dir: str) -> Optional[int]:
  """The catalogue size an export recorded in ``melody_serving.json`` (None: absent)."""
  import json  # pylint: disable=import-outside-toplevel
  path = os.path.join(model_dir, "assets.extra", "melody_serving.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("catalog_size")


@dataclasses.dataclass
class OracleScorer:
  """The stand-in: fusion and mixing in numpy over the world's expected response."""
  slate_len: int = 10
  name: str = "oracle"
  version: str = f"oracle(noise={policies.HeadScorer().noise:g})"

  def policy(self, table: Optional[np.ndarray] = None) -> policies.Policy:
    if table is None:
      return policies.FusionPolicy(slate_len=self.slate_len)
    table = np.asarray(table, np.float64)
    if table.ndim == 3:
      # Every (segment, activity) pair has its row, so the base table is never read.
      return policies.ContextRulePolicy(
          {(s, a): table[i, j] for i, s in enumerate(feature_spec.SEGMENTS)
           for j, a in enumerate(SIM_ACTIVITIES)}, slate_len=self.slate_len)
    return policies.FusionPolicy(fusion=_table_fusion(table), slate_len=self.slate_len)

  def rollout_config(self, config: rollout_lib.RolloutConfig) -> rollout_lib.RolloutConfig:
    return config


class ModelScorer:
  """The trained model: rollouts call its ``rank`` signature in-process.

  Args:
    model_dir: a SavedModel version directory.
    slate_len: K.
    max_users: listeners per rollout at most (the model ranks far slower than numpy).
    n_tracks: the world's catalogue size, checked against the export's.

  Raises:
    ValueError: the export scores another catalogue than the world's.
  """

  name = "model"

  def __init__(self, model_dir: str, slate_len: int = 10,
               max_users: int = DEFAULT_MODEL_USERS, n_tracks: Optional[int] = None):
    from simulation import saved_model_policy  # pylint: disable=import-outside-toplevel
    size = model_catalog_size(model_dir)
    if n_tracks is not None and size is not None and size != n_tracks:
      raise ValueError(f"the model at {model_dir!r} scores a catalogue of {size} tracks, "
                       f"the world has {n_tracks} (pass --tracks {size} and the data's "
                       "world seed)")
    self.model_dir, self.max_users = model_dir, max_users
    self.version = os.path.abspath(model_dir)
    self._base = saved_model_policy.SavedModelPolicy(model_dir, slate_len=slate_len)

  def policy(self, table: Optional[np.ndarray] = None) -> policies.Policy:
    return self._base.with_weights(table)

  def rollout_config(self, config: rollout_lib.RolloutConfig) -> rollout_lib.RolloutConfig:
    users = min(config.users, self.max_users)
    return dataclasses.replace(config, users=users, chunk_users=min(config.chunk_users, users))


def _table_fusion(rows: np.ndarray) -> FusionConfig:
  base = FusionConfig()
  return dataclasses.replace(base, segment_weights={
      s: (float(w[0]), 0.0 if s in base.zero_beta_segments else float(w[1]), float(w[2]))
      for s, w in zip(feature_spec.SEGMENTS, rows)})


def segment_table(rows) -> np.ndarray:
  """``[segments, 3]`` from ``{segment: weights}`` (or one row for every segment)."""
  if isinstance(rows, dict):
    return np.array([rows[s] for s in feature_spec.SEGMENTS], np.float64)
  return np.tile(np.asarray(rows, np.float64), (len(feature_spec.SEGMENTS), 1))


def context_table(rows: dict, fallback: np.ndarray) -> np.ndarray:
  """``[segments, SIM_ACTIVITIES, 3]`` from ``{"segment/activity": weights}``; pairs
  without a row take ``fallback``'s segment row."""
  table = np.repeat(np.asarray(fallback, np.float64)[:, None, :], len(SIM_ACTIVITIES), 1)
  for key, w in rows.items():
    seg, act = key.split("/")
    table[feature_spec.SEGMENTS.index(seg), SIM_ACTIVITIES.index(act)] = w
  return table
