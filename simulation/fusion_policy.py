"""Rollouts for learned fusion: the served model's heads, its fusion choice, the logs.

This module owns the simulator's side of learned fusion that touches the served model:
:class:`ServedFusionPolicy` ranks through an exported model's ``rank`` signature and
either takes the graph's own order (with the ``fusion`` input it is given: the weight
table or override, or the learned fusion baked into the model) or re-fuses the
signature's head scores with a candidate learned fusion in numpy
(``ranking.fusion.learned.fuse_learned``) and mixes them with the numpy twin of the
graph's mixing, so that many candidate parameter sets can be rolled out over the served
heads without an export each; :class:`RecordingWorld` keeps the world's responses to
each played slate, and :func:`listwise_data` pairs them with the logged slates into the
training lists of ``simulation.fusion_training``.
"""

import copy
import json
import os
from typing import Dict, List, Optional

import numpy as np

from features import feature_spec
from ranking.fusion import learned as learned_lib
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig
from simulation import fusion_training
from simulation import slates as slates_lib
from simulation.policies import Slates
from simulation.saved_model_policy import SavedModelPolicy

HEAD_KEYS = ("interest", "subscription", "exposure")


class RecordingWorld:
  """The world, keeping what each played slate got: completion, exposure, hazard.

  Everything else is the wrapped world's; a rollout over this object records one entry
  per session batch in call order, the order in which the policy ranked them.
  """

  def __init__(self, world):
    self._world = world
    self.responses: List[Dict[str, np.ndarray]] = []
    self._hazard: Optional[np.ndarray] = None

  def __getattr__(self, name):
    return getattr(self._world, name)

  def expected_response(self, listeners, tracks, activity):
    er = self._world.expected_response(listeners, tracks, activity)
    self._hazard = np.asarray(er["conversion_hazard"], np.float64)
    return er

  def play_slate(self, listeners, tracks, activity=None, rng=None):
    out = self._world.play_slate(listeners, tracks, activity, rng)
    self.responses.append({"played": np.asarray(out["played"], bool),
                           "completion": np.asarray(out["completion"], np.float64),
                           "exposure": np.asarray(out["exposure"], np.float64),
                           "hazard": self._hazard})
    return out


def model_settings(model_dir: str):
  """``(FusionConfig, MixingConfig)`` an export recorded in ``melody_serving.json``."""
  path = os.path.join(model_dir, "assets.extra", "melody_serving.json")
  if not os.path.isfile(path):
    return FusionConfig(), MixingConfig()
  with open(path, encoding="utf-8") as f:
    info = json.load(f)
  mixing = {k: v for k, v in info.get("mixing", {}).items()
            if k in MixingConfig.__dataclass_fields__}
  return FusionConfig.from_dict(info["fusion"]), MixingConfig(**mixing)


