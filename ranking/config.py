"""Hyper-parameters of the ranking model and of its training, as frozen dataclasses.

``ModelConfig`` fixes the architecture (sizes of the shared embeddings, the Transformer
history encoder, the session encoder, the mixture of experts and the task towers) and the
interest-score weights; ``TrainConfig`` fixes the optimisation (batch size, learning rate,
loss weights, staged schedule, dynamic weighting and the completion-floor constraint).
Both validate themselves on construction, round-trip through plain dicts (for Keras
``get_config``) and are chosen by name on the command line (``mmoe``, ``ple``,
``shared_bottom``, ``single:<task>``) through :func:`model_config_from_name`.
"""

import dataclasses
from typing import Dict, Optional, Tuple

from features import feature_spec

MIXTURES = ("mmoe", "ple", "shared_bottom")
FFN_ACTIVATIONS = ("relu", "gelu")
# Precision of the Transformer blocks' matmuls in training steps (inference is float32);
# "auto" is resolved by ranking.hardware when the blocks are built.
TRAIN_PRECISIONS = ("auto", "float32", "mixed_bfloat16")
DYNAMIC_WEIGHTING = ("none", "uncertainty")
# How the model reads the play sequences: the full model, one of its two ablations
# without the Transformer, or the causal form sequence-level training needs (see
# ModelConfig.sequence_model).
SEQUENCE_MODELS = ("transformer", "target_attention", "pooled", "causal")


