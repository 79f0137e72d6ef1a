"""The linear baseline: one linear model per head over every transformed feature.

For label ``l`` the logit is

    z_l = b_l + v_l . dense(x) + sum_{id features f} w_{f,l}[x_f]
              + sum_{id lists g} mean_{j: x_gj != 0} w_{g,l}[x_gj]

where every id feature (listener, context, candidate track/artist, duration bucket,
promo flag) and every id list (history and session tracks, artists and gap buckets,
candidate tags) has its own weight table with one column per label, and ``dense(x)``
concatenates the float features: tenure, popularity, the per-position completion and
skip of the history and of the session (so the weight of position 0 is the effect of
the most recent play) and ``log1p`` of the lengths and tag count. Each label goes
through its own link and loss (``ranking.tasks``); the heads share nothing but the
inputs. Large id tables train with sparse Adagrad, the rest with Adam, as the ranking
model does (``ranking.model.make_optimizer`` accepts this model).
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from features import feature_spec
from ranking import config as config_lib
from ranking import tasks as tasks_lib

# Id tables at least this large train with sparse Adagrad (listeners, tracks, artists).
_SPARSE_ROWS = 10_000


def _split_features():
  """(id scalars, id lists, float inputs) among ``feature_spec.TRANSFORMED_FEATURES``."""
  ids, id_lists, floats = [], [], []
  for name, (dtype, length, card) in feature_spec.TRANSFORMED_FEATURES.items():
    if dtype == "int64" and card > 0:
      (ids if length == 1 else id_lists).append(name)
    else:
      floats.append(name)
  return tuple(ids), tuple(id_lists), tuple(floats)


ID_FEATURES, ID_LIST_FEATURES, FLOAT_FEATURES = _split_features()


@tf.keras.utils.register_keras_serializable(package="melody")
class LinearRanker(tfrs.Model):
  """Per-head linear (logistic for binary and bounded labels) ranker.

  Usage:
    model = LinearRanker(feature_spec.LABEL_KEYS)
    model.compile(ranking.model.make_optimizer(model, TrainConfig()))
    model.fit(dataset_of_feature_and_label_dicts, steps_per_epoch=300)
    preds = model(features)                  # {label: [B]}

  Args:
    labels: the labels to predict (one linear model each).
    train_config: its ``learning_rate`` and ``embedding_learning_rate`` are used by
      ``make_optimizer``; kept for the config round trip.
  """

  def __init__(self, labels: Sequence[str] = feature_spec.LABEL_KEYS,
               train_config: Optional[config_lib.TrainConfig] = None, **kwargs):
    super().__init__(**kwargs)
    if isinstance(train_config, dict):
      train_config = config_lib.TrainConfig.from_dict(train_config)
    labels = tuple(labels)
    if not labels:
      raise ValueError("labels must name at least one label")
    for lab in labels:
      if lab not in tasks_lib.LABELS:
        raise ValueError(f"unknown label {lab!r}; known: {tuple(tasks_lib.LABELS)}")
    self.labels = labels
    self.train_config = train_config or config_lib.TrainConfig()
    width = len(labels)
    self.id_weights = {
        name: tf.keras.layers.Embedding(feature_spec.TRANSFORMED_FEATURES[name][2], width,
                                        embeddings_initializer="zeros", name=f"w_{name}")
        for name in ID_FEATURES + ID_LIST_FEATURES}
    self.dense = tf.keras.layers.Dense(width, name="dense_weights")
    self.label_metrics = {lab: tasks_lib.label_metrics(lab) for lab in labels}

  def _dense_inputs(self, features) -> tf.Tensor:
    parts = []
    for name in FLOAT_FEATURES:
      length = feature_spec.TRANSFORMED_FEATURES[name][1]
      x = tf.reshape(tf.cast(features[name], tf.float32), [-1, length])
      if feature_spec.TRANSFORMED_FEATURES[name][0] == "int64":   # counts
        x = tf.math.log1p(tf.maximum(x, 0.0))
      parts.append(x)
    return tf.concat(parts, axis=-1)

  def logits(self, features) -> Dict[str, tf.Tensor]:
    """``{label: [B]}`` logits (before each label's link)."""
    z = self.dense(self._dense_inputs(features))
    for name in ID_FEATURES:
      z += self.id_weights[name](tf.reshape(tf.cast(features[name], tf.int64), [-1]))
    for name in ID_LIST_FEATURES:
      length = feature_spec.TRANSFORMED_FEATURES[name][1]
      ids = tf.reshape(tf.cast(features[name], tf.int64), [-1, length])
      mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., tf.newaxis]
      z += (tf.reduce_sum(self.id_weights[name](ids) * mask, axis=1)
            / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0))
    return {lab: z[:, i] for i, lab in enumerate(self.labels)}

  def call(self, features, training: Optional[bool] = None):
    return {lab: tasks_lib.link(lab, z) for lab, z in self.logits(features).items()}

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    features = inputs
    if isinstance(inputs, (tuple, list)):
      features = dict(inputs[0])
      features.update(inputs[1])
    logits = self.logits(features)
    total = []
    for lab, z in logits.items():
      y = tf.reshape(tf.cast(features[lab], tf.float32), [-1])
      w = tf.reshape(tf.cast(features[feature_spec.weight_key(lab)], tf.float32), [-1])
      total.append(tasks_lib.label_loss(lab, z, y, w))
      for m in self.label_metrics[lab]:
        m.update_state(y, tasks_lib.link(lab, z), sample_weight=w)
    return tf.add_n(total)

  @property
  def sparse_trainable_variables(self):
    """The large id tables: few rows change per step."""
    return [layer.embeddings for layer in self.id_weights.values()
            if layer.input_dim >= _SPARSE_ROWS]

  @property
  def dense_trainable_variables(self):
    sparse = {id(v) for v in self.sparse_trainable_variables}
    return [v for v in self.trainable_variables if id(v) not in sparse]

  def get_config(self):
    return {"labels": list(self.labels), "train_config": self.train_config.to_dict(),
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)
