"""The multi-task Transformer ranking model and its serving-efficient scoring path.

``RankingModel`` is a ``tfrs.Model`` in two halves that serving can call separately:

* :meth:`RankingModel.encode_listener` encodes the listener ONCE (user, context, the
  long-term history through the Transformer, the short-term session) into a dict of
  tensors (``listener``, ``session``, ``history``, ``history_mask``);
* :meth:`RankingModel.score` scores candidates against such an encoding. The encoding
  may have batch 1 and the candidates batch N: the listener is broadcast, the target
  attention broadcasts the one history against the N candidate queries, and no sequence
  is copied per candidate. :meth:`RankingModel.score_candidates` chains the two.

Training (``call`` / ``compute_loss``) uses the very same two functions with a listener
per example. Inputs are the transformed features of ``features.feature_spec``
(``TRANSFORMED_FEATURES``; scalars ``[B]`` or ``[B, 1]``, sequences ``[B, L]``); the
labels and their ``<label>_weight`` features ride in the same dict for ``compute_loss``.
Outputs are dicts keyed by label (``interest_completion``, ``interest_skip``,
``interest_like``, ``subscription``, ``exposure``) plus ``interest`` (the interest score
``S_int``, see ``ranking.tasks``) when the interest task is built, and ``skip_profile``
(``[N, 4]`` class probabilities) when ``ModelConfig.skip_profile_head`` is on.
"""

from typing import Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs

from features import feature_spec
from ranking import causal_history
from ranking import config as config_lib
from ranking import sampled_softmax
from ranking import tasks as tasks_lib
from ranking import weighting
from ranking.layers import embeddings
from ranking.layers import mmoe
from ranking.layers import ple
from ranking.layers import sequence_encoder
from ranking.layers import session_encoder
from ranking.layers import shared_bottom
from ranking.layers import target_attention
from ranking.layers import towers
from ranking.model_inputs import CANDIDATE_FEATURES  # noqa: F401  (re-exported)
from ranking.model_inputs import ENCODING_KEYS  # noqa: F401
from ranking.model_inputs import LISTENER_FEATURES  # noqa: F401
from ranking.model_inputs import candidate_input_spec  # noqa: F401
from ranking.model_inputs import encoding_spec  # noqa: F401
from ranking.model_inputs import listener_input_spec  # noqa: F401
from ranking.model_inputs import listener_width as _listener_width
from ranking.model_inputs import zero_features

X = feature_spec.xf


