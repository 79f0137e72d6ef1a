"""Reason codes: why a candidate is where it is, as one string per candidate.

This module owns the reason-code vocabulary of a ranked list, the threshold that turns
the fusion's exploration bonus into the ``exploration`` code, and the encoding of a set
of per-candidate flags into comma-separated strings without string ops in the graph.
Codes, in the order they appear in a string:

* ``promo``: the candidate is promoted;
* ``exploration``: its exploration bonus is at least ``EXPLORATION_SHARE`` of epsilon;
* ``intent_match``: the intent model proposed it;
* ``session_style_match``: it shares its artist or a tag with a track of the session;
* exactly one of ``familiar_track`` (the listener played this track), ``familiar_artist``
  (played the artist, not the track) and ``new_for_you`` (neither).
"""

from typing import Mapping, Tuple

import tensorflow as tf

REASON_CODES: Tuple[str, ...] = (
    "promo", "exploration", "intent_match", "session_style_match", "familiar_track",
    "familiar_artist", "new_for_you")
# A bonus of at least half the largest possible one is a real push, not a rounding.
EXPLORATION_SHARE = 0.5


def exploration_flag(bonus: tf.Tensor, epsilon: float) -> tf.Tensor:
  """``[B, N]`` bool: the ``exploration`` code (never set when ``epsilon`` is 0)."""
  if epsilon > 0:
    return bonus >= EXPLORATION_SHARE * epsilon
  return tf.zeros_like(bonus, tf.bool)


def code_table(codes: Tuple[str, ...] = REASON_CODES) -> tf.Tensor:
  """``[2**len(codes)]`` string constant: entry ``m`` joins the codes of the set bits of
  ``m`` (bit ``i`` = ``codes[i]``) with commas."""
  return tf.constant([",".join(code for i, code in enumerate(codes) if m >> i & 1)
                      for m in range(1 << len(codes))])


def encode(flags: Mapping[str, tf.Tensor], codes: Tuple[str, ...] = REASON_CODES
           ) -> tf.Tensor:
  """``[B, N]`` strings of the codes whose ``[B, N]`` bool flag is set.

  Args:
    flags: one flag per code of ``codes``.
    codes: the vocabulary, in string order.

  Raises:
    ValueError: ``flags`` does not have exactly the keys ``codes``.
  """
  if set(flags) != set(codes):
    raise ValueError(f"flags must have exactly the keys {codes}, got {sorted(flags)}")
  bits = tf.add_n([tf.cast(flags[code], tf.int32) * (1 << i) for i, code in enumerate(codes)])
  return tf.gather(code_table(codes), bits)
