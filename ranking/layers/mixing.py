"""List-mixing rules as TensorFlow graph ops: promo caps, promo spacing, artist caps.

This module owns the last step of the serving graph: it turns fused scores into the
final order of the candidates, so TF Serving alone returns a list that keeps the
business rules. It holds :class:`MixingConfig`, the graph function :func:`mix` and the
Keras layer :class:`Mixing` around it. The semantics are stated (and tested against) the
plain-Python oracle in ``melody_testing.mixing_reference``.

The rules, for a window ``W``, a promo cap ``P`` and an artist cap ``R``:

* at most ``P`` promos in any ``W`` consecutive positions;
* never two promos in adjacent positions;
* at most ``R`` candidates of one artist among the top ``W`` positions.

Greedy by score: each position takes the best remaining candidate (highest score, NaN
counting as -inf, ties to the lower candidate index) that keeps every rule. When no
remaining candidate keeps every rule:

* if a non-promo remains, it can only be blocked by the artist cap; the best one is
  placed anyway and the position is flagged ``artist_relaxed`` (a list of one artist
  still fills its top positions);
* otherwise only promos remain and none fits; none ever will, since nothing is left to
  separate them, so they are *dropped to the tail*: appended after every placed
  candidate in score order and flagged ``dropped``. Callers that must never show a
  rule-breaking promo keep the first ``num_placed`` positions.

So for every input the output lists each valid candidate exactly once, the promo rules
hold on the first ``num_placed`` positions, the tail holds only promos, and the artist
cap holds on the top ``W`` positions except where ``artist_relaxed`` is set.

How it stays fast: only the top ``W`` positions need the full rules (the artist cap
stops there), so ``W`` unrolled steps, each a masked argmin over the candidates, place
them. Below the window only the promo rules act, and the greedy becomes a
merge of two score-sorted streams (promos and non-promos) that has a closed form: with
``m_k`` the number of non-promos placed before the ``k``-th promo,

    m_k = max(d_k, m_{k-1} + 1, m_{k-P} + W - P)

where ``d_k`` counts the non-promos that outscore promo ``k`` (adjacency and the window
cap are the other two lower bounds, and greedy takes the earliest slot). That max-plus
recurrence unrolls to ``m_k = max_{j<=k} d_j + (k-j) + floor((k-j)/P) * max(0, W-2P)``,
computed with one prefix maximum per residue of ``j`` mod ``P``; promo ``k`` is placed
iff ``m_k`` does not exceed the number of remaining non-promos.
"""

import dataclasses
from typing import Dict, Optional

import tensorflow as tf

from ranking.fusion import ordering

# Large enough to dominate any position arithmetic (|values| stay far below 2**62).
_NEG = -(1 << 40)
_BIG = 1 << 40


@dataclasses.dataclass(frozen=True)
class MixingConfig:
  """Mixing rules of the final list.

  Defaults: a promo cap of 2 per 10 positions keeps promos below a fifth of the first
  screen, and 2 tracks per artist in the top 10 keeps the first screen varied without
  hiding a listener's favourite artist.

  Attributes:
    max_promos_per_window: P, promos allowed in any ``window`` consecutive positions
      (0 drops every promo to the tail).
    window: W, the length of the promo window and of the top block the artist cap
      covers.
    max_per_artist: R, candidates of one artist allowed in the top ``window`` positions.
    unknown_artist_id: artist id exempt from the cap (id 0 is "padding or missing" in
      ``features.feature_spec``; two unknown artists are not the same artist). Use -1
      to cap every id.
  """
  max_promos_per_window: int = 2
  window: int = 10
  max_per_artist: int = 2
  unknown_artist_id: int = 0

  def __post_init__(self):
    for name in ("max_promos_per_window", "window", "max_per_artist", "unknown_artist_id"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if self.max_promos_per_window < 0:
      raise ValueError(
          f"max_promos_per_window must be >= 0, got {self.max_promos_per_window}")
    if self.window < 1:
      raise ValueError(f"window must be >= 1, got {self.window}")
    if self.max_per_artist < 1:
      raise ValueError(f"max_per_artist must be >= 1, got {self.max_per_artist}")
    if self.unknown_artist_id < -1:
      raise ValueError(f"unknown_artist_id must be >= -1, got {self.unknown_artist_id}")

  def to_dict(self) -> Dict[str, int]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, int]) -> "MixingConfig":
    return cls(**d)