def _small(config) -> int:
  return max(4, config.d_model // 8)


def _scalar(x, dtype=None):
  x = tf.reshape(x, [-1])
  return tf.cast(x, dtype) if dtype is not None else x


def _seq(x, length: int, dtype=None):
  x = tf.reshape(x, [-1, length])
  return tf.cast(x, dtype) if dtype is not None else x


@tf.keras.utils.register_keras_serializable(package="melody")
class RankingModel(tfrs.Model):
  """Multi-task Transformer ranker with a listener encoder and a candidate scorer.

  Math: listener ``u = relu(W_u [E_user; E_seg; E_act; E_surf; E_hour; E_wday; tenure])``
  (in training a share ``user_id_dropout`` of the listener ids is sent to the OOV rows,
  so listeners unseen in training meet trained rows: ``embeddings.OovDropout``),
  history ``H = Transformer(tokens(hist))``, session ``s = SessionEncoder(sess)``,
  history summary ``h = mean(H)``; candidate item ``c = T[track] + A[artist]`` (the
  shared tables), candidate features ``f = [c; tags; duration; popularity; promo]``,
  target attention ``a = TA(c, H)``; mixture input ``x = [u; h; s | f; a; c * a; c * s]``
  (``ModelConfig.sequence_model`` drops the Transformer blocks, or the blocks and ``a``,
  for the sequence ablations)
  passed as the pair (listener part, candidate part) so the listener's share of the
  first mixture layer is computed once per listener; ``reps = Mixture(x)`` (MMoE, PLE or
  shared bottom), ``z_t = tower_t(reps_t)``; predictions through each label's link.
  Loss: ``L = sum_t w_t(step) sum_{label in t} loss_label`` (+ completion floor term),
  see ``ranking.weighting``.

  Usage:
    model = RankingModel(ModelConfig(), TrainConfig())
    model.compile(tf.keras.optimizers.Adam(1e-3))
    model.fit(dataset_of_feature_and_label_dicts, steps_per_epoch=100)
    enc = model.encode_listener(listener_features)        # batch 1
    scores = model.score(enc, candidate_features)          # dict of [N]

  Args:
    config: a ``ModelConfig`` (or its dict).
    train_config: a ``TrainConfig`` (or its dict) for the loss weighting.
  """

  def __init__(self, config: Optional[config_lib.ModelConfig] = None,
               train_config: Optional[config_lib.TrainConfig] = None, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = config_lib.ModelConfig.from_dict(config)
    if isinstance(train_config, dict):
      train_config = config_lib.TrainConfig.from_dict(train_config)
    self.config = config or config_lib.ModelConfig()
    self.train_config = train_config or config_lib.TrainConfig()
    c = self.config
    d, small = c.d_model, _small(c)
    ff = c.ff_mult * d
    card = {k: v[2] for k, v in feature_spec.TRANSFORMED_FEATURES.items()}

    # Listener side.
    self.user_embedding = tf.keras.layers.Embedding(card[X("user_id")], d,
                                                    name="user_embedding")
    self.user_id_dropout = embeddings.OovDropout(c.user_id_dropout, *feature_spec.VOCABS["user"],
                                                 name="user_id_dropout")
    self.context_embeddings = {
        k: tf.keras.layers.Embedding(card[X(k)], small, name=f"{k}_embedding")
        for k in ("user_segment", "context_activity", "context_surface", "context_hour",
                  "context_weekday")}
    self.listener_projection = tf.keras.layers.Dense(
        _listener_width(c), activation="relu", name="listener_projection")
    self.items = embeddings.ItemEmbedding(d, card[X("cand_track_id")],
                                          card[X("cand_artist_id")], name="items")
    history_layers, session_layers = c.transformer_layers
    self.causal = c.sequence_model == "causal"
    self.history_encoder = sequence_encoder.SequenceEncoder(
        d, history_layers, c.num_heads, ff, c.history_len, feature_spec.NUM_GAP_BUCKETS, c.dropout,
        c.ffn_activation, c.train_precision, self.causal, name="history_encoder")
    # The causal model's session is a mean of its encoded history (ranking.causal_history).
    self.session_encoder = None if self.causal else session_encoder.SessionEncoder(
        d, session_layers, c.num_heads, ff, c.session_len, feature_spec.NUM_GAP_BUCKETS,
        c.dropout, c.ffn_activation, c.train_precision, name="session_encoder")

    # Candidate side.
    self.tag_embedding = embeddings.MaskedMeanEmbedding(card[X("cand_tags")], small,
                                                        name="tag_embedding")
    self.duration_embedding = tf.keras.layers.Embedding(
        card[X("cand_duration_s")], small, name="duration_embedding")
    self.promo_embedding = tf.keras.layers.Embedding(2, small, name="promo_embedding")
    self.target_attention = None
    if c.sequence_model != "pooled":
      self.target_attention = target_attention.TargetAttention(d, c.num_heads,
                                                               name="target_attention")

    # Multi-task part.
    if c.mixture == "mmoe":
      self.mixture = mmoe.MMoE(c.tasks, c.num_experts, c.expert_units, c.dropout,
                               name="mmoe")
    elif c.mixture == "ple":
      self.mixture = ple.PLE(c.tasks, c.ple_shared_experts, c.ple_task_experts,
                             c.expert_units, c.ple_levels, c.dropout, name="ple")
    else:
      self.mixture = shared_bottom.SharedBottom(c.tasks, c.expert_units, c.dropout,
                                                name="shared_bottom")
    self.towers = {t: towers.TaskTower(t, c.tower_units, len(tasks_lib.task_labels(t))
                                       + tasks_lib.skip_profile_classes(t, c.skip_profile_head))
                   for t in c.tasks}

    # Loss weighting: the model owns the layers so their variables are tracked.
    self.combiner = weighting.LossCombiner(c.tasks, self.train_config)
    self.uncertainty_weighting = self.combiner.uncertainty
    self.completion_floor = self.combiner.floor
    # Counted once per step under a multi-replica strategy, not once per replica.
    self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_counter",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    # Metrics, keyed by label.
    # Assigned whole: Keras only registers metrics present at assignment time.
    self.label_metrics = {lab: tasks_lib.label_metrics(lab) for lab in c.labels}
    if c.skip_profile_head:
      self.skip_profile_metrics = tasks_lib.class_label_metrics(tasks_lib.SKIP_PROFILE)

  def build_variables(self) -> "RankingModel":
    """Creates every weight by one inference call on :func:`zero_features`.

    What a checkpoint restore needs first; the weights keep their initial values.

    Returns:
      ``self``.
    """
    self(zero_features(2), training=False)
    return self

  # ------------------------------------------------------------------ listener side
  def encode_listener(self, features: Mapping[str, tf.Tensor],
                      training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Encodes listeners (user, context, history, session) once.

    Args:
      features: the ``LISTENER_FEATURES`` (extra keys are ignored), batch ``B``.
      training: Keras training flag.

    Returns:
      ``listener [B, 2d]``, ``session [B, d]``, ``history [B, L, d]``,
      ``history_mask [B, L]`` (float, 1 = real play).
    """
    c = self.config
    L, S = c.history_len, c.session_len
    listener = self.listener_vector(features, training=training)
    h_ids = _seq(features[X("hist_track_ids")], L, tf.int64)
    h_mask = tf.logical_and(sequence_encoder.length_mask(features[X("hist_len")], L),
                            tf.not_equal(h_ids, 0))
    h_items = self.items(h_ids, _seq(features[X("hist_artist_ids")], L, tf.int64))
    h_completion = _seq(features[X("hist_completion")], L, tf.float32)
    h_skip = _seq(features[X("hist_skip")], L, tf.float32)
    if self.causal:
      history = causal_history.encode_history(self.history_encoder, h_items, h_completion,
                                              h_skip, h_mask, training=training)
      return {"listener": listener, "history": history,
              "session": causal_history.recent_mean(history, h_mask, features[X("sess_len")]),
              "history_mask": tf.cast(h_mask, tf.float32)}
    history = self.history_encoder(h_items, h_completion, h_skip,
                                   _seq(features[X("hist_gap_s")], L, tf.int64), h_mask,
                                   training=training)

    s_ids = _seq(features[X("sess_track_ids")], S, tf.int64)
    s_mask = tf.logical_and(sequence_encoder.length_mask(features[X("sess_len")], S),
                            tf.not_equal(s_ids, 0))
    session = self.session_encoder(
        self.items(s_ids, _seq(features[X("sess_artist_ids")], S, tf.int64)),
        _seq(features[X("sess_completion")], S, tf.float32),
        _seq(features[X("sess_skip")], S, tf.float32),
        _seq(features[X("sess_gap_s")], S, tf.int64), s_mask, training=training)
    return {"listener": listener, "session": session, "history": history,
            "history_mask": tf.cast(h_mask, tf.float32)}

  def listener_vector(self, features: Mapping[str, tf.Tensor],
                      training: Optional[bool] = None) -> tf.Tensor:
    """``u``, ``[B, 2d]``: the user and context part of the listener encoding."""
    cats = [self.context_embeddings[k](_scalar(features[X(k)], tf.int64))
            for k in ("user_segment", "context_activity", "context_surface", "context_hour",
                      "context_weekday")]
    tenure = _scalar(features[X("user_tenure_days")], tf.float32)[:, tf.newaxis]
    user = self.user_embedding(self.user_id_dropout(_scalar(features[X("user_id")], tf.int64),
                                                    training=training))
    return self.listener_projection(tf.concat([user] + cats + [tenure], axis=-1))

  # ----------------------------------------------------------------- candidate side
  def _logits(self, encoding: Mapping[str, tf.Tensor], candidates: Mapping[str, tf.Tensor],
              training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Per-label logits ``[N]`` of N candidates against 1 or N listener encodings.

    A sequence-level encoding (``ranking.sequence_training``) has no ``history``: it
    carries its per-candidate summaries ``history_mean``, ``recent_play`` and
    ``attended`` instead.
    """
    item = self.items(_scalar(candidates[X("cand_track_id")], tf.int64),
                      _scalar(candidates[X("cand_artist_id")], tf.int64))    # [N, d]
    n = tf.shape(item)[0]
    tags = self.tag_embedding(_seq(candidates[X("cand_tags")], feature_spec.MAX_TAGS, tf.int64))
    duration = self.duration_embedding(_scalar(candidates[X("cand_duration_s")], tf.int64))
    promo = self.promo_embedding(
        tf.clip_by_value(_scalar(candidates[X("cand_is_promo")], tf.int64), 0, 1))
    popularity = _scalar(candidates[X("cand_popularity")], tf.float32)[:, tf.newaxis]
    num_tags = tf.math.log1p(tf.maximum(
        _scalar(candidates[X("cand_num_tags")], tf.float32), 0.0))[:, tf.newaxis]

    history_mean = encoding.get("history_mean")
    if history_mean is None:
      mask = encoding["history_mask"][..., tf.newaxis]
      history_mean = (tf.reduce_sum(encoding["history"] * mask, axis=1)
                      / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0))

    def per_candidate(x):   # [1 or N, w] -> [N, w]: a cheap vector broadcast, no sequence
      return tf.broadcast_to(x, tf.stack([n, tf.shape(x)[1]]))

    # The listener's share of the mixture input stays at the listener's batch (1 when
    # serving): the mixtures multiply it into their first layer once, not per candidate.
    listener_part = [encoding["listener"], history_mean, encoding["session"]]
    if self.config.reads_recent_play:
      listener_part.append(encoding["recent_play"] if "recent_play" in encoding
                           else encoding["history"][:, 0])
    listener_part = tf.concat(listener_part, axis=-1)
    candidate_part = [item, tags, duration, promo, popularity, num_tags]
    if self.target_attention is not None:
      attended = encoding.get("attended")
      if attended is None:
        attended = self.target_attention(item, encoding["history"], encoding["history_mask"])
      candidate_part += [attended, item * attended]
    candidate_part = tf.concat(candidate_part + [item * per_candidate(encoding["session"])],
                               axis=-1)
    reps = self.mixture((listener_part, candidate_part), training=training)
    out = {}
    for t in self.config.tasks:
      z = self.towers[t](reps[t])
      labels = tasks_lib.task_labels(t)
      for i, lab in enumerate(labels):
        out[lab] = z[:, i]
      if tasks_lib.skip_profile_classes(t, self.config.skip_profile_head):
        out[tasks_lib.SKIP_PROFILE] = z[:, len(labels):]
    if self.config.promo_gated_exposure:
      out = tasks_lib.gate_promo_only(out, _scalar(candidates[X("cand_is_promo")]))
    return out

  def _predictions(self, logits: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    preds = {lab: tasks_lib.link(lab, z) for lab, z in logits.items()
             if lab != tasks_lib.SKIP_PROFILE}
    if tasks_lib.SKIP_PROFILE in logits:
      preds[tasks_lib.SKIP_PROFILE] = tf.nn.softmax(logits[tasks_lib.SKIP_PROFILE])
    if "interest" in self.config.tasks:
      preds[tasks_lib.INTEREST_SCORE] = tasks_lib.interest_score(
          preds, self.config.interest_weights)
    return preds

  def score(self, encoding: Mapping[str, tf.Tensor], candidates: Mapping[str, tf.Tensor],
            training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Scores N candidates against a listener encoding of batch 1 (broadcast) or N.

    Args:
      encoding: output of :meth:`encode_listener`.
      candidates: the ``CANDIDATE_FEATURES``, batch N.
      training: Keras training flag.

    Returns:
      dict label -> ``[N]`` prediction, plus ``interest`` (S_int) if built.
    """
    return self._predictions(self._logits(encoding, candidates, training=training))

  def score_candidates(self, listener_features: Mapping[str, tf.Tensor],
                       candidate_features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Encodes one listener once and scores N candidates against it.

    Args:
      listener_features: ``LISTENER_FEATURES`` with batch 1.
      candidate_features: ``CANDIDATE_FEATURES`` with batch N.

    Returns:
      dict label -> ``[N]`` scores (plus ``interest``).
    """
    return self.score(self.encode_listener(listener_features, training=False),
                      candidate_features, training=False)

  def call(self, features, training: Optional[bool] = None):
    """Per-example scoring (one listener per candidate): the training path."""
    return self.score(self.encode_listener(features, training=training), features,
                      training=training)

  # ------------------------------------------------------------------------ losses
  def task_losses(self, features, logits) -> Dict[str, tf.Tensor]:
    """Per-task losses: the sum of each task's weighted label losses."""
    losses = {}
    for t in self.config.tasks:
      parts = []
      for lab in tasks_lib.task_labels(t):
        if lab not in features or feature_spec.weight_key(lab) not in features:
          raise ValueError(
              f"compute_loss needs label {lab!r} and its weight {feature_spec.weight_key(lab)!r} "
              "in the inputs (weight 0 when the source lacks the label)")
        logit = sampled_softmax.training_logit(lab, logits[lab], features)
        parts.append(tasks_lib.label_loss(lab, logit, _scalar(features[lab]),
                                          _scalar(features[feature_spec.weight_key(lab)])))
      if tasks_lib.skip_profile_classes(t, self.config.skip_profile_head):
        if tasks_lib.SKIP_PROFILE not in features:
          raise ValueError(f"the skip-profile head needs the class label "
                           f"{tasks_lib.SKIP_PROFILE!r} in the inputs (UNKNOWN_CLASS if absent)")
        parts.append(tasks_lib.class_label_loss(logits[tasks_lib.SKIP_PROFILE],
                                                _scalar(features[tasks_lib.SKIP_PROFILE])))
      losses[t] = tf.add_n(parts)
    return losses

  def training_logits(self, features, training: Optional[bool] = None):
    """``(features, logits)`` of the examples a loss is computed on: here one per row of
    ``features``; a sequence-level model returns the rows of its sequences' steps."""
    return features, self._logits(self.encode_listener(features, training=training),
                                  features, training=training)

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    features = inputs
    if isinstance(inputs, (tuple, list)):   # (features, labels) from a Keras dataset
      features = dict(inputs[0])
      features.update(inputs[1])
    features, logits = self.training_logits(features, training=training)
    preds = self._predictions(logits)
    losses = self.task_losses(features, logits)

    organic_completion = None
    if "interest" in self.config.tasks:
      floor = self.completion_floor.floor if self.completion_floor is not None else 0.0
      organic_completion = weighting.organic_mean_completion(
          preds["interest_completion"], features[X("cand_is_promo")], default=floor)
    total = self.combiner(losses, self.step_counter, organic_completion, training=training)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
      # Replicas' gradients and logged losses are summed: each holds its share of the
      # global batch's mean.
      total /= replicas
    if training:
      self.step_counter.assign_add(1)

    for lab, ms in self.label_metrics.items():
      y = _scalar(features[lab], tf.float32)
      w = _scalar(features[feature_spec.weight_key(lab)], tf.float32)
      for m in ms:
        m.update_state(y, preds[lab], sample_weight=w)
    if self.config.skip_profile_head:
      tasks_lib.update_class_label_metrics(self.skip_profile_metrics,
                                           _scalar(features[tasks_lib.SKIP_PROFILE]),
                                           preds[tasks_lib.SKIP_PROFILE])
    return total

  # -------------------------------------------------------------------- optimizers
  @property
  def sparse_trainable_variables(self):
    """The large id tables (user, track, artist): few rows change per step."""
    return [self.user_embedding.embeddings, self.items.track_table.embeddings,
            self.items.artist_table.embeddings]

  @property
  def dense_trainable_variables(self):
    sparse = {id(v) for v in self.sparse_trainable_variables}
    return [v for v in self.trainable_variables if id(v) not in sparse]

  # ------------------------------------------------------------------ serialization
  def get_config(self):
    return {"config": self.config.to_dict(), "train_config": self.train_config.to_dict(),
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


def make_optimizer(model: RankingModel, train_config: config_lib.TrainConfig):
  """Adam for the dense weights, sparse Adagrad for the large id tables.

  Adam's moment decay touches every row of a table every step (8M+ floats here, most of
  the optimizer time on CPU); Adagrad's sparse update touches only the looked-up rows.
  """
  return tfrs.experimental.optimizers.CompositeOptimizer([
      (tf.keras.optimizers.legacy.Adagrad(train_config.embedding_learning_rate),
       lambda: model.sparse_trainable_variables),
      (tf.keras.optimizers.legacy.Adam(train_config.learning_rate),
       lambda: model.dense_trainable_variables),
  ])
