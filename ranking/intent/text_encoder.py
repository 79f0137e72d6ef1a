"""The BERT text encoder in tf_keras: token ids -> mean-pooled sentence embeddings.

Owns the encoder math and the mapping of pretrained ``BertModel`` tensors onto it.
Post-LayerNorm BERT: ``x_0 = LN(E_word[ids] + E_pos[0..T) + E_type[0])``; per block
``a = LN(x + W_o MHA(x, mask))``, ``x' = LN(a + W_2 act(W_1 a))``; the sentence vector is
the mask-weighted mean of the last layer's tokens, L2-normalised (sentence-transformers'
mean pooling + Normalize, as all-MiniLM-L6-v2 was trained). Linear weights are stored as
Keras kernels (``W^T`` of the PyTorch ``[out, in]`` layout).
"""

import math
from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from ranking.intent import checkpoint as ckpt_lib


def _activation(name: str):
  if name == "gelu":
    return lambda x: tf.nn.gelu(x, approximate=False)
  if name == "gelu_new":
    return lambda x: tf.nn.gelu(x, approximate=True)
  return tf.nn.relu


@tf.keras.utils.register_keras_serializable(package="melody")
class BertBlock(tf.keras.layers.Layer):
  """One post-LayerNorm Transformer block (BERT layout).

  Inputs ``x [B, T, H]`` and ``mask [B, T]`` (1 = token); output ``[B, T, H]``.

  Args:
    hidden_size: ``H``.
    num_heads: attention heads, dividing ``H``.
    intermediate_size: feed-forward width.
    layer_norm_eps: LayerNorm epsilon.
    hidden_act: ``gelu``, ``gelu_new`` or ``relu``.
    dropout: dropout rate in training (0 keeps fine-tuning deterministic).
  """

  def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
               layer_norm_eps: float = 1e-12, hidden_act: str = "gelu",
               dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if hidden_size % num_heads:
      raise ValueError(f"hidden_size {hidden_size} not divisible by num_heads {num_heads}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.hidden_size, self.num_heads = hidden_size, num_heads
    self.intermediate_size, self.layer_norm_eps = intermediate_size, layer_norm_eps
    self.hidden_act, self.dropout = hidden_act, dropout
    self.head_size = hidden_size // num_heads
    self.query = tf.keras.layers.Dense(hidden_size, name="query")
    self.key = tf.keras.layers.Dense(hidden_size, name="key")
    self.value = tf.keras.layers.Dense(hidden_size, name="value")
    self.attention_output = tf.keras.layers.Dense(hidden_size, name="attention_output")
    self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                             name="attention_norm")
    self.intermediate = tf.keras.layers.Dense(intermediate_size, name="intermediate")
    self.output_dense = tf.keras.layers.Dense(hidden_size, name="output_dense")
    self.output_norm = tf.keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                          name="output_norm")
    self.drop = tf.keras.layers.Dropout(dropout)
    self._act = _activation(hidden_act)

  def _heads(self, x, batch, length):
    x = tf.reshape(x, [batch, length, self.num_heads, self.head_size])
    return tf.transpose(x, [0, 2, 1, 3])                          # [B, h, T, d]

  def call(self, x, mask, training=None):
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    q = self._heads(self.query(x), batch, length)
    k = self._heads(self.key(x), batch, length)
    v = self._heads(self.value(x), batch, length)
    logits = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.head_size)
    # Large negative (not -inf) on padding keys: a row of all padding stays finite.
    bias = (1.0 - tf.cast(mask, logits.dtype))[:, tf.newaxis, tf.newaxis, :] * -1e9
    probs = tf.nn.softmax(logits + bias, axis=-1)
    ctx = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
    ctx = tf.reshape(ctx, [batch, length, self.hidden_size])
    a = self.attention_norm(x + self.drop(self.attention_output(ctx), training=training))
    ff = self.output_dense(self._act(self.intermediate(a)))
    return self.output_norm(a + self.drop(ff, training=training))

  def get_config(self):
    config = super().get_config()
    config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                  intermediate_size=self.intermediate_size,
                  layer_norm_eps=self.layer_norm_eps, hidden_act=self.hidden_act,
                  dropout=self.dropout)
    return config


