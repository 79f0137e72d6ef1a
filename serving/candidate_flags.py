"""Per-candidate flags of the serving graph: familiarity, session style, reason strings.

This module owns how the graph relates each candidate to its listener: whether the
listener played the track (``familiar_track``) or only its artist (``familiar_artist``),
whether it matches the style of the current session (a shared artist or tag), and the
reason string that joins those flags with promo, exploration and intent
(``ranking.fusion.reasons`` has the codes). Tracks, artists and tags are compared by
catalogue identity (row, artist index, tag index; ``serving.catalog``), never by
vocabulary id, since OOV hash buckets are shared by unrelated tracks. Familiarity for
fusion is 1 for ``familiar_track`` and ``familiar_artist``, else 0.

Membership tests are per-listener count vectors gathered per candidate: O(N), where
comparing every candidate with every play (and tag) cost more than the scorer.
"""

from typing import Optional, Tuple

import tensorflow as tf

from ranking.fusion import reasons


def member(a: tf.Tensor, b: tf.Tensor, size: int) -> tf.Tensor:
  """``[B, N]``: whether ``a[i, n]`` occurs in ``b[i, :]``, for ids in [0, size)."""
  counts = tf.math.bincount(tf.cast(b, tf.int32), minlength=size, maxlength=size, axis=-1)
  return tf.gather(counts, tf.cast(a, tf.int32), batch_dims=1) > 0


def familiarity(rows: tf.Tensor, played: tf.Tensor, artist_index: tf.Tensor,
                catalog_size: int, num_artists: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """``(familiar_track, familiar_artist)``, ``[B, N]`` bool each, exclusive.

  Args:
    rows: ``[B, N]`` catalogue rows of the candidates (``catalog_size`` = OOV row).
    played: ``[B, L]`` catalogue rows of the history and session plays.
    artist_index: ``[C + 1]`` artist identity per row (0 = unknown).
    catalog_size: ``C``.
    num_artists: distinct artists ``A``.
  """
  artist = tf.gather(artist_index, rows)
  track = (rows < catalog_size) & member(rows, played, catalog_size + 1)
  artist_hit = tf.not_equal(artist, 0) & ~track & member(
      artist, tf.gather(artist_index, played), num_artists + 1)
  return track, artist_hit


def session_style(rows: tf.Tensor, session: tf.Tensor, artist_index: tf.Tensor,
                  tag_index: tf.Tensor, num_artists: int, num_tags: int) -> tf.Tensor:
  """``[B, N]`` bool: the candidate shares its artist or a tag with a session play.

  Args:
    rows: ``[B, N]`` catalogue rows of the candidates.
    session: ``[B, S]`` catalogue rows of the session plays (padding: the OOV row,
      which has no artist and no tags).
    artist_index: ``[C + 1]`` artist identity per row (0 = unknown).
    tag_index: ``[C + 1, T]`` tag identities per row (0 = padding).
    num_artists, num_tags: distinct artists and tags.
  """
  sess_tags = tf.reshape(tf.gather(tag_index, session), [tf.shape(session)[0], -1])
  cand_tags = tf.gather(tag_index, rows)                                       # [B, N, T]
  tag_hit = tf.reduce_any(tf.not_equal(cand_tags, 0) & tf.reshape(
      member(tf.reshape(cand_tags, [tf.shape(rows)[0], -1]), sess_tags, num_tags + 1),
      tf.shape(cand_tags)), axis=-1)
  artist = tf.gather(artist_index, rows)
  return tag_hit | tf.not_equal(artist, 0) & member(
      artist, tf.gather(artist_index, session), num_artists + 1)


def reason_strings(valid: tf.Tensor, promo: tf.Tensor, bonus: tf.Tensor, epsilon: float,
                   style: tf.Tensor, familiar: Tuple[tf.Tensor, tf.Tensor],
                   from_intent: Optional[tf.Tensor] = None) -> tf.Tensor:
  """``[B, N]`` reason strings, ``""`` for padding.

  Args:
    valid: ``[B, N]`` bool, False on padding.
    promo: ``[B, N]`` int promo flags.
    bonus: ``[B, N]`` the fusion's exploration bonus.
    epsilon: the fusion's largest bonus.
    style: ``[B, N]`` :func:`session_style`.
    familiar: :func:`familiarity`'s pair.
    from_intent: ``[B, N]`` bool, the intent model proposed the candidate (None: never).
  """
  familiar_track, familiar_artist = familiar
  codes = reasons.encode({
      "promo": tf.not_equal(promo, 0),
      "exploration": reasons.exploration_flag(bonus, epsilon),
      "intent_match": from_intent if from_intent is not None else tf.zeros_like(valid),
      "session_style_match": style,
      "familiar_track": familiar_track,
      "familiar_artist": familiar_artist,
      "new_for_you": ~(familiar_track | familiar_artist),
  })
  return tf.where(valid, codes, "")
