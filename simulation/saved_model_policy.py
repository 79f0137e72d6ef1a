"""The SavedModel policy: ranks with an exported model's ``rank`` signature, in-process.

This module owns :class:`SavedModelPolicy`, the policy that rolls out a trained and
exported model in the simulator: it turns the world's listener state, contexts and
candidate lists into the signature's raw inputs (the same tensors a serving request
carries), calls the signature in batches, and reads the slate from its ``order``
output (fusion and mixing ran inside the graph).
"""

import copy
from typing import Dict, Optional

import numpy as np

from features import feature_spec
from simulation.policies import N_SEG, Candidates, Context, ListenerState, Policy, Slates
from simulation.world_config import SIM_ACTIVITIES


def _check_table(weights: Optional[np.ndarray]) -> None:
  if weights is not None and np.shape(weights) not in ((N_SEG, 3),
                                                       (N_SEG, len(SIM_ACTIVITIES), 3)):
    raise ValueError(f"weights must be [{N_SEG}, 3] or [{N_SEG}, {len(SIM_ACTIVITIES)}, 3], "
                     f"got shape {np.shape(weights)}")


class SavedModelPolicy(Policy):
  """Ranks with an exported SavedModel's ``rank`` signature, called in-process.

  Builds the signature's raw inputs (``serving.signatures.rank_input_spec``) from the
  world's state: user id, segment, tenure, context, the last ``HISTORY_LEN`` plays as
  history and the plays of the last ``SESSION_WINDOW_S`` seconds as the session, the
  candidate track ids and promo flags, and optionally per-request weights (the
  ``alpha_beta_gamma`` override). The slate is the first ``slate_len`` entries of the
  signature's ``order`` output (fusion and mixing ran inside the graph).

  Args:
    model_dir: SavedModel directory (a numbered version directory).
    slate_len: K.
    weights: optional ``[segments, 3]`` table, or ``[segments, SIM_ACTIVITIES, 3]``
      per (segment, activity), sent as the per-request override; None keeps the
      model's own table.
    surface: ``context_surface`` sent with every request.
    batch_size: listeners per signature call.
    exploration: send the context seed as ``exploration_seed`` (else -1: off).
    signature: signature name.
  """

  def __init__(self, model_dir: str, slate_len: int = 10,
               weights: Optional[np.ndarray] = None, surface: str = "home",
               batch_size: int = 256, exploration: bool = True, signature: str = "rank"):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if slate_len < 1:
      raise ValueError(f"slate_len must be >= 1, got {slate_len}")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_table(weights)
    self._tf = tf
    from serving import tensors as serving_tensors  # pylint: disable=g-import-not-at-top
    self.loaded = serving_tensors.load_saved_model(model_dir)
    if signature not in self.loaded.signatures:
      raise ValueError(f"{model_dir!r} has no signature {signature!r}; it has "
                       f"{sorted(self.loaded.signatures)}")
    self.fn = self.loaded.signatures[signature]
    _, self.input_spec = self.fn.structured_input_signature
    self.slate_len, self.batch_size = slate_len, batch_size
    self.table = None if weights is None else np.asarray(weights, np.float32)
    self.surface, self.exploration = surface, exploration
    self.name = f"saved_model:{model_dir}"

  def with_weights(self, weights: Optional[np.ndarray]) -> "SavedModelPolicy":
    """The same loaded model sending another override table (see ``weights``)."""
    _check_table(weights)
    other = copy.copy(self)
    other.table = None if weights is None else np.asarray(weights, np.float32)
    return other

  def requests(self, state: ListenerState, candidates: Candidates,
               context: Context) -> Dict[str, np.ndarray]:
    """The raw ``rank`` inputs for every listener of the batch (numpy)."""
    world, L, n = state.world, state.listeners, len(state)
    ids = world.track_ids
    hist = state.history
    h_len = feature_spec.HISTORY_LEN
    h_track = hist.get("track", np.full((n, 0), -1))[:, :h_len]
    pad = h_len - h_track.shape[1]

    def padded(x, fill, dtype):
      x = np.asarray(x, dtype)
      return np.concatenate([x, np.full((n, pad), fill, dtype)], axis=1) if pad else x

    h_track = padded(h_track, -1, np.int64)
    h_ts = padded(hist.get("ts", np.zeros((n, 0)))[:, :h_len], 0, np.int64)
    h_comp = padded(hist.get("completion", np.zeros((n, 0)))[:, :h_len], 0, np.float32)
    h_skip = padded(hist.get("skip", np.zeros((n, 0)))[:, :h_len], 0, np.float32)
    have = h_track >= 0
    gap = np.where(have, np.maximum(context.ts[:, None] - h_ts, 0), 0).astype(np.float32)
    names = np.where(have, ids[np.maximum(h_track, 0)], feature_spec.PAD_TOKEN.decode())
    in_sess = have & (gap <= feature_spec.SESSION_WINDOW_S)
    s_len = np.minimum(in_sess.sum(1), feature_spec.SESSION_LEN)
    s_mask = np.arange(feature_spec.SESSION_LEN)[None, :] < s_len[:, None]
    s = slice(0, feature_spec.SESSION_LEN)   # history is most recent first, so is the session
    if self.table is None:
      weights = np.full((n, 3), -1.0, np.float32)
    elif self.table.ndim == 3:
      weights = self.table[L.segment.astype(np.int64), np.asarray(context.activity, np.int64)]
    else:
      weights = self.table[L.segment.astype(np.int64)]
    return {
        "user_id": np.array([f"u{i:07d}" for i in L.user_index], object),
        "user_segment": np.array(feature_spec.SEGMENTS, object)[L.segment.astype(np.int64)],
        "user_tenure_days": L.tenure_days.astype(np.float32),
        "context_activity": np.array(SIM_ACTIVITIES, object)[context.activity],
        "context_surface": np.full(n, self.surface, object),
        "context_hour": np.asarray(context.hour, np.int64),
        "context_weekday": np.asarray(context.weekday, np.int64),
        "hist_track_ids": names.astype(object),
        "hist_completion": np.where(have, h_comp, 0).astype(np.float32),
        "hist_skip": np.where(have, h_skip, 0).astype(np.float32),
        "hist_gap_s": gap,
        "hist_len": have.sum(1).astype(np.int64),
        "sess_track_ids": np.where(s_mask, names[:, s], "").astype(object),
        "sess_completion": np.where(s_mask, h_comp[:, s], 0).astype(np.float32),
        "sess_skip": np.where(s_mask, h_skip[:, s], 0).astype(np.float32),
        "sess_gap_s": np.where(s_mask, gap[:, s], 0).astype(np.float32),
        "sess_len": s_len.astype(np.int64),
        "alpha_beta_gamma": weights,
        "override": np.full(n, int(self.table is not None), np.int64),
        # The model's default fusion (its policy's choice); models without the input
        # ignore it, since the feed is built from the signature's own inputs.
        "fusion": np.full(n, "", object),
        "exploration_seed": (np.asarray(context.seed, np.int64) if self.exploration
                             else np.full(n, -1, np.int64)),
        "candidate_ids": np.where(candidates.valid, ids[candidates.tracks], "").astype(object),
        "candidate_is_promo": world.track_promo[candidates.tracks].astype(np.int64),
    }

  def rank(self, state, candidates, context):
    tf = self._tf
    req = self.requests(state, candidates, context)
    missing = set(self.input_spec) - set(req)
    if missing:
      raise ValueError(f"signature needs inputs this policy cannot build: {sorted(missing)}")
    orders, weights, placed = [], [], []
    n = len(state)
    for lo in range(0, n, self.batch_size):
      feed = {k: tf.constant(req[k][lo:lo + self.batch_size], dtype=spec.dtype)
              for k, spec in self.input_spec.items()}
      out = self.fn(**feed)
      orders.append(out["order"].numpy()[:, :self.slate_len])
      weights.append(out["weights"].numpy() if "weights" in out
                     else np.full((len(orders[-1]), 3), np.nan))
      placed.append(out["num_placed"].numpy() if "num_placed" in out
                    else np.full(len(orders[-1]), orders[-1].shape[1]))
    pos = np.concatenate(orders).astype(np.int64)
    if pos.shape[1] < self.slate_len:
      raise ValueError(f"the model ordered {pos.shape[1]} candidates, slate_len is "
                       f"{self.slate_len}")
    tracks = np.where(pos >= 0, np.take_along_axis(candidates.tracks, np.maximum(pos, 0), 1),
                      -1)
    # num_placed: positions that keep every promo rule (later ones are promos the
    # graph could not place, as mixing's dropped tail).
    return Slates(positions=pos, tracks=tracks, weights=np.concatenate(weights),
                  info={"num_placed": np.concatenate(placed).astype(np.int64)})
