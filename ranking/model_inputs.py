"""Shapes of the ranking model's inputs and of its listener encoding.

The transformed features the listener encoder and the candidate scorer read (by name,
dtype and length from ``features.feature_spec``), the ``tf.TensorSpec`` s the serving
signatures are traced with, and all-zero inputs that build a model's variables without
data. ``ranking.model`` re-exports every public name.
"""

from typing import Dict, Optional

import tensorflow as tf

from features import feature_spec
from ranking import config as config_lib

X = feature_spec.xf
LISTENER_FEATURES = tuple(
    X(f.name) for f in feature_spec.USER_FEATURES + feature_spec.CONTEXT_FEATURES +
    feature_spec.HISTORY_FEATURES + feature_spec.SESSION_FEATURES)
CANDIDATE_FEATURES = tuple(X(f.name) for f in feature_spec.CANDIDATE_FEATURES)
ENCODING_KEYS = ("listener", "session", "history", "history_mask")
_DTYPES = {"int64": tf.int64, "float32": tf.float32}


def _spec(name: str, batch: Optional[int]) -> tf.TensorSpec:
  dtype, length, _ = feature_spec.TRANSFORMED_FEATURES[name]
  shape = [batch] if length == 1 else [batch, length]
  return tf.TensorSpec(shape, _DTYPES[dtype], name=name)


def listener_input_spec(batch: Optional[int] = 1) -> Dict[str, tf.TensorSpec]:
  """Fixed-shape input spec of the listener encoder (one listener per request)."""
  return {k: _spec(k, batch) for k in LISTENER_FEATURES}


def candidate_input_spec(batch: Optional[int] = None) -> Dict[str, tf.TensorSpec]:
  """Input spec of the candidate scorer (N candidates, N free by default)."""
  return {k: _spec(k, batch) for k in CANDIDATE_FEATURES}


def encoding_spec(config: config_lib.ModelConfig,
                  batch: Optional[int] = 1) -> Dict[str, tf.TensorSpec]:
  """Spec of the listener encoding that :meth:`RankingModel.score` consumes."""
  return {
      "listener": tf.TensorSpec([batch, listener_width(config)], tf.float32,
                                name="listener"),
      "session": tf.TensorSpec([batch, config.d_model], tf.float32, name="session"),
      "history": tf.TensorSpec([batch, config.history_len, config.d_model], tf.float32,
                               name="history"),
      "history_mask": tf.TensorSpec([batch, config.history_len], tf.float32,
                                    name="history_mask"),
  }


def zero_features(batch: int = 1) -> Dict[str, tf.Tensor]:
  """Zeros shaped like ``feature_spec.TRANSFORMED_FEATURES`` (``[B]`` or ``[B, L]``).

  One inference call on them creates every variable of a :class:`RankingModel` without
  reading data (see :meth:`RankingModel.build_variables`): all sequences are empty.
  """
  if batch < 1:
    raise ValueError(f"batch must be positive, got {batch}")
  return {name: tf.zeros(_spec(name, batch).shape, _DTYPES[dtype])
          for name, (dtype, _, _) in feature_spec.TRANSFORMED_FEATURES.items()}


def listener_width(config: config_lib.ModelConfig) -> int:
  """Width of the listener vector ``u``."""
  # user id + 5 small categorical embeddings + tenure, projected to 2 * d_model.
  return 2 * config.d_model