@tf.keras.utils.register_keras_serializable(package="melody")
class BertTextEncoder(tf.keras.layers.Layer):
  """BERT encoder with mean pooling: ``(input_ids, input_mask) -> [B, H]`` unit vectors.

  Usage:
    ck = checkpoint.load()                      # all-MiniLM-L6-v2 from its package
    enc = BertTextEncoder(ck.config.to_dict())
    enc.load_checkpoint(ck)
    emb = enc(tokenizer(tf.constant(["calm piano"])))    # [1, 384], norm 1

  Args:
    config: a ``checkpoint.BertConfig`` or its dict.
    trainable_layers: how many of the top blocks fine-tuning may change (``None``: all;
      0: none). Embeddings train only when every block does.
    dropout: dropout rate inside the blocks in training.
    normalize: L2-normalise the pooled vector.
  """

  def __init__(self, config, trainable_layers: Optional[int] = None, dropout: float = 0.0,
               normalize: bool = True, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, ckpt_lib.BertConfig):
      config = config.to_dict()
    self.bert_config = ckpt_lib.BertConfig.from_dict(config)
    c = self.bert_config
    if trainable_layers is not None and not 0 <= trainable_layers <= c.num_hidden_layers:
      raise ValueError(f"trainable_layers must be in [0, {c.num_hidden_layers}] or None, "
                       f"got {trainable_layers}")
    self.trainable_layers, self.dropout, self.normalize = trainable_layers, dropout, normalize
    self.word_embeddings = tf.keras.layers.Embedding(c.vocab_size, c.hidden_size,
                                                     name="word_embeddings")
    self.embedding_norm = tf.keras.layers.LayerNormalization(epsilon=c.layer_norm_eps,
                                                             name="embedding_norm")
    self.blocks = [BertBlock(c.hidden_size, c.num_attention_heads, c.intermediate_size,
                             c.layer_norm_eps, c.hidden_act, dropout, name=f"block_{n}")
                   for n in range(c.num_hidden_layers)]
    frozen = 0 if trainable_layers is None else c.num_hidden_layers - trainable_layers
    if frozen > 0:
      self.word_embeddings.trainable = False
      self.embedding_norm.trainable = False
      for block in self.blocks[:frozen]:
        block.trainable = False
    self._frozen_embeddings = frozen > 0

  def build(self, input_shape):
    c = self.bert_config
    self.position_embeddings = self.add_weight(
        "position_embeddings", [c.max_position_embeddings, c.hidden_size],
        initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02),
        trainable=not self._frozen_embeddings)
    self.token_type_embedding = self.add_weight(
        "token_type_embedding", [c.hidden_size], initializer="zeros",
        trainable=not self._frozen_embeddings)
    super().build(input_shape)

  def sequence_output(self, input_ids, input_mask, training=None):
    """Last-layer token states ``[B, T, H]`` (single-segment inputs: token type 0)."""
    length = tf.shape(input_ids)[1]
    x = (self.word_embeddings(input_ids) + self.position_embeddings[tf.newaxis, :length]
         + self.token_type_embedding)
    x = self.embedding_norm(x)
    for block in self.blocks:
      x = block(x, input_mask, training=training)
    return x

  def call(self, inputs: Mapping[str, tf.Tensor], training=None):
    ids, mask = inputs["input_ids"], inputs["input_mask"]
    x = self.sequence_output(ids, mask, training=training)
    m = tf.cast(mask, x.dtype)[..., tf.newaxis]
    pooled = tf.reduce_sum(x * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1e-9)
    if self.normalize:
      pooled = tf.math.l2_normalize(pooled, axis=-1, epsilon=1e-12)
    return pooled

  def load_checkpoint(self, checkpoint: ckpt_lib.Checkpoint) -> None:
    """Copies a pretrained checkpoint's tensors into this encoder (builds it first).

    Raises:
      ValueError: the checkpoint's sizes differ from this encoder's.
    """
    if checkpoint.config != self.bert_config:
      raise ValueError(f"checkpoint config {checkpoint.config} differs from the encoder's "
                       f"{self.bert_config}")
    if not self.built:
      ids = tf.zeros([1, 2], tf.int32)
      self({"input_ids": ids, "input_mask": tf.ones_like(ids)})
    for var, value in self.weight_map(checkpoint.weights):
      var.assign(value)

  def weight_map(self, w: Mapping[str, np.ndarray]):
    """(variable, value) pairs for every encoder weight from ``BertModel`` tensors."""
    pairs = [
        (self.word_embeddings.embeddings, w["embeddings.word_embeddings.weight"]),
        (self.position_embeddings, w["embeddings.position_embeddings.weight"]),
        (self.token_type_embedding, w["embeddings.token_type_embeddings.weight"][0]),
        (self.embedding_norm.gamma, w["embeddings.LayerNorm.weight"]),
        (self.embedding_norm.beta, w["embeddings.LayerNorm.bias"]),
    ]
    for n, block in enumerate(self.blocks):
      p = f"encoder.layer.{n}."
      dense = {block.query: "attention.self.query", block.key: "attention.self.key",
               block.value: "attention.self.value",
               block.attention_output: "attention.output.dense",
               block.intermediate: "intermediate.dense", block.output_dense: "output.dense"}
      for layer, name in dense.items():
        pairs.append((layer.kernel, w[p + name + ".weight"].T))
        pairs.append((layer.bias, w[p + name + ".bias"]))
      for layer, name in ((block.attention_norm, "attention.output.LayerNorm"),
                          (block.output_norm, "output.LayerNorm")):
        pairs.append((layer.gamma, w[p + name + ".weight"]))
        pairs.append((layer.beta, w[p + name + ".bias"]))
    return pairs

  def get_config(self):
    config = super().get_config()
    config.update(config=self.bert_config.to_dict(), trainable_layers=self.trainable_layers,
                  dropout=self.dropout, normalize=self.normalize)
    return config


def pretrained_encoder(model_dir: Optional[str] = None, trainable_layers: Optional[int] = 0,
                       **kwargs) -> "tuple[BertTextEncoder, ckpt_lib.Checkpoint]":
  """Builds an encoder and loads a checkpoint into it (all-MiniLM-L6-v2 by default).

  Returns:
    ``(encoder, checkpoint)``; the checkpoint carries the vocabulary for the tokenizer.
  """
  checkpoint = ckpt_lib.load(model_dir)
  encoder = BertTextEncoder(checkpoint.config, trainable_layers=trainable_layers, **kwargs)
  encoder.load_checkpoint(checkpoint)
  return encoder, checkpoint


def encoder_outputs(encoder: BertTextEncoder, tokens: Dict[str, tf.Tensor]) -> tf.Tensor:
  """Sentence vectors for tokenizer outputs (a small convenience for callers)."""
  return encoder(tokens, training=False)