def _positive(name: str, value) -> None:
  if value <= 0:
    raise ValueError(f"{name} must be positive, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of :class:`ranking.model.RankingModel`.

  Attributes:
    d_model: width of every token and of the shared id embeddings.
    num_layers: pre-LayerNorm Transformer blocks over the long-term history.
    num_heads: attention heads (history encoder, session encoder, target attention).
    ff_mult: feed-forward width of a Transformer block, in multiples of ``d_model``.
    ffn_activation: feed-forward activation, "relu" (default, cheaper on CPU) or "gelu".
    dropout: dropout rate inside the Transformer blocks and the experts.
    user_id_dropout: share of training examples whose listener id is sent to an OOV
      bucket (``embeddings.OovDropout``), so that listeners unseen in training (OOV at
      serving time) meet trained rows; 0 disables it.
    history_len: long-term history length (``feature_spec.HISTORY_LEN``).
    session_len: short-term session length (``feature_spec.SESSION_LEN``).
    session_layers: Transformer blocks of the session encoder.
    mixture: "mmoe", "ple" or "shared_bottom".
    num_experts: MMoE experts.
    expert_units: hidden widths of one expert (and of the shared bottom).
    ple_shared_experts: PLE shared experts per level.
    ple_task_experts: PLE task-specific experts per task and level.
    ple_levels: stacked CGC levels of PLE (1 = CGC).
    tower_units: hidden widths of each task tower.
    tasks: the task heads to build, keys of ``feature_spec.TASKS``; one task makes a
      single-task model.
    interest_weights: ``(w_c, w_l, w_s)`` of the interest score
      ``S_int = w_c * p_complete + w_l * p_like - w_s * p_skip``.
    skip_profile_head: adds the interest output ``skip_profile``, a softmax over the
      skip profiles trained on the ``skip_profile`` class label (``ranking.tasks``);
      needs the interest task.
    train_precision: "mixed_bfloat16" (the history and session Transformer blocks
      compute in bfloat16 in training steps, with float32 weights, LayerNorms, residual
      stream and everything outside the blocks), "float32", or "auto" (the default):
      "mixed_bfloat16" where the hardware has native bfloat16 (a CPU with AVX512-BF16 or
      AMX, or a GPU of compute capability >= 8.0), "float32" elsewhere, decided when the
      model is built (``ranking.hardware.resolve_train_precision``) and kept as "auto" in
      the config. Inference (evaluation, export, serving) is float32 either way.
    sequence_model: how the history and the session are read. "transformer" (the
      default): the Transformer blocks mix the plays, then target attention and the
      pooled means. "target_attention": no blocks (each play token encoded alone, a
      DIN-style model), target attention over the tokens and their means.
      "pooled": no blocks and no target attention, only the masked means of the play
      tokens (a flat multi-task model whose sequence input is averaged; the means
      carry the mean completion and skip of the history and of the session).
      "causal": causal Transformer blocks over the history in time order, with tokens
      that do not depend on the impression (no positions, no gaps), so one pass over a
      listener's plays gives every later impression its history encoding
      (``ranking.sequence_training``); the session is the mean of the encoded plays of
      the current session, the most recent play joins the listener part (as
      ``recent_play``), and target attention reads the encoded plays.
    promo_gated_exposure: the exposure prediction of a candidate that is not promoted
      is exactly 0 and sends no gradient (``ranking.tasks.gate_promo_only``); the head
      learns from promo rows only. False trains it on every row.
    recent_play: the encoded most recent play (history position 0, which has attended
      to the whole history) joins the listener part of the mixture input next to the
      history mean: the way a causal sequence model summarises a sequence by its last
      position. It carries what the most recent play says (the listener's skip
      momentum), which a mean over 50 plays dilutes.
  """
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 2
  ff_mult: int = 2
  ffn_activation: str = "relu"
  dropout: float = 0.0
  user_id_dropout: float = 0.25
  history_len: int = feature_spec.HISTORY_LEN
  session_len: int = feature_spec.SESSION_LEN
  session_layers: int = 1
  mixture: str = "mmoe"
  num_experts: int = 4
  expert_units: Tuple[int, ...] = (64,)
  ple_shared_experts: int = 2
  ple_task_experts: int = 1
  ple_levels: int = 1
  tower_units: Tuple[int, ...] = (64,)
  tasks: Tuple[str, ...] = tuple(feature_spec.TASKS)
  interest_weights: Tuple[float, float, float] = (0.5, 0.3, 0.2)
  skip_profile_head: bool = False
  train_precision: str = "auto"
  sequence_model: str = "transformer"
  promo_gated_exposure: bool = True
  recent_play: bool = False

  def __post_init__(self):
    for name in ("d_model", "num_layers", "num_heads", "ff_mult", "history_len",
                 "session_len", "session_layers", "num_experts", "ple_shared_experts",
                 "ple_task_experts", "ple_levels"):
      _positive(name, getattr(self, name))
    if self.d_model % self.num_heads:
      raise ValueError(
          f"d_model must be divisible by num_heads, got {self.d_model} and {self.num_heads}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
    if not 0.0 <= self.user_id_dropout < 1.0:
      raise ValueError(f"user_id_dropout must be in [0, 1), got {self.user_id_dropout}")
    if self.ffn_activation not in FFN_ACTIVATIONS:
      raise ValueError(f"ffn_activation must be 'relu' or 'gelu', got {self.ffn_activation!r}")
    if self.train_precision not in TRAIN_PRECISIONS:
      raise ValueError(f"train_precision must be one of {TRAIN_PRECISIONS}, "
                       f"got {self.train_precision!r}")
    if self.sequence_model not in SEQUENCE_MODELS:
      raise ValueError(f"sequence_model must be one of {SEQUENCE_MODELS}, "
                       f"got {self.sequence_model!r}")
    if self.mixture not in MIXTURES:
      raise ValueError(f"mixture must be one of {MIXTURES}, got {self.mixture!r}")
    if not self.expert_units or any(u <= 0 for u in self.expert_units):
      raise ValueError(f"expert_units must be positive widths, got {self.expert_units}")
    if any(u <= 0 for u in self.tower_units):
      raise ValueError(f"tower_units must be positive widths, got {self.tower_units}")
    if not self.tasks:
      raise ValueError("tasks must name at least one task")
    for t in self.tasks:
      if t not in feature_spec.TASKS:
        raise ValueError(f"unknown task {t!r}; known: {tuple(feature_spec.TASKS)}")
    if len(set(self.tasks)) != len(self.tasks):
      raise ValueError(f"tasks must be distinct, got {self.tasks}")
    if len(self.interest_weights) != 3 or any(w < 0 for w in self.interest_weights):
      raise ValueError(
          f"interest_weights must be three non-negative numbers (w_c, w_l, w_s), "
          f"got {self.interest_weights}")
    if self.skip_profile_head and "interest" not in self.tasks:
      raise ValueError(f"skip_profile_head needs the interest task, got tasks {self.tasks}")
    # Tuples, not lists, so the config stays hashable after a JSON round trip.
    object.__setattr__(self, "expert_units", tuple(self.expert_units))
    object.__setattr__(self, "tower_units", tuple(self.tower_units))
    object.__setattr__(self, "tasks", tuple(self.tasks))
    object.__setattr__(self, "interest_weights", tuple(float(w) for w in self.interest_weights))

  @property
  def single_task(self) -> bool:
    return len(self.tasks) == 1

  @property
  def transformer_layers(self) -> Tuple[int, int]:
    """Transformer blocks of the history and of the session encoder (0 in the ablations;
    the causal model has no session encoder of its own)."""
    if self.sequence_model == "causal":
      return self.num_layers, 0
    if self.sequence_model != "transformer":
      return 0, 0
    return self.num_layers, self.session_layers

  @property
  def reads_recent_play(self) -> bool:
    """Whether the encoded most recent play joins the listener part."""
    return self.recent_play or self.sequence_model == "causal"

  @property
  def labels(self) -> Tuple[str, ...]:
    """Label keys predicted by this model, in ``feature_spec.LABEL_KEYS`` order."""
    wanted = {lab for t in self.tasks for lab in feature_spec.TASKS[t]}
    return tuple(k for k in feature_spec.LABEL_KEYS if k in wanted)

  def to_dict(self) -> Dict[str, object]:
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

  @classmethod
  def from_dict(cls, d: Dict[str, object]) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}")
    return cls(**d)


def model_config_from_name(name: str, **overrides) -> ModelConfig:
  """The model config selected by ``melody train --config NAME``.

  Args:
    name: "mmoe", "ple", "shared_bottom" or "single:<task>" (a single-task model with
      a shared bottom, e.g. "single:interest").
    **overrides: other ``ModelConfig`` fields.

  Returns:
    The config.

  Raises:
    ValueError: unknown name or task.
  """
  if name in MIXTURES:
    return ModelConfig(mixture=name, **overrides)
  if name.startswith("single:"):
    task = name.split(":", 1)[1]
    if task not in feature_spec.TASKS:
      raise ValueError(f"unknown task {task!r} in config {name!r}; "
                       f"known: {tuple(feature_spec.TASKS)}")
    overrides.setdefault("mixture", "shared_bottom")
    return ModelConfig(tasks=(task,), **overrides)
  raise ValueError(
      f"unknown model config {name!r}; expected one of {MIXTURES} or 'single:<task>'")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation of the ranking model.

  Attributes:
    batch_size: examples per step.
    learning_rate: Adam learning rate of the dense weights.
    embedding_learning_rate: sparse Adagrad learning rate of the large id tables.
    seed: seed of weights and data order.
    task_weights: static loss weight per task; interest must weigh at least as much as
      every commercial task (checked by ``weighting.StaticWeights``).
    interest_only_steps: staged schedule: steps that train the interest task only.
    ramp_steps: staged schedule: steps over which the commercial weights ramp linearly
      from 0 to their static value after ``interest_only_steps``.
    dynamic_weighting: "none" or "uncertainty" (Kendall et al. 2018, on top of the
      static/staged weights).
    completion_floor: minimum mean predicted completion on organic items; ``None``
      disables the constraint. Set it from an interest-only model's completion.
    floor_lr: dual-ascent step of the completion-floor Lagrange multiplier.
    sequence_level: train on sequence examples (``ranking.sequence_training``): each
      listener's plays encoded once per chunk of ``HISTORY_LEN`` impressions, every
      impression trained in that pass. Needs (and the Trainer sets)
      ``ModelConfig.sequence_model = "causal"``; ``batch_size`` then counts impression
      rows, ``batch_size // HISTORY_LEN`` chunks a step.
    sequence_context: leading steps of each chunk after a listener's first that are read
      but not trained, so every trained impression sees at least this many earlier plays.
  """
  batch_size: int = 512
  learning_rate: float = 1e-3
  embedding_learning_rate: float = 0.05
  seed: int = 7
  task_weights: Tuple[Tuple[str, float], ...] = (
      ("interest", 1.0), ("subscription", 0.5), ("exposure", 0.3))
  interest_only_steps: int = 0
  ramp_steps: int = 0
  dynamic_weighting: str = "none"
  completion_floor: Optional[float] = None
  floor_lr: float = 0.05
  sequence_level: bool = False
  sequence_context: int = 10

  def __post_init__(self):
    _positive("batch_size", self.batch_size)
    _positive("learning_rate", self.learning_rate)
    _positive("embedding_learning_rate", self.embedding_learning_rate)
    if self.interest_only_steps < 0:
      raise ValueError(f"interest_only_steps must be >= 0, got {self.interest_only_steps}")
    if self.ramp_steps < 0:
      raise ValueError(f"ramp_steps must be >= 0, got {self.ramp_steps}")
    if self.dynamic_weighting not in DYNAMIC_WEIGHTING:
      raise ValueError(
          f"dynamic_weighting must be one of {DYNAMIC_WEIGHTING}, "
          f"got {self.dynamic_weighting!r}")
    if self.completion_floor is not None and not 0.0 <= self.completion_floor <= 1.0:
      raise ValueError(f"completion_floor must be in [0, 1], got {self.completion_floor}")
    if self.floor_lr < 0:
      raise ValueError(f"floor_lr must be >= 0, got {self.floor_lr}")
    if not 0 <= self.sequence_context < feature_spec.HISTORY_LEN:
      raise ValueError(f"sequence_context must be in [0, {feature_spec.HISTORY_LEN}), "
                       f"got {self.sequence_context}")
    weights = dict(self.task_weights)
    object.__setattr__(self, "task_weights",
                       tuple((str(t), float(w)) for t, w in weights.items()))
    for t in weights:
      if t not in feature_spec.TASKS:
        raise ValueError(f"unknown task {t!r} in task_weights; known: {tuple(feature_spec.TASKS)}")

  @property
  def weights(self) -> Dict[str, float]:
    return dict(self.task_weights)

  def to_dict(self) -> Dict[str, object]:
    d = dataclasses.asdict(self)
    d["task_weights"] = [[t, w] for t, w in self.task_weights]
    return d

  @classmethod
  def from_dict(cls, d: Dict[str, object]) -> "TrainConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
    d = dict(d)
    if "task_weights" in d:
      tw = d["task_weights"]
      tw = tw.items() if isinstance(tw, dict) else tw
      d["task_weights"] = tuple((str(t), float(w)) for t, w in tw)
    return cls(**d)
