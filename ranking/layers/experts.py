"""A bank of K same-shaped MLP experts evaluated in one batched op per layer.

MMoE and PLE both need "K small MLPs on the same input"; stacking their kernels into one
``[K, in, out]`` tensor turns K matmuls into one einsum, which is what makes the mixtures
cheap on CPU.
"""

from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

# A mixture input: one ``[N, F]`` tensor, or ``(shared, per_row)`` with ``shared`` of
# batch 1 (one listener, broadcast) or N and ``per_row`` of batch N (the candidates).
MixtureInput = Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]


def input_width(input_shape) -> int:
  """Feature width of a mixture input shape (one shape or a pair of shapes)."""
  if (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
      and isinstance(input_shape[0], (tf.TensorShape, list, tuple))):
    return sum(int(tf.TensorShape(s)[-1]) for s in input_shape)
  return int(tf.TensorShape(input_shape)[-1])


def concat_input(x: MixtureInput) -> tf.Tensor:
  """The ``[N, F]`` tensor of a mixture input (the shared part broadcast to N rows)."""
  if not isinstance(x, (tuple, list)):
    return x
  shared, per_row = x
  shared = tf.broadcast_to(shared, tf.stack([tf.shape(per_row)[0], tf.shape(shared)[1]]))
  return tf.concat([shared, per_row], axis=-1)


def split_matmul(x: MixtureInput, kernel: tf.Tensor, equation: str) -> tf.Tensor:
  """``x @ kernel`` along the feature axis, with the shared part multiplied once.

  For ``x = (shared, per_row)`` the product is ``shared @ K[:F1] + per_row @ K[F1:]``:
  with one listener and N candidates the listener's share of the first layer costs one
  row instead of N (the serving path); the sum broadcasts back to N rows.

  Args:
    x: a tensor or a ``(shared, per_row)`` pair.
    kernel: the kernel; its feature axis is the one ``equation`` contracts.
    equation: an einsum equation contracting the feature axis ``f``.
  """
  if not isinstance(x, (tuple, list)):
    return tf.einsum(equation, x, kernel)
  shared, per_row = x
  axis = equation.split("->")[0].split(",")[1].index("f")
  k_shared, k_rows = tf.split(kernel, [int(shared.shape[-1]), -1], axis=axis)
  return tf.einsum(equation, shared, k_shared) + tf.einsum(equation, per_row, k_rows)


def split_dense(x: MixtureInput, kernel: tf.Tensor) -> tf.Tensor:
  """``x @ kernel`` for a 2-D ``kernel [F, U]``, with the shared part multiplied once.

  The matmul twin of :func:`split_matmul` for plain dense kernels: ``tf.matmul`` on row
  slices of the kernel, no einsum (whose kernel transposes are a large share of a small
  layer's time on CPU).
  """
  if not isinstance(x, (tuple, list)):
    return tf.matmul(x, kernel)
  shared, per_row = x
  f1 = int(shared.shape[-1])
  return tf.matmul(shared, kernel[:f1]) + tf.matmul(per_row, kernel[f1:])


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

  Input shape: ``[B, F]``, or a ``(shared [1 or B, F1], per_row [B, F2])`` pair with
    ``F1 + F2 = F`` (the shared part's first-layer product is computed once).
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
    fan_in = input_width(input_shape)
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
    # First layer as ONE [F, K*U] matmul (the experts side by side): the kernel is laid
    # out [F, K, U] once per call, instead of per einsum and per input part.
    k, u = self.num_experts, self.units[0]
    flat = tf.reshape(tf.transpose(self.kernels[0], [1, 0, 2]), [-1, k * u])
    h = tf.reshape(split_dense(x, flat), [-1, k, u]) + self.biases[0]
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
