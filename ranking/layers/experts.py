"""A bank of K same-shaped MLP experts evaluated in one batched op per layer.

MMoE and PLE both need "K small MLPs on the same input"; stacking their kernels into one
``[K, in, out]`` tensor turns K matmuls into one einsum, which is what makes the mixtures
cheap on CPU.
"""

from typing import Optional, Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="melody")
class ExpertBank(tf.keras.layers.Layer):
  """K independent ReLU MLP experts over the same input.

  Math: ``h^0_k = x``; ``h^{j}_k = relu(h^{j-1}_k W^j_k + b^j_k)``; output
  ``E = [h^J_1, ..., h^J_K]``.

  Usage:
    experts = ExpertBank(num_experts=4, units=(128, 64))(x)   # [B, 4, 64]

  Args:
    num_experts: K.
    units: hidden widths of every expert; the last is the output width.
    dropout: dropout on each hidden activation.

  Input shape: ``[B, F]``.
  Output shape: ``[B, K, units[-1]]``.
  """

  def __init__(self, num_experts: int, units: Sequence[int], dropout: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    if num_experts <= 0:
      raise ValueError(f"num_experts must be positive, got {num_experts}")
    units = tuple(int(u) for u in units)
    if not units or any(u <= 0 for u in units):
      raise ValueError(f"units must be positive widths, got {units}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.num_experts = num_experts
    self.units = units
    self.dropout = dropout
    self.drop = tf.keras.layers.Dropout(dropout)

  def build(self, input_shape):
    fan_in = int(input_shape[-1])
    self.kernels, self.biases = [], []
    for j, u in enumerate(self.units):
      self.kernels.append(self.add_weight(
          name=f"kernel_{j}", shape=(self.num_experts, fan_in, u),
          initializer="glorot_uniform"))
      self.biases.append(self.add_weight(
          name=f"bias_{j}", shape=(self.num_experts, u), initializer="zeros"))
      fan_in = u
    super().build(input_shape)

  def call(self, x, training: Optional[bool] = None):
    h = tf.einsum("bf,kfu->bku", x, self.kernels[0]) + self.biases[0]
    h = self.drop(tf.nn.relu(h), training=training)
    for w, b in zip(self.kernels[1:], self.biases[1:]):
      h = tf.nn.relu(tf.einsum("bkf,kfu->bku", h, w) + b)
      h = self.drop(h, training=training)
    return h

  def get_config(self):
    config = super().get_config()
    config.update(num_experts=self.num_experts, units=list(self.units),
                  dropout=self.dropout)
    return config