class ServedFusionPolicy(SavedModelPolicy):
  """A served model's ``rank`` signature, with a fusion choice and optional logging.

  Args:
    model_dir: the exported SavedModel version.
    choice: the ``fusion`` input sent (``""``: the model's default, ``"weights"``,
      ``"learned"``); with ``learned`` set the graph's fusion is only read for heads.
    learned: optional parameters fused in numpy over the signature's head scores (and
      mixed in numpy with the model's mixing rules) instead of the graph's order.
    record: keep each ranked batch's features and slate positions (``self.log``).
    **kwargs: ``SavedModelPolicy``'s (``slate_len``, ``weights``, ``batch_size``...).
  """

  def __init__(self, model_dir: str, choice: str = "",
               learned: Optional[learned_lib.LearnedFusionParams] = None,
               record: bool = False, **kwargs):
    super().__init__(model_dir, **kwargs)
    self.choice, self.learned, self.record = choice, learned, record
    self.fusion_config, self.mixing = model_settings(model_dir)
    self.log: List[Dict[str, np.ndarray]] = []

  def variant(self, choice: str = "", learned=None, weights=None, record: bool = False
              ) -> "ServedFusionPolicy":
    """The same loaded model with another fusion choice, parameters or override."""
    other = copy.copy(self.with_weights(weights))
    other.choice, other.learned, other.record, other.log = choice, learned, record, []
    return other

  def requests(self, state, candidates, context):
    req = super().requests(state, candidates, context)
    req["fusion"] = np.full(len(state), self.choice, object)
    return req

  def _outputs(self, req: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    tf = self._tf
    parts: Dict[str, list] = {}
    n = len(req["user_id"])
    for lo in range(0, n, self.batch_size):
      feed = {k: tf.constant(req[k][lo:lo + self.batch_size], dtype=spec.dtype)
              for k, spec in self.input_spec.items()}
      out = self.fn(**feed)
      for key in HEAD_KEYS + ("familiar", "order", "num_placed", "weights"):
        parts.setdefault(key, []).append(out[key].numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}

  def rank(self, state, candidates, context):
    req = self.requests(state, candidates, context)
    out = self._outputs(req)
    world, k = state.world, self.slate_len
    promo = world.track_promo[candidates.tracks].astype(np.float64)
    fusion_in = {**{h: out[h] for h in HEAD_KEYS}, "promo": promo,
                 "familiar": out["familiar"],
                 "segment": state.listeners.segment.astype(np.int64),
                 "activity": slates_lib.FUSION_ACTIVITY[np.asarray(context.activity, np.int64)],
                 "seed": req["exploration_seed"],
                 # The graph hashes catalogue rows: the world's track index (the export's
                 # catalogue is the world's, ``scorers.ModelScorer`` checks its size).
                 "candidate_ids": np.where(candidates.valid, candidates.tracks,
                                           len(world.track_ids))}
    if self.learned is None:
      pos = out["order"][:, :k].astype(np.int64)
      weights, placed = out["weights"], out["num_placed"]
    else:
      fused = learned_lib.fuse_learned(fusion_in, self.learned,
                                       self.fusion_config.exploration)
      pos = slates_lib.mix_top(fused["score"], promo.astype(bool),
                               world.track_artist[candidates.tracks] + 1, candidates.valid,
                               self.mixing, k)
      weights, placed = fused["weights"], np.full(len(pos), k)
    if self.record:
      self.log.append({"pos": pos, **fusion_in})
    tracks = np.where(pos >= 0, np.take_along_axis(candidates.tracks, np.maximum(pos, 0), 1),
                      -1)
    return Slates(positions=pos, tracks=tracks, weights=weights,
                  info={"num_placed": np.asarray(placed, np.int64)})


def listwise_data(log: List[Dict[str, np.ndarray]],
                  responses: List[Dict[str, np.ndarray]]) -> fusion_training.ListwiseData:
  """The training lists of a recorded rollout (one log entry per response, in order).

  Raises:
    ValueError: the two records do not pair up.
  """
  if len(log) != len(responses):
    raise ValueError(f"{len(log)} ranked batches but {len(responses)} played slates")
  parts: Dict[str, list] = {}
  n_act = len(feature_spec.ACTIVITIES)
  for entry, resp in zip(log, responses):
    pos = np.maximum(entry["pos"], 0)
    take = lambda x: np.take_along_axis(np.asarray(x, np.float64), pos, 1)  # noqa: E731
    feats = np.stack([take(entry[h]) for h in HEAD_KEYS]
                     + [take(entry["promo"]), 2.0 * take(entry["familiar"]) - 1.0], -1)
    parts.setdefault("features", []).append(feats)
    parts.setdefault("cell", []).append(entry["segment"] * n_act + entry["activity"])
    parts.setdefault("mask", []).append(resp["played"] & (entry["pos"] >= 0))
    for key in ("completion", "exposure", "hazard"):
      parts.setdefault(key, []).append(resp[key])
  return fusion_training.ListwiseData(**{k: np.concatenate(v) for k, v in parts.items()})