def _exclusive_cumsum(x: tf.Tensor) -> tf.Tensor:
  return tf.cumsum(x, axis=-1, exclusive=True)


_UNROLLED_DOUBLINGS = 10   # prefix-max steps done without a loop: covers N <= 1024


def _prefix_max(x: tf.Tensor) -> tf.Tensor:
  """Running maximum along the last axis, by log-step doubling (no cummax op exists).

  The first ``_UNROLLED_DOUBLINGS`` doublings are straight-line ops (a step whose shift
  reaches past N shifts in only padding and changes nothing); a ``tf.while_loop`` does
  the rest, which runs no iteration for N <= 1024: straight-line ops cost less per
  call than loop iterations (docs/benchmarks.md has the timings).
  """
  n = tf.shape(x)[-1]
  lead = tf.shape(x)[:-1]

  def double(shift, y):
    width = tf.minimum(shift, n)
    pad = tf.fill(tf.concat([lead, [width]], 0), tf.constant(_NEG, y.dtype))
    shifted = tf.concat([pad, y[..., :n - width]], axis=-1)
    return tf.maximum(y, shifted)

  y = x
  for i in range(_UNROLLED_DOUBLINGS):
    y = double(tf.constant(1 << i), y)
  _, y = tf.while_loop(lambda shift, _: shift < n,
                       lambda shift, y: (shift * 2, double(shift, y)),
                       (tf.constant(1 << _UNROLLED_DOUBLINGS), y))
  return y


