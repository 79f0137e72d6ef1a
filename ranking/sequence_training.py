"""Sequence-level training: encode a listener's plays once, train every impression of them.

The per-impression path encodes each impression's history afresh, so a listener with
``n`` impressions has their plays encoded ``n`` times. :class:`SequenceRankingModel`
reads a sequence example (``features.sequence_examples``: a chunk of a listener's
consecutive impressions) once with the causal history encoder
(``ModelConfig.sequence_model = "causal"``), and gives each step ``t`` what the
per-impression path would give it from the plays before ``t`` (``ranking.causal_history``):
the history mean, the most recent play, the session mean and target attention of ``t``'s
candidate over the encoded plays. The steps then go through the same listener vector,
mixture, towers, losses (all five labels with their weights) and loss weighting as
per-impression examples.

It is a :class:`ranking.model.RankingModel` with the same layers and weights: its
serving half (``encode_listener``, ``score``) and everything exported from it are the
per-impression causal model, and its weights load into a plain ``RankingModel`` of the
same config. A batch without ``STEP_VALID`` (per-impression examples, e.g. an eval
split) takes the per-impression path.

Usage:
  sequences = sequence_examples.build(train_arrays, max_len=50, context=10)
  model = SequenceRankingModel(ModelConfig(sequence_model="causal"), TrainConfig())
  model.compile(optimizer=make_optimizer(model, train_config))
  model.fit(sequence_examples.sequence_dataset(sequences, 16), steps_per_epoch=100)
"""

from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from features import feature_spec
from features import sequence_examples
from ranking import causal_history
from ranking import model as model_lib

X = feature_spec.xf


@tf.keras.utils.register_keras_serializable(package="melody")
class SequenceRankingModel(model_lib.RankingModel):
  """A causal ``RankingModel`` trained on sequence examples, one encoding per chunk.

  Math: for a chunk of plays ``p_0..p_{T-1}`` (time order), ``E = CausalEncoder(tokens)``
  once; step ``t`` reads ``h_bar_t = mean_{j<t} E_j``, ``r_t = E_{t-1}``,
  ``s_t = mean_{t - sess_len_t <= j < t} E_j`` and ``a_t = TA(c_t, E_{j<t})``, the values
  ``encode_listener`` computes from the per-impression history of ``t``; the loss is
  ``RankingModel``'s over the trained steps (``STEP_WEIGHT`` 1).

  Args: as :class:`ranking.model.RankingModel`; the config's ``sequence_model`` must be
    ``"causal"``.
  """

  def __init__(self, config=None, train_config=None, **kwargs):
    super().__init__(config, train_config, **kwargs)
    if not self.causal:
      raise ValueError("sequence-level training needs ModelConfig.sequence_model='causal', "
                       f"got {self.config.sequence_model!r}")

  def sequence_encoding(self, features: Mapping[str, tf.Tensor], select: str,
                        training: Optional[bool] = None
                        ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Encodes a batch of chunks once and returns the selected steps as rows.

    Args:
      features: a batch of sequence examples, name -> ``[B, T, ...]``.
      select: the step key that picks the rows (``STEP_WEIGHT`` to train,
        ``STEP_VALID`` for every real step).
      training: Keras training flag.

    Returns:
      ``(rows, encoding)``: the selected steps' features ``[n, ...]`` and their
      listener encodings (``listener``, ``session``, ``history_mean``, ``recent_play``,
      ``attended``), ready for ``_logits``.
    """
    valid = features[sequence_examples.STEP_VALID] > 0
    tracks = tf.cast(features[sequence_examples.PLAY_TRACK], tf.int64)
    play_mask = tf.logical_and(valid, tf.not_equal(tracks, 0))
    items = self.items(tracks, tf.cast(features[sequence_examples.PLAY_ARTIST], tf.int64))
    encoded = self.history_encoder(
        items, tf.cast(features[sequence_examples.PLAY_COMPLETION], tf.float32),
        tf.cast(features[sequence_examples.PLAY_SKIP], tf.float32),
        tf.zeros_like(tracks), play_mask, training=training)
    history, session = causal_history.prefix_masks(
        play_mask, tf.reshape(features[X("sess_len")], tf.shape(tracks)))
    summaries = {"history_mean": causal_history.masked_mean(history, encoded),
                 "session": causal_history.masked_mean(session, encoded),
                 "recent_play": causal_history.previous_step(encoded)}
    if self.target_attention is not None:
      summaries["attended"] = self.target_attention.attend_prefix(items, encoded, history)
    keep = features[select] > 0
    rows = {k: tf.boolean_mask(v, keep) for k, v in features.items()}
    encoding = {k: tf.boolean_mask(v, keep) for k, v in summaries.items()}
    encoding["listener"] = self.listener_vector(rows, training=training)
    return rows, encoding

  def training_logits(self, features, training: Optional[bool] = None):
    if sequence_examples.STEP_VALID not in features:
      return super().training_logits(features, training=training)
    rows, encoding = self.sequence_encoding(features, sequence_examples.STEP_WEIGHT,
                                            training=training)
    return rows, self._logits(encoding, rows, training=training)

  def score_steps(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Predictions at every real step of a batch of chunks (inference), row-major."""
    rows, encoding = self.sequence_encoding(features, sequence_examples.STEP_VALID,
                                            training=False)
    return self._predictions(self._logits(encoding, rows, training=False))


def impression_at(sequences: Mapping[str, np.ndarray], chunk: int,
                  step: int) -> Dict[str, np.ndarray]:
  """The per-impression example (batch 1) that serving reads for one step of a chunk.

  Its history is the chunk's plays before ``step``, most recent first, its session
  length the step's, capped at those plays; what the causal model does not read (the
  gaps and the session's own sequences) is zero.

  Args:
    sequences: output of ``features.sequence_examples.build``.
    chunk: chunk index.
    step: step index within the chunk (a real step).

  Returns:
    ``TRANSFORMED_FEATURES`` plus the labels, each with a leading batch of 1.
  """
  out = {}
  for name, (dtype, length, _) in feature_spec.TRANSFORMED_FEATURES.items():
    shape = (1,) if length == 1 else (1, length)
    out[name] = np.zeros(shape, np.int64 if dtype == "int64" else np.float32)
  for key, values in sequences.items():
    if key in out or key in feature_spec.PASSTHROUGH_KEYS:
      out[key] = np.asarray(values[chunk, step]).reshape(1, -1).astype(
          out[key].dtype if key in out else np.asarray(values).dtype)
      if out[key].shape[1] == 1:
        out[key] = out[key].reshape(1)
  before = slice(step - 1, None, -1) if step else slice(0, 0)
  for hist_key, play_key in (("hist_track_ids", sequence_examples.PLAY_TRACK),
                             ("hist_artist_ids", sequence_examples.PLAY_ARTIST),
                             ("hist_completion", sequence_examples.PLAY_COMPLETION),
                             ("hist_skip", sequence_examples.PLAY_SKIP)):
    plays = np.asarray(sequences[play_key][chunk])[before]
    out[X(hist_key)][0, :len(plays)] = plays
  out[X("hist_len")] = np.array([step], np.int64)
  out[X("sess_len")] = np.minimum(out[X("sess_len")], step).astype(np.int64)
  return out
