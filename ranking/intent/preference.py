"""Hybrid-reward preference optimization of the intent model (GRPO-style).

Owns the rewards, the group-normalised advantages and the policy-gradient loop that
follows contrastive fine-tuning.

The policy is the dual encoder's distribution over the whole catalog,
``pi(t | request, listener) = softmax_t(q . t / tau)``. Per request a group of K tracks
is sampled from it (with replacement, so over-confident policies pay for duplicates).
Each sampled track gets a hybrid reward

  ``r = w_intent * intent + w_personal * personal + w_constraint * constraint``

* intent: the fraction of the request's intent clauses the track's tags satisfy (0 when
  it carries a negated tag): ``intents.intent_match``;
* personal: the ranking model's interest score for (listener, track), z-scored per
  listener over the catalog;
* constraint: -1 for a track already sampled earlier in the group, -1 for a row that is
  not an available catalog track.

Advantages are normalised within each group, ``A = (r - mean_K r) / (std_K r + eps)``
(GRPO: the group is its own baseline, no value network). The loss is the clipped
surrogate ``-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` with ``rho = pi / pi_old``
plus ``beta * KL(pi || pi_ref)``, computed exactly over the catalog, where ``pi_ref`` is the
contrastive model (its request and track vectors are cached before the loop). Each group
is used for one gradient step, so ``pi_old = pi`` numerically and the clip is inert; it is
kept so that more than one step per group stays correct. Id embeddings stay frozen, so
tracks never seen as positives remain unseen.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from ranking.intent import dual_encoder
from ranking.intent import intents
@dataclasses.dataclass(frozen=True)
class PreferenceConfig:
  """Settings of the preference optimization.

  Attributes:
    steps: gradient steps (one sampled group per request per step).
    batch_size: requests per step.
    group_size: K, tracks sampled per request.
    intent_weight, personal_weight, constraint_weight: reward weights.
    kl_weight: beta of the KL term to the contrastive model.
    clip: epsilon of the clipped surrogate.
    encoder_learning_rate: Adam rate of the trainable BERT blocks.
    head_learning_rate: Adam rate of the listener and track projections.
    seed: sampling seed.
  """
  steps: int = 60
  batch_size: int = 16
  group_size: int = 8
  intent_weight: float = 1.0
  personal_weight: float = 0.5
  constraint_weight: float = 1.0
  kl_weight: float = 0.1
  clip: float = 0.2
  encoder_learning_rate: float = 1e-5
  head_learning_rate: float = 3e-4
  seed: int = 0

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")
    if self.group_size < 2:
      raise ValueError(f"group_size must be >= 2 (a group is its own baseline), got "
                       f"{self.group_size}")
    if self.steps < 0:
      raise ValueError(f"steps must be >= 0, got {self.steps}")
    for name in ("intent_weight", "personal_weight", "constraint_weight", "kl_weight"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    if not 0 < self.clip < 1:
      raise ValueError(f"clip must be in (0, 1), got {self.clip}")

  def to_dict(self) -> Dict[str, object]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, object]) -> "PreferenceConfig":
    return cls(**d)


def standardize_interest(interest: np.ndarray) -> np.ndarray:
  """Per-listener z-scores of an ``[L, N]`` interest matrix (0 where constant)."""
  x = np.asarray(interest, np.float64)
  sd = x.std(axis=1, keepdims=True)
  return ((x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def constraint_penalty(sampled: np.ndarray, num_tracks: int,
                       available: Optional[np.ndarray] = None) -> np.ndarray:
  """``[B, K]`` penalty: -1 for a repeat within the group, -1 for a non-catalog row."""
  sampled = np.asarray(sampled, np.int64)
  out = np.zeros(sampled.shape, np.float32)
  for b in range(sampled.shape[0]):
    seen = set()
    for j, n in enumerate(sampled[b]):
      n = int(n)
      if n in seen:
        out[b, j] -= 1.0
      seen.add(n)
      if n < 0 or n >= num_tracks or (available is not None and not available[n]):
        out[b, j] -= 1.0
  return out


def hybrid_rewards(requests: Sequence[intents.Request], tag_keys, sampled: np.ndarray,
                   listener_rows: np.ndarray, personal: Optional[np.ndarray],
                   config: PreferenceConfig,
                   available: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """Reward components and total for sampled tracks.

  Args:
    requests: the B requests.
    tag_keys: canonical tag keys per catalog row.
    sampled: ``[B, K]`` sampled catalog rows.
    listener_rows: ``[B]`` listener of each request.
    personal: ``[L, N]`` standardized interest (see ``standardize_interest``) or None.
    config: reward weights.
    available: optional ``[N]`` bool, the rows that may be recommended.

  Returns:
    dict with ``intent``, ``personal``, ``constraint`` and ``total``, each ``[B, K]``.
  """
  sampled = np.asarray(sampled, np.int64)
  n = len(tag_keys)
  intent = intents.intent_match(requests, tag_keys, sampled)
  if personal is not None:
    safe = np.clip(sampled, 0, n - 1)
    pers = np.asarray(personal)[np.asarray(listener_rows)[:, None], safe].astype(np.float32)
    pers = np.where((sampled >= 0) & (sampled < n), pers, 0.0).astype(np.float32)
  else:
    pers = np.zeros(sampled.shape, np.float32)
  con = constraint_penalty(sampled, n, available)
  total = (config.intent_weight * intent + config.personal_weight * pers
           + config.constraint_weight * con)
  return {"intent": intent, "personal": pers, "constraint": con,
          "total": total.astype(np.float32)}


def group_advantages(rewards: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """``(r - mean) / (std + eps)`` within each group (row) of ``[B, K]`` rewards."""
  r = np.asarray(rewards, np.float64)
  a = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)
  return a.astype(np.float32)


def grpo_loss(logits: tf.Tensor, old_log_probs: tf.Tensor, ref_log_probs: tf.Tensor,
              sampled: tf.Tensor, advantages: tf.Tensor, clip: float,
              kl_weight: float) -> Dict[str, tf.Tensor]:
  """Clipped-surrogate policy loss plus exact KL to the reference over the catalog.

  Args:
    logits: ``[B, N]`` current policy logits.
    old_log_probs: ``[B, K]`` log-probabilities of the samples under the sampling policy.
    ref_log_probs: ``[B, N]`` reference log-probabilities.
    sampled: ``[B, K]`` sampled rows.
    advantages: ``[B, K]`` group-normalised advantages.
    clip: surrogate clip epsilon.
    kl_weight: beta.

  Returns:
    ``loss``, ``policy_loss`` and ``kl`` scalars.
  """
  log_p = tf.nn.log_softmax(logits, axis=-1)
  chosen = tf.gather(log_p, sampled, batch_dims=1)
  ratio = tf.exp(chosen - old_log_probs)
  surrogate = tf.minimum(ratio * advantages,
                         tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages)
  policy_loss = -tf.reduce_mean(surrogate)
  kl = tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * (log_p - ref_log_probs), axis=-1))
  return {"loss": policy_loss + kl_weight * kl, "policy_loss": policy_loss, "kl": kl}


def grpo_fit(model: dual_encoder.IntentDualEncoder, config: PreferenceConfig,
             requests: Sequence[intents.Request], request_tokens: Mapping[str, np.ndarray],
             track_text_embeddings: np.ndarray, tag_keys,
             listeners: Optional[np.ndarray] = None,
             listener_vectors: Optional[np.ndarray] = None,
             interest: Optional[np.ndarray] = None,
             available: Optional[np.ndarray] = None,
             log_every: int = 0) -> Dict[str, List[float]]:
  """Preference optimization of a contrastively fine-tuned dual encoder, in place.

  Args:
    model: the dual encoder after contrastive fine-tuning (it is also the reference).
    config: a ``PreferenceConfig``.
    requests: training requests (training phrasings only).
    request_tokens: their tokenizer outputs.
    track_text_embeddings: ``[N, H]`` cached track text embeddings.
    tag_keys: canonical tag keys per catalog row.
    listeners: ``[n]`` listener row per request (with ``listener_vectors``).
    listener_vectors: ``[L, d]`` ranking-model listener vectors.
    interest: ``[L, N]`` ranking-model interest scores (the personal reward).
    available: optional ``[N]`` bool of recommendable rows.
    log_every: print means every so many steps (0: quiet).

  Returns:
    Per-step ``reward``, ``intent``, ``personal``, ``constraint``, ``kl`` means.
  """
  n_req = len(requests)
  if n_req < config.batch_size:
    raise ValueError(f"need at least batch_size={config.batch_size} requests, got {n_req}")
  num_tracks = len(tag_keys)
  text_emb = tf.constant(np.asarray(track_text_embeddings, np.float32))
  rows_all = tf.range(num_tracks, dtype=tf.int32)
  personal_inputs = listener_vectors is not None and model.listener_projection is not None
  lvecs = tf.constant(np.asarray(listener_vectors, np.float32)) if personal_inputs else None
  lrows = (np.asarray(listeners, np.int64) if listeners is not None
           else np.zeros(n_req, np.int64))
  personal = standardize_interest(interest) if interest is not None else None
  ids_all, mask_all = request_tokens["input_ids"], request_tokens["input_mask"]
  tau = model.temperature

  def query(ids, mask, lr, training):
    listener = tf.gather(lvecs, lr) if personal_inputs else None
    return model.query({"input_ids": ids, "input_mask": mask}, listener, training=training)

  # The reference policy: the contrastive model's vectors, cached once.
  ref_tracks = model.track_vectors(text_emb, rows_all)
  ref_q = np.zeros((n_req, model.hidden_size), np.float32)
  for s in range(0, n_req, 256):
    b = np.arange(s, min(s + 256, n_req))
    width = int(mask_all[b].sum(1).max())
    ref_q[b] = query(tf.constant(ids_all[b, :width]), tf.constant(mask_all[b, :width]),
                     tf.constant(lrows[b]), False).numpy()
  ref_q = tf.constant(ref_q)

  frozen = {id(v) for v in model.track_ids.trainable_variables}
  enc_vars = model.encoder.trainable_variables
  head_vars = [v for v in model.head_variables if id(v) not in frozen]
  enc_opt = tf.keras.optimizers.Adam(config.encoder_learning_rate)
  head_opt = tf.keras.optimizers.Adam(config.head_learning_rate)

  @tf.function(reduce_retracing=True)
  def policy_logits(ids, mask, lr):
    q = query(ids, mask, lr, False)
    return tf.matmul(q, model.track_vectors(text_emb, rows_all), transpose_b=True) / tau

  @tf.function(reduce_retracing=True)
  def step(ids, mask, lr, req_rows, sampled, old_lp, adv):
    ref_lp = tf.nn.log_softmax(
        tf.matmul(tf.gather(ref_q, req_rows), ref_tracks, transpose_b=True) / tau, axis=-1)
    with tf.GradientTape() as tape:
      q = query(ids, mask, lr, True)
      logits = tf.matmul(q, model.track_vectors(text_emb, rows_all), transpose_b=True) / tau
      out = grpo_loss(logits, old_lp, ref_lp, sampled, adv, config.clip, config.kl_weight)
    grads = tape.gradient(out["loss"], enc_vars + head_vars)
    if enc_vars:
      enc_opt.apply_gradients(zip(grads[:len(enc_vars)], enc_vars))
    head_opt.apply_gradients(zip(grads[len(enc_vars):], head_vars))
    return out

  rng = np.random.default_rng(config.seed)
  tf_seed = int(rng.integers(1 << 30))
  history: Dict[str, List[float]] = {k: [] for k in ("reward", "intent", "personal",
                                                     "constraint", "kl")}
  for s in range(config.steps):
    b = rng.choice(n_req, config.batch_size, replace=False)
    width = int(mask_all[b].sum(1).max())
    ids, mask = tf.constant(ids_all[b, :width]), tf.constant(mask_all[b, :width])
    lr = tf.constant(lrows[b])
    logits = policy_logits(ids, mask, lr)
    sampled = tf.random.stateless_categorical(logits, config.group_size,
                                              seed=[tf_seed, s], dtype=tf.int32)
    old_lp = tf.gather(tf.nn.log_softmax(logits, axis=-1), sampled, batch_dims=1)
    rewards = hybrid_rewards([requests[i] for i in b], tag_keys, sampled.numpy(), lrows[b],
                             personal, config, available)
    adv = group_advantages(rewards["total"])
    out = step(ids, mask, lr, tf.constant(b.astype(np.int32)), sampled, old_lp,
               tf.constant(adv))
    history["reward"].append(float(rewards["total"].mean()))
    for k in ("intent", "personal", "constraint"):
      history[k].append(float(rewards[k].mean()))
    history["kl"].append(float(out["kl"]))
    if log_every and (s + 1) % log_every == 0:
      means = {k: np.mean(v[-log_every:]) for k, v in history.items()}
      print(f"[intent] preference step {s + 1}/{config.steps} "
            + " ".join(f"{k} {v:.3f}" for k, v in means.items()), flush=True)
  return history
