"""Plain-Python reference of Melody's list-mixing rules, the oracle of the graph op.

``ranking.layers.mixing`` computes the final order with TensorFlow ops (a short loop
over the top window and a closed form for the rest of the list). This module states the
same algorithm the obvious way, one position at a time, with no TensorFlow and no
cleverness, so the property tests can compare the two on arbitrary inputs. Read this
file for the semantics; read ``mixing.py`` for how it is made fast.
"""

import math
from typing import List, NamedTuple, Sequence


class ReferenceResult(NamedTuple):
  """The mixed list of one request.

  Attributes:
    order: candidate indices, best position first; only valid candidates, each once.
    is_promo: per position, whether the candidate there is a promo.
    dropped: per position, whether it is an unplaceable promo moved to the tail.
    artist_relaxed: per position, whether the artist cap was exceeded there because no
      candidate could be placed within every rule.
    num_placed: positions that keep every promo rule (``len(order)`` minus the tail).
  """
  order: List[int]
  is_promo: List[bool]
  dropped: List[bool]
  artist_relaxed: List[bool]
  num_placed: int


def _sort_key(scores: Sequence[float], i: int):
  s = float(scores[i])
  if math.isnan(s):
    s = -math.inf
  return (-s, i)


def mix_reference(scores: Sequence[float], is_promo: Sequence[bool],
                  artist_ids: Sequence[int], valid: Sequence[bool],
                  max_promos_per_window: int, window: int, max_per_artist: int,
                  unknown_artist_id: int = 0) -> ReferenceResult:
  """Greedy mixing of one candidate list, position by position.

  At each position ``t`` the candidate placed is the best remaining one (highest score,
  NaN counting as -inf, ties to the lower index) that keeps every rule:

  * a promo only if the previous position holds no promo and positions
    ``t-window+1 .. t-1`` hold fewer than ``max_promos_per_window`` promos;
  * for ``t < window``: only if fewer than ``max_per_artist`` candidates already placed
    share its artist id (candidates whose id is ``unknown_artist_id`` are never capped).

  If no remaining candidate keeps every rule, the best remaining non-promo is placed
  anyway (``artist_relaxed``: only the artist cap can block a non-promo). If only promos
  remain and none can be placed, none ever can (nothing else is left to separate them),
  so they all go to the tail in score order, flagged ``dropped``.

  Args:
    scores: one score per candidate.
    is_promo: promo flag per candidate.
    artist_ids: artist id per candidate.
    valid: False for padding candidates, which never appear in the output.
    max_promos_per_window: P.
    window: W.
    max_per_artist: R.
    unknown_artist_id: artist id that is exempt from the cap.

  Returns:
    A :class:`ReferenceResult`.
  """
  n = len(scores)
  remaining = sorted((i for i in range(n) if valid[i]), key=lambda i: _sort_key(scores, i))
  order: List[int] = []
  promo_flags: List[bool] = []
  relaxed: List[bool] = []
  artist_count = {}

  def promo_allowed(t):
    if t >= 1 and promo_flags[t - 1]:
      return False
    return sum(promo_flags[max(0, t - window + 1):t]) < max_promos_per_window

  def artist_allowed(t, i):
    a = int(artist_ids[i])
    return t >= window or a == unknown_artist_id or artist_count.get(a, 0) < max_per_artist

  while remaining:
    t = len(order)
    pick = next((i for i in remaining
                 if (not is_promo[i] or promo_allowed(t)) and artist_allowed(t, i)), None)
    was_relaxed = False
    if pick is None:
      pick = next((i for i in remaining if not is_promo[i]), None)
      was_relaxed = pick is not None
    if pick is None:
      break
    remaining.remove(pick)
    order.append(pick)
    promo_flags.append(bool(is_promo[pick]))
    relaxed.append(was_relaxed)
    a = int(artist_ids[pick])
    artist_count[a] = artist_count.get(a, 0) + 1

  num_placed = len(order)
  order.extend(remaining)
  return ReferenceResult(
      order=order,
      is_promo=[bool(is_promo[i]) for i in order],
      dropped=[p >= num_placed for p in range(len(order))],
      artist_relaxed=relaxed + [False] * (len(order) - num_placed),
      num_placed=num_placed)
