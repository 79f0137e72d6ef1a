"""The intent dual encoder (request tower, track tower) and its contrastive fine-tuning.

Owns the two towers and the in-batch softmax with popularity correction.

* Request tower: ``q = normalize(BERT(request) + P_u listener)``, where ``listener`` is
  the ranking model's listener vector (``RankingModel.encode_listener(...)["listener"]``)
  and ``P_u`` starts at zero, so an untrained model *is* the zero-shot encoder; a
  request without a listener uses ``P_u listener = 0``.
* Track tower: ``t = normalize(e + P_t e + E_id[row])`` with ``e`` the pretrained
  encoder's embedding of the track text (tags + title; computed once and cached, the
  catalog does not change during training), ``P_t`` a zero-initialised linear map and
  ``E_id`` a zero-initialised id embedding per catalog row.
* Loss: in-batch negatives, ``logits_ij = q_i . t_j / tau - log Q(j)`` (logQ correction:
  ``Q(j)`` is the chance that track j is a positive in a batch, so popular tracks are not
  pushed down merely for appearing often as negatives), other copies of the positive
  masked out, softmax cross-entropy on the diagonal.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import text_encoder
from ranking.intent import tokenizer as tok_lib

_NEG = -1e9


@dataclasses.dataclass(frozen=True)
class IntentConfig:
  """Hyper-parameters of the intent model and its contrastive fine-tuning.

  Attributes:
    max_length: request width in word pieces (with [CLS]/[SEP]).
    track_max_length: track-text width in word pieces.
    trainable_layers: top BERT blocks fine-tuning may change (the rest stay frozen).
    temperature: softmax temperature ``tau`` on cosine similarities.
    logq_correction: subtract ``log Q(j)`` from in-batch logits.
    batch_size: triplets per step.
    steps: contrastive steps.
    encoder_learning_rate: Adam rate of the BERT blocks.
    head_learning_rate: Adam rate of the projections and id embeddings.
    seed: sampling seed.
  """
  max_length: int = 64
  track_max_length: int = 128
  trainable_layers: int = 2
  temperature: float = 0.05
  logq_correction: bool = True
  batch_size: int = 64
  steps: int = 300
  encoder_learning_rate: float = 5e-5
  head_learning_rate: float = 1e-3
  seed: int = 0

  def __post_init__(self):
    for name in ("max_length", "track_max_length"):
      if getattr(self, name) < 3:
        raise ValueError(f"{name} must be >= 3, got {getattr(self, name)}")
    if self.batch_size < 2:
      raise ValueError(f"batch_size must be >= 2 (in-batch negatives), got {self.batch_size}")
    if self.steps < 0:
      raise ValueError(f"steps must be >= 0, got {self.steps}")
    if self.trainable_layers < 0:
      raise ValueError(f"trainable_layers must be >= 0, got {self.trainable_layers}")
    for name in ("temperature", "encoder_learning_rate", "head_learning_rate"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

  def to_dict(self) -> Dict[str, object]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, object]) -> "IntentConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown IntentConfig fields {sorted(unknown)}")
    return cls(**d)


@tf.keras.utils.register_keras_serializable(package="melody")
class IntentDualEncoder(tf.keras.Model):
  """Request and track towers over one fine-tunable BERT encoder.

  Usage:
    model = IntentDualEncoder(ck.config.to_dict(), num_tracks=N, listener_dim=128)
    model.encoder.load_checkpoint(ck)
    q = model.query(tokenizer(texts), listener)          # [B, H] unit vectors
    t = model.track_vectors(track_text_emb, rows)        # [N, H] unit vectors

  Args:
    bert_config: the encoder's ``BertConfig`` dict.
    num_tracks: catalog rows with an id embedding.
    listener_dim: width of the ranking model's listener vector (0: no personalization).
    trainable_layers: BERT blocks that fine-tuning may change.
    temperature: softmax temperature.
  """

  def __init__(self, bert_config, num_tracks: int, listener_dim: int = 0,
               trainable_layers: int = 2, temperature: float = 0.05, **kwargs):
    super().__init__(**kwargs)
    if num_tracks < 1:
      raise ValueError(f"num_tracks must be positive, got {num_tracks}")
    if listener_dim < 0:
      raise ValueError(f"listener_dim must be >= 0, got {listener_dim}")
    if not temperature > 0:
      raise ValueError(f"temperature must be positive, got {temperature}")
    if isinstance(bert_config, ckpt_lib.BertConfig):
      bert_config = bert_config.to_dict()
    self.bert_config = dict(bert_config)
    self.num_tracks, self.listener_dim = int(num_tracks), int(listener_dim)
    self.trainable_layers, self.temperature = int(trainable_layers), float(temperature)
    hidden = ckpt_lib.BertConfig.from_dict(self.bert_config).hidden_size
    self.hidden_size = hidden
    self.encoder = text_encoder.BertTextEncoder(self.bert_config,
                                                trainable_layers=trainable_layers,
                                                name="text_encoder")
    self.listener_projection = (
        tf.keras.layers.Dense(hidden, use_bias=False, kernel_initializer="zeros",
                              name="listener_projection") if listener_dim else None)
    self.track_projection = tf.keras.layers.Dense(hidden, use_bias=False,
                                                  kernel_initializer="zeros",
                                                  name="track_projection")
    self.track_ids = tf.keras.layers.Embedding(num_tracks, hidden, embeddings_initializer="zeros",
                                               name="track_id_embedding")
    self._build_all()

  def _build_all(self):
    ids = tf.zeros([1, 3], tf.int32)
    inputs = {"input_ids": ids, "input_mask": tf.ones_like(ids)}
    if self.listener_dim:
      inputs["listener"] = tf.zeros([1, self.listener_dim])
    self(inputs)
    self.track_vectors(tf.zeros([1, self.hidden_size]), tf.zeros([1], tf.int32))

  @property
  def head_variables(self) -> List[tf.Variable]:
    """Projections and id embeddings (everything trainable outside BERT)."""
    layers = [self.track_projection, self.track_ids]
    if self.listener_projection is not None:
      layers.append(self.listener_projection)
    return [v for layer in layers for v in layer.trainable_variables]

  def query(self, tokens: Mapping[str, tf.Tensor], listener: Optional[tf.Tensor] = None,
            training=None) -> tf.Tensor:
    """Request vectors ``[B, H]`` (unit norm) from tokenizer outputs and listeners."""
    return self.personalize(self.encoder(tokens, training=training), listener)

  def personalize(self, text_vectors: tf.Tensor, listener: Optional[tf.Tensor]) -> tf.Tensor:
    """``normalize(text_vectors + P_u listener)``; the text vectors alone without a listener."""
    q = text_vectors
    if listener is not None and self.listener_projection is not None:
      q = q + self.listener_projection(tf.cast(listener, q.dtype))
    return tf.math.l2_normalize(q, axis=-1, epsilon=1e-12)

  def track_vectors(self, text_embeddings: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """Track vectors ``[N, H]`` (unit norm) from cached text embeddings and catalog rows.

    Rows outside ``[0, num_tracks)`` (e.g. -1: a track the model was not trained on)
    get no id embedding.
    """
    e = tf.convert_to_tensor(text_embeddings, tf.float32)
    rows = tf.cast(rows, tf.int32)
    known = tf.logical_and(rows >= 0, rows < self.num_tracks)
    ids = self.track_ids(tf.where(known, rows, tf.zeros_like(rows)))
    ids = ids * tf.cast(known, ids.dtype)[:, tf.newaxis]
    return tf.math.l2_normalize(e + self.track_projection(e) + ids, axis=-1, epsilon=1e-12)

  def call(self, inputs, training=None):
    return self.query(inputs, inputs.get("listener"), training=training)

  def get_config(self):
    return {"bert_config": self.bert_config, "num_tracks": self.num_tracks,
            "listener_dim": self.listener_dim, "trainable_layers": self.trainable_layers,
            "temperature": self.temperature, "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


# --------------------------------------------------------------------- helpers
def encode_texts(encoder: text_encoder.BertTextEncoder, tokenizer: tok_lib.WordPieceTokenizer,
                 texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
  """Embeddings ``[n, H]`` of many texts; batches of similar length, padding trimmed."""
  texts = [str(t) for t in texts]
  out = np.zeros((len(texts), encoder.bert_config.hidden_size), np.float32)
  if not texts:
    return out
  tokens = tokenize(tokenizer, texts)
  lengths = tokens["input_mask"].sum(1)
  order = np.argsort(lengths, kind="stable")
  fn = _encode_fn(encoder)
  for start in range(0, len(texts), batch_size):
    rows = order[start:start + batch_size]
    width = int(lengths[rows].max())
    out[rows] = fn(tf.constant(tokens["input_ids"][rows, :width]),
                   tf.constant(tokens["input_mask"][rows, :width])).numpy()
  return out


def _encode_fn(encoder):
  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                tf.TensorSpec([None, None], tf.int32)], reduce_retracing=True)
  def fn(ids, mask):
    return encoder({"input_ids": ids, "input_mask": mask}, training=False)
  return fn


def tokenize(tokenizer: tok_lib.WordPieceTokenizer, texts: Sequence[str],
             batch_size: int = 4096) -> Dict[str, np.ndarray]:
  """Tokenizer outputs for many texts as numpy arrays."""
  ids, masks = [], []
  for start in range(0, len(texts), batch_size):
    out = tokenizer(tf.constant(list(texts[start:start + batch_size])))
    ids.append(out["input_ids"].numpy())
    masks.append(out["input_mask"].numpy())
  return {"input_ids": np.concatenate(ids), "input_mask": np.concatenate(masks)}


def positive_log_q(positives: np.ndarray, num_tracks: int, batch_size: int) -> np.ndarray:
  """``log Q(j)``: log-probability that track j is a positive in a batch (add-one smoothed)."""
  counts = np.bincount(np.asarray(positives, np.int64), minlength=num_tracks).astype(np.float64)
  p = (counts + 1.0) / (counts.sum() + num_tracks)
  q = 1.0 - np.power(1.0 - p, batch_size)
  return np.log(q).astype(np.float32)


def in_batch_loss(q: tf.Tensor, t: tf.Tensor, rows: tf.Tensor, log_q: Optional[tf.Tensor],
                  temperature: float) -> tf.Tensor:
  """Mean in-batch softmax cross-entropy with logQ correction and duplicate masking.

  Args:
    q: ``[B, H]`` request vectors.
    t: ``[B, H]`` vectors of each request's positive track.
    rows: ``[B]`` catalog rows of the positives (duplicates are masked as negatives).
    log_q: ``[B]`` ``log Q`` of the positives, or None for no correction.
    temperature: ``tau``.
  """
  logits = tf.matmul(q, t, transpose_b=True) / temperature
  if log_q is not None:
    logits = logits - log_q[tf.newaxis, :]
  same = tf.equal(rows[:, tf.newaxis], rows[tf.newaxis, :])
  eye = tf.eye(tf.shape(rows)[0], dtype=tf.bool)
  logits = tf.where(tf.logical_and(same, tf.logical_not(eye)), _NEG, logits)
  labels = tf.range(tf.shape(rows)[0])
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def contrastive_fit(model: IntentDualEncoder, config: IntentConfig,
                    request_tokens: Mapping[str, np.ndarray], positives: np.ndarray,
                    track_text_embeddings: np.ndarray,
                    listeners: Optional[np.ndarray] = None,
                    listener_vectors: Optional[np.ndarray] = None,
                    log_every: int = 0) -> List[float]:
  """Contrastive fine-tuning with in-batch negatives.

  Args:
    model: the dual encoder (pretrained weights loaded).
    config: steps, batch size, learning rates, temperature, logQ switch, seed.
    request_tokens: tokenizer outputs of the triplets' requests (``[n, T]`` each).
    positives: ``[n]`` catalog rows of the positive tracks.
    track_text_embeddings: ``[N, H]`` cached text embeddings of the catalog.
    listeners: ``[n]`` listener rows of the triplets (with ``listener_vectors``).
    listener_vectors: ``[n_listeners, d]`` ranking-model listener vectors.
    log_every: print the mean loss every so many steps (0: quiet).

  Returns:
    The loss of every step.
  """
  positives = np.asarray(positives, np.int64)
  n = len(positives)
  if n < config.batch_size:
    raise ValueError(f"need at least batch_size={config.batch_size} triplets, got {n}")
  personal = listener_vectors is not None and model.listener_projection is not None
  if personal and (listeners is None or len(listeners) != n):
    raise ValueError("listeners must give one listener row per triplet")
  log_q_all = tf.constant(positive_log_q(positives, model.num_tracks, config.batch_size))
  text_emb = tf.constant(np.asarray(track_text_embeddings, np.float32))
  lvecs = tf.constant(np.asarray(listener_vectors, np.float32)) if personal else None
  enc_vars = model.encoder.trainable_variables
  head_vars = model.head_variables
  enc_opt = tf.keras.optimizers.Adam(config.encoder_learning_rate)
  head_opt = tf.keras.optimizers.Adam(config.head_learning_rate)

  @tf.function(reduce_retracing=True)
  def step(ids, mask, rows, lrows):
    with tf.GradientTape() as tape:
      listener = tf.gather(lvecs, lrows) if personal else None
      q = model.query({"input_ids": ids, "input_mask": mask}, listener, training=True)
      t = model.track_vectors(tf.gather(text_emb, rows), rows)
      log_q = tf.gather(log_q_all, rows) if config.logq_correction else None
      loss = in_batch_loss(q, t, rows, log_q, config.temperature)
    grads = tape.gradient(loss, enc_vars + head_vars)
    if enc_vars:
      enc_opt.apply_gradients(zip(grads[:len(enc_vars)], enc_vars))
    head_opt.apply_gradients(zip(grads[len(enc_vars):], head_vars))
    return loss

  rng = np.random.default_rng(config.seed)
  ids_all, mask_all = request_tokens["input_ids"], request_tokens["input_mask"]
  lrows_all = (np.asarray(listeners, np.int64) if listeners is not None
               else np.zeros(n, np.int64))
  losses = []
  for s in range(config.steps):
    b = rng.choice(n, config.batch_size, replace=False)
    width = int(mask_all[b].sum(1).max())
    loss = step(tf.constant(ids_all[b, :width]), tf.constant(mask_all[b, :width]),
                tf.constant(positives[b].astype(np.int32)), tf.constant(lrows_all[b]))
    losses.append(float(loss))
    if log_every and (s + 1) % log_every == 0:
      print(f"[intent] contrastive step {s + 1}/{config.steps} "
            f"loss {np.mean(losses[-log_every:]):.4f}", flush=True)
  return losses