def _promo_slots(d: tf.Tensor, p: int, w: int) -> tf.Tensor:
  """Solves ``m_k = max(d_k, m_{k-1} + 1, m_{k-P} + W - P)`` for every k at once.

  Args:
    d: ``[B, K]`` int64 lower bounds of each promo's slot.
    p: P >= 1.
    w: W.

  Returns:
    ``[B, K]`` int64 ``m``.
  """
  k = tf.range(tf.shape(d)[-1], dtype=tf.int64)
  c = max(0, w - 2 * p)
  if c == 0:
    # Window cap implied by adjacency: only the +1 chain binds.
    return k + _prefix_max(d - k)
  # floor((k-j)/P) = floor(k/P) - floor(j/P) - [k mod P < j mod P]; group j by residue.
  base = d - k - c * (k // p)                                   # [B, K]
  residues = tf.range(p, dtype=tf.int64)[:, tf.newaxis]         # [P, 1]
  same = tf.equal(k % p, residues)                              # [P, K]
  per_residue = _prefix_max(tf.where(same, base[:, tf.newaxis, :], _NEG))   # [B, P, K]
  penalty = c * tf.cast(k % p < residues, tf.int64)             # [P, K]
  best = tf.reduce_max(per_residue - penalty, axis=1)           # [B, K]
  return k + c * (k // p) + best


def mix(scores: tf.Tensor, is_promo: tf.Tensor, artist_ids: tf.Tensor,
        valid: Optional[tf.Tensor] = None,
        config: MixingConfig = MixingConfig()) -> Dict[str, tf.Tensor]:
  """Orders the candidates greedily by score under the mixing rules (see module doc).

  Pure graph ops (``W`` unrolled placement steps plus vectorized ops); rows of the batch
  are independent.

  Args:
    scores: ``[B, N]`` float fused scores.
    is_promo: ``[B, N]`` bool or int (non-zero = promo).
    artist_ids: ``[B, N]`` int artist ids.
    valid: ``[B, N]`` bool, False for padding candidates (never placed); all valid if
      None. From lengths: ``tf.sequence_mask(lengths, N)``.
    config: the rules.

  Returns:
    A dict of ``[B, N]`` tensors in final-list order, plus ``num_placed``:
      ``order``: int32 candidate index per position, -1 after the valid candidates;
      ``is_promo``: bool, the candidate at the position is a promo;
      ``dropped``: bool, an unplaceable promo moved to the tail;
      ``artist_relaxed``: bool, the artist cap was exceeded here for lack of choice;
      ``num_placed``: ``[B]`` int32, positions before the dropped tail.
  """
  p, w, r = config.max_promos_per_window, config.window, config.max_per_artist
  scores = tf.cast(scores, tf.float32)
  is_promo = tf.convert_to_tensor(is_promo)
  promo = is_promo if is_promo.dtype == tf.bool else tf.not_equal(
      is_promo, tf.zeros_like(is_promo))
  artist = tf.cast(artist_ids, tf.int64)
  if valid is None:
    valid = tf.ones_like(promo)
  valid = tf.cast(valid, tf.bool)

  shape = tf.shape(scores)
  batch, n = shape[0], shape[1]
  n64 = tf.cast(n, tf.int64)
  idx = tf.range(n, dtype=tf.int64)

  # Score order (ranking.fusion.ordering): valid candidates by score desc, ties to the
  # lower index, then padding. Every later choice compares these ranks, never scores.
  order0 = tf.cast(ordering.order_tf(scores, valid), tf.int64)             # rank -> cand
  rank = tf.cast(tf.argsort(order0, axis=1), tf.int64)                      # cand -> rank

  # ---- Top window: full rules, one masked argmin per position.
  exempt = tf.equal(artist, config.unknown_artist_id)
  steps = tf.minimum(w, n)

  def step(t, placed, pos, artist_count, promo_count, last_promo, done, n_placed):
    t64 = tf.constant(t, tf.int64)
    remaining = valid & ~placed
    promo_ok = (promo_count < p) & tf.not_equal(last_promo, t64 - 1)
    keeps_all = (remaining & (exempt | (artist_count < r))
                 & (~promo | promo_ok[:, tf.newaxis]))
    fallback = remaining & ~promo
    key = tf.where(keeps_all, rank, tf.where(fallback, rank + n64, 3 * n64))
    # Ranks are distinct, so the minimum key names one candidate; read its flags by
    # masked reductions (no gather: N may be 0).
    best = tf.reduce_min(key, axis=1)
    found = (best < 2 * n64) & ~done
    relaxed = found & (best >= n64)
    chosen = tf.equal(key, best[:, tf.newaxis]) & found[:, tf.newaxis]
    pick_promo = tf.reduce_any(chosen & promo, axis=1)
    pick_artist = tf.reduce_max(tf.where(chosen, artist, _NEG), axis=1)
    artist_count += tf.cast(tf.equal(artist, pick_artist[:, tf.newaxis])
                            & found[:, tf.newaxis], tf.int64)
    return (placed | chosen, tf.where(chosen, t64, pos), artist_count,
            promo_count + tf.cast(pick_promo, tf.int64),
            tf.where(pick_promo, t64, last_promo), done | ~found,
            n_placed + tf.cast(found, tf.int64), pick_promo, relaxed)

  # The W steps are unrolled (W is a small Python int): no per-iteration body calls of
  # a tf.while_loop, which cost more than the steps themselves (docs/benchmarks.md).
  # Steps past N find nothing to place and change nothing; their flags are cut off below.
  zeros_b = tf.zeros([batch], tf.int64)
  state = (tf.zeros_like(valid), tf.fill([batch, n], tf.constant(-1, tf.int64)),
           tf.zeros([batch, n], tf.int64), zeros_b, zeros_b - 2, tf.zeros([batch], tf.bool),
           zeros_b)
  promo_steps, relaxed_steps = [], []
  for t in range(w):
    *state, pick_promo, relaxed = step(t, *state)
    promo_steps.append(pick_promo)
    relaxed_steps.append(relaxed)
  placed, pos_top, _, _, _, _, n_top = state
  top_promo = tf.stack(promo_steps, axis=1)[:, :steps]       # [B, steps]
  top_relaxed = tf.stack(relaxed_steps, axis=1)[:, :steps]   # [B, steps]

  # ---- Below the window: promo rules only, closed form over score-sorted streams.
  # The loop ran all W steps without getting stuck iff it placed W candidates.
  active = tf.equal(n_top, w)                                            # [B]
  rem_s = tf.gather(valid & ~placed, order0, batch_dims=1)               # in rank order
  promo_s = tf.gather(promo, order0, batch_dims=1)
  np_s = rem_s & ~promo_s
  pr_s = rem_s & promo_s
  np_before = _exclusive_cumsum(tf.cast(np_s, tf.int64))   # non-promos that outscore it
  k_of = _exclusive_cumsum(tf.cast(pr_s, tf.int64))        # promo index k, rank order
  num_np = tf.reduce_sum(tf.cast(np_s, tf.int64), axis=1)   # M
  num_pr = tf.reduce_sum(tf.cast(pr_s, tf.int64), axis=1)   # K
  # d_k: compact promos to the front, in rank order.
  promos_first = tf.argsort(tf.cast(~pr_s, tf.int32), axis=1, stable=True)
  d = tf.gather(np_before, promos_first, batch_dims=1)                  # [B, N] by k

  if p == 0:
    slot_ok = tf.zeros([batch, n], tf.bool)
    m = tf.fill([batch, n], tf.constant(_BIG, tf.int64))
  else:
    # Promos already in the top window bound the first slots below it. The j-th last of
    # them (j = 1..P) at position s forces promo k = P - j to m_k >= s - k (window cap);
    # the last one at s forces m_0 >= s - W + 2 (adjacency).
    s = tf.range(steps, dtype=tf.int64)                                  # [S]
    from_end = tf.cumsum(tf.cast(top_promo, tf.int64), axis=1, reverse=True)   # [B, S]
    target = p - from_end                                                # k it binds
    ks = idx[tf.newaxis, tf.newaxis, :]                                  # [1, 1, N]
    binds = top_promo[:, :, tf.newaxis] & tf.equal(target[:, :, tf.newaxis], ks)
    window_bound = tf.reduce_max(
        tf.where(binds, (s[:, tf.newaxis] - idx[tf.newaxis, :])[tf.newaxis], _NEG), axis=1)
    last = top_promo & tf.equal(from_end, 1)
    adjacency = tf.reduce_max(tf.where(last, s - w + 2, _NEG), axis=1)  # [B]
    first = tf.equal(idx, 0)[tf.newaxis, :]
    bound = tf.maximum(window_bound, tf.where(first, adjacency[:, tf.newaxis], _NEG))
    m = _promo_slots(tf.maximum(d, bound), p, w)                         # [B, N] by k
    slot_ok = (idx[tf.newaxis, :] < num_pr[:, tf.newaxis]) & (m <= num_np[:, tf.newaxis])
  slot_ok &= active[:, tf.newaxis]
  num_slotted = tf.reduce_sum(tf.cast(slot_ok, tf.int64), axis=1)
  m_sorted = tf.where(slot_ok, m, _BIG)    # increasing over the slotted prefix

  # Positions of the remaining candidates, in rank order.
  start = n_top[:, tf.newaxis]
  k_m = tf.gather(m_sorted, tf.minimum(k_of, n64 - 1), batch_dims=1)
  promo_pos = tf.where(k_m < _BIG, start + k_m + k_of,
                       start + num_np[:, tf.newaxis] + k_of)
  promos_above = tf.cast(tf.searchsorted(m_sorted, np_before, side="right"), tf.int64)
  np_pos = start + np_before + promos_above
  num_valid = tf.reduce_sum(tf.cast(valid, tf.int64), axis=1)
  pad_pos = num_valid[:, tf.newaxis] + _exclusive_cumsum(tf.cast(~valid, tf.int64))
  pos_s = tf.where(np_s, np_pos, promo_pos)
  pos = tf.where(placed, pos_top,
                 tf.where(valid, tf.gather(pos_s, rank, batch_dims=1), pad_pos))

  # Invert the permutation: candidate at each position.
  rows = tf.broadcast_to(tf.range(batch, dtype=tf.int64)[:, tf.newaxis], [batch, n])
  order = tf.scatter_nd(tf.stack([rows, pos], axis=-1),
                        tf.broadcast_to(idx, [batch, n]), tf.cast(shape, tf.int64))
  position = idx[tf.newaxis, :]
  in_list = position < num_valid[:, tf.newaxis]
  order = tf.where(in_list, order, -1)
  num_placed = n_top + num_np + num_slotted
  is_promo_out = tf.gather(promo, tf.maximum(order, 0), batch_dims=1) & in_list
  dropped = in_list & (position >= num_placed[:, tf.newaxis])
  relaxed = tf.pad(top_relaxed, [[0, 0], [0, n - steps]])
  out = {
      "order": tf.cast(order, tf.int32),
      "is_promo": is_promo_out,
      "dropped": dropped,
      "artist_relaxed": relaxed,
      "num_placed": tf.cast(num_placed, tf.int32),
  }
  # Keep the static [B, N] / [B] shapes the dynamic-shape ops above lose, so serving
  # signatures advertise fixed output shapes.
  for key, value in out.items():
    value.set_shape(scores.shape[:1] if key == "num_placed" else scores.shape)
  return out


@tf.keras.utils.register_keras_serializable(package="melody")
class Mixing(tf.keras.layers.Layer):
  """Final list order under the promo and artist rules, inside the graph.

  Math: greedy by score; position ``t`` takes the best remaining candidate with
  ``promos(t-W+1 .. t) <= P``, ``not promo(t-1)`` when it is a promo, and, for
  ``t < W``, ``count(artist) <= R``; the artist cap yields when nothing else fits, and
  promos that can never fit go to the tail (module docstring has the details).

  Usage:
    mixing = Mixing(MixingConfig(max_promos_per_window=2, window=10, max_per_artist=2))
    out = mixing({"scores": fused, "is_promo": promo, "artist_ids": artists,
                  "lengths": lengths})
    top = out["order"][:, :20]           # candidate indices, -1 = padding

  Args:
    config: a :class:`MixingConfig` (or its dict form, as ``from_config`` passes it).

  Input: a dict with ``scores`` ``[B, N]`` float, ``is_promo`` ``[B, N]`` bool/int,
    ``artist_ids`` ``[B, N]`` int and optionally ``valid`` ``[B, N]`` bool or
    ``lengths`` ``[B]`` int (valid candidates first); all valid if neither is given.
  Output: a dict: ``order`` ``[B, N]`` int32, ``is_promo``, ``dropped``,
    ``artist_relaxed`` ``[B, N]`` bool (all in final order), ``num_placed`` ``[B]``
    int32.
  """

  def __init__(self, config: MixingConfig = MixingConfig(), **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = MixingConfig.from_dict(config)
    if not isinstance(config, MixingConfig):
      raise ValueError(f"config must be a MixingConfig, got {config!r}")
    self.config = config

  def call(self, inputs):
    missing = {"scores", "is_promo", "artist_ids"} - set(inputs)
    if missing:
      raise ValueError(f"Mixing inputs lack {sorted(missing)}, got {sorted(inputs)}")
    valid = inputs.get("valid")
    if valid is None and inputs.get("lengths") is not None:
      valid = tf.sequence_mask(inputs["lengths"], tf.shape(inputs["scores"])[1])
    return mix(inputs["scores"], inputs["is_promo"], inputs["artist_ids"], valid,
               self.config)

  def get_config(self):
    config = super().get_config()
    config.update(config=self.config.to_dict())
    return config
