"""The intent model's trainer: TFX-style ``run_fn`` and the plain ``train_intent``.

Owns the I/O and the order of the intent model's training stages (``ranking.intent``
owns the math): load the pretrained checkpoint, embed the catalog's track texts once
with the pretrained encoder (cached for every later stage), synthesize training
triplets from the catalog's real tags, contrastive fine-tuning, hybrid-reward preference
optimization, then an ``IntentCandidates`` module (dense + BM25F hybrid retrieval) over
the whole catalog, or over a separate serving catalog through the catalog refresh,
saved as a SavedModel with the ``intent_candidates`` signature. A training catalog with
a ``split`` column may hold no MTG-Jamendo ``test`` row: the test split is for
evaluation only.

``run_fn(fn_args)`` reads from ``fn_args.custom_config``:

* ``catalog_path`` (required): the training catalog, a ``tracks.parquet`` (row order =
  catalog rows returned by ``intent_candidates`` unless a serving catalog is given);
* ``serving_catalog_path`` (optional): the ``tracks.parquet`` the ranker serves; the
  trained model is refreshed onto it (``ranking.intent.catalog_refresh``) and the saved
  module's rows are its rows;
* ``listener_vectors_path`` / ``interest_path`` (optional ``.npy``): ``[L, d]`` listener
  vectors (``RankingModel.encode_listener(...)["listener"]``) and ``[L, N]`` interest
  scores of those listeners for every catalog row (``RankingModel.score(...)["interest"]``);
  without them the model is not personalised and the personal reward is 0;
* ``intent`` / ``preference`` / ``synth``: dicts of ``IntentConfig`` /
  ``PreferenceConfig`` / ``SynthConfig`` fields; ``num_train_requests``, ``seed``,
  ``lexical_weight``, ``title_weight``, ``model_dir`` (another BERT checkpoint folder).

``fn_args.train_steps`` (when positive) sets the contrastive steps. The module is saved
to ``fn_args.serving_model_dir``; ``assets.extra/intent.json`` records the settings,
the catalog size and the training history.
"""

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from ranking.intent import catalog as catalog_lib
from ranking.intent import catalog_refresh
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import lexical as lexical_lib
from ranking.intent import preference as pref
from ranking.intent import retrieval
from ranking.intent import synthesis
from ranking.intent import tokenizer as tok_lib


@dataclasses.dataclass(frozen=True)
class IntentTrainConfig:
  """Everything ``train_intent`` needs besides the catalog and the listeners.

  Attributes:
    intent: dual encoder and contrastive settings.
    preference: preference-optimization settings (``steps=0`` skips the stage).
    synth: request synthesis settings.
    num_train_requests: training triplets to synthesize.
    num_listeners: listeners for the triplets when no listener vectors are given.
    model_dir: BERT checkpoint folder (default: the installed all-MiniLM-L6-v2).
    seed: seed of the synthesis.
    lexical_weight: weight of the normalised BM25F score in serving (0: dense only).
    title_weight: weight of a title word against a tag word in BM25F.
  """
  intent: dual_encoder.IntentConfig = dual_encoder.IntentConfig()
  preference: pref.PreferenceConfig = pref.PreferenceConfig()
  synth: synthesis.SynthConfig = synthesis.SynthConfig()
  num_train_requests: int = 4000
  num_listeners: int = 1
  model_dir: Optional[str] = None
  seed: int = 0
  lexical_weight: float = 0.1
  title_weight: float = 0.3

  def __post_init__(self):
    if self.num_train_requests < self.intent.batch_size:
      raise ValueError(f"num_train_requests ({self.num_train_requests}) must be at least "
                       f"the batch size ({self.intent.batch_size})")
    if self.num_listeners < 1:
      raise ValueError(f"num_listeners must be >= 1, got {self.num_listeners}")
    if self.lexical_weight < 0 or not 0 <= self.title_weight <= 1:
      raise ValueError(f"need lexical_weight >= 0 and title_weight in [0, 1], got "
                       f"{self.lexical_weight} and {self.title_weight}")

  def to_dict(self) -> Dict[str, object]:
    return {"intent": self.intent.to_dict(), "preference": self.preference.to_dict(),
            "synth": dataclasses.asdict(self.synth),
            "num_train_requests": self.num_train_requests,
            "num_listeners": self.num_listeners, "model_dir": self.model_dir,
            "seed": self.seed, "lexical_weight": self.lexical_weight,
            "title_weight": self.title_weight}

  @classmethod
  def from_dict(cls, d: Optional[Mapping[str, object]]) -> "IntentTrainConfig":
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
      if key not in known:
        continue
      if key == "intent":
        value = dual_encoder.IntentConfig.from_dict(value)
      elif key == "preference":
        value = pref.PreferenceConfig.from_dict(value)
      elif key == "synth":
        value = synthesis.SynthConfig(**value)
      kwargs[key] = value
    return cls(**kwargs)


class IntentRun:
  """One training run, stage by stage (the benchmark evaluates between stages).

  Usage:
    run = IntentRun(catalog_df, IntentTrainConfig(), listener_vectors, interest)
    run.fine_tune()
    run.optimize_preferences()
    run.module().save(path)

  Args:
    catalog: ``TRACK_SCHEMA`` frame in serving row order; with a ``split`` column, no
      row may be of the MTG-Jamendo ``test`` split.
    config: an ``IntentTrainConfig``.
    listener_vectors: optional ``[L, d]`` ranking-model listener vectors.
    interest: optional ``[L, N]`` ranking-model interest scores for every catalog row.
    log_every: print progress every so many steps (0: quiet).
    texts: the track texts in row order (default ``catalog.catalog_texts``); for
      comparing text renderings.
  """

  def __init__(self, catalog: pd.DataFrame, config: IntentTrainConfig = IntentTrainConfig(),
               listener_vectors: Optional[np.ndarray] = None,
               interest: Optional[np.ndarray] = None, log_every: int = 0,
               texts: Optional[Sequence[str]] = None):
    self.catalog = catalog.reset_index(drop=True)
    check_training_splits(self.catalog)
    self.config = config
    self.log_every = log_every
    n = len(self.catalog)
    if listener_vectors is not None:
      listener_vectors = np.asarray(listener_vectors, np.float32)
      if listener_vectors.ndim != 2:
        raise ValueError(f"listener_vectors must be [L, d], got {listener_vectors.shape}")
    if interest is not None:
      interest = np.asarray(interest, np.float32)
      n_l = listener_vectors.shape[0] if listener_vectors is not None else interest.shape[0]
      if interest.shape != (n_l, n):
        raise ValueError(f"interest must be [{n_l}, {n}] (listeners x catalog), got "
                         f"{interest.shape}")
    self.listener_vectors, self.interest = listener_vectors, interest
    self.num_listeners = (listener_vectors.shape[0] if listener_vectors is not None
                          else interest.shape[0] if interest is not None
                          else config.num_listeners)

    ic = config.intent
    self.checkpoint = ckpt_lib.load(config.model_dir)
    self.tokenizer = tok_lib.WordPieceTokenizer(self.checkpoint.vocab, ic.max_length)
    self.track_tokenizer = tok_lib.WordPieceTokenizer(self.checkpoint.vocab,
                                                      ic.track_max_length,
                                                      name="track_tokenizer")
    self.model = dual_encoder.IntentDualEncoder(
        self.checkpoint.config, num_tracks=n,
        listener_dim=0 if listener_vectors is None else listener_vectors.shape[1],
        trainable_layers=min(ic.trainable_layers, self.checkpoint.config.num_hidden_layers),
        temperature=ic.temperature)
    self.model.encoder.load_checkpoint(self.checkpoint)
    self.texts = (catalog_lib.catalog_texts(self.catalog) if texts is None
                  else [str(t) for t in texts])
    if len(self.texts) != n:
      raise ValueError(f"texts has {len(self.texts)} rows, the catalog {n}")
    # The pretrained encoder's track-text embeddings, before any fine-tuning.
    self.track_text_embeddings = dual_encoder.encode_texts(self.model.encoder, self.track_tokenizer,
                                                 self.texts)
    self.synthesizer = synthesis.RequestSynthesizer(self.catalog, config.synth, seed=config.seed)
    self.train = self.synthesizer.triplets(config.num_train_requests, heldout=False,
                                           interest=interest,
                                           n_listeners=self.num_listeners)
    self.train_tokens = dual_encoder.tokenize(self.tokenizer, self.train.texts)
    self.history: Dict[str, object] = {}

  def fine_tune(self) -> List[float]:
    """Contrastive fine-tuning with in-batch negatives and logQ correction."""
    losses = dual_encoder.contrastive_fit(self.model, self.config.intent, self.train_tokens,
                                self.train.track, self.track_text_embeddings,
                                self.train.listener, self.listener_vectors,
                                log_every=self.log_every)
    self.history["contrastive_loss"] = losses
    return losses

  def optimize_preferences(self) -> Dict[str, List[float]]:
    """GRPO-style hybrid-reward preference optimization (after ``fine_tune``)."""
    hist = pref.grpo_fit(self.model, self.config.preference, self.train.requests,
                         self.train_tokens, self.track_text_embeddings,
                         self.synthesizer.tag_keys, self.train.listener,
                         self.listener_vectors, self.interest, log_every=self.log_every)
    self.history["preference"] = hist
    return hist

  def track_vectors(self) -> np.ndarray:
    return retrieval.catalog_track_vectors(self.model, self.track_text_embeddings)

  def query_vectors(self, texts: Sequence[str],
                    listener_rows: Optional[np.ndarray] = None) -> np.ndarray:
    """In-process request vectors (batched, padding trimmed)."""
    tokens = dual_encoder.tokenize(self.tokenizer, list(texts))
    out = np.zeros((len(texts), self.model.hidden_size), np.float32)
    for s in range(0, len(texts), 256):
      b = np.arange(s, min(s + 256, len(texts)))
      width = int(tokens["input_mask"][b].sum(1).max())
      listener = None
      if listener_rows is not None and self.listener_vectors is not None:
        listener = tf.constant(self.listener_vectors[np.asarray(listener_rows)[b]])
      out[b] = self.model.query({"input_ids": tf.constant(tokens["input_ids"][b, :width]),
                                 "input_mask": tf.constant(tokens["input_mask"][b, :width])},
                                listener, training=False).numpy()
    return out

  def lexical_index(self) -> lexical_lib.LexicalIndex:
    """BM25F over the training catalog's tag texts and titles."""
    return lexical_lib.LexicalIndex(self.texts, catalog_lib.catalog_titles(self.catalog),
                                    self.config.title_weight)

  def module(self) -> retrieval.IntentCandidates:
    """The serving module over the whole catalog (track vectors computed now)."""
    weight = self.config.lexical_weight
    return retrieval.IntentCandidates(self.model, self.tokenizer, self.track_vectors(),
                                      self.lexical_index() if weight > 0 else None, weight)

  def refresh(self, tracks: pd.DataFrame) -> retrieval.IntentCandidates:
    """The serving module over another catalog (``catalog_refresh.refresh_module``)."""
    return catalog_refresh.refresh_module(
        self.model, self.checkpoint, self.tokenizer, tracks,
        trained_track_ids=self.catalog["track_id"].astype(str).tolist(),
        track_max_length=self.config.intent.track_max_length,
        lexical_weight=self.config.lexical_weight, title_weight=self.config.title_weight)

  def save(self, out_dir: str, serving_catalog: Optional[pd.DataFrame] = None) -> str:
    """Saves the module (over ``serving_catalog`` when given, refreshed onto it) as a
    SavedModel plus ``assets.extra/intent.json``."""
    module = self.module() if serving_catalog is None else self.refresh(serving_catalog)
    module.save(out_dir)
    extra = os.path.join(out_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    meta = {"config": self.config.to_dict(), "num_tracks": module.num_tracks,
            "num_training_tracks": len(self.catalog),
            "listener_dim": self.model.listener_dim,
            "checkpoint": self.checkpoint.model_dir,
            "history": {k: v for k, v in self.history.items()}}
    with open(os.path.join(extra, "intent.json"), "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=1, default=float)
    return out_dir


def check_training_splits(tracks: pd.DataFrame) -> None:
  """Refuses a training catalog that holds MTG-Jamendo test-split rows.

  Raises:
    ValueError: naming how many rows are of another split than train/validation.
  """
  if "split" not in tracks:
    return
  split = tracks["split"]
  bad = split.notna() & ~split.isin(list(catalog_lib.TRAIN_SPLITS))
  if bad.any():
    raise ValueError(f"the training catalog holds {int(bad.sum())} rows of the split(s) "
                     f"{sorted(set(split[bad]))}; train on {catalog_lib.TRAIN_SPLITS} only")


def train_intent(catalog_df: pd.DataFrame, out_dir: Optional[str] = None,
                 config: Optional[IntentTrainConfig] = None,
                 listener_vectors: Optional[np.ndarray] = None,
                 interest: Optional[np.ndarray] = None, log_every: int = 0,
                 serving_catalog: Optional[pd.DataFrame] = None) -> IntentRun:
  """Trains the intent model on a catalog and (optionally) saves the serving module.

  Args:
    catalog_df: ``TRACK_SCHEMA`` frame (``tracks.parquet``) in serving row order.
    out_dir: where the SavedModel goes (not saved when None).
    config: an ``IntentTrainConfig`` (defaults when None).
    listener_vectors: optional ``[L, d]`` ranking-model listener vectors.
    interest: optional ``[L, N]`` ranking-model interest scores.
    log_every: progress every so many steps.
    serving_catalog: the catalog the saved module serves (default: ``catalog_df``).

  Returns:
    The finished ``IntentRun`` (``run.module()`` is the ``IntentCandidates``).
  """
  run = IntentRun(catalog_df, config or IntentTrainConfig(), listener_vectors, interest,
                  log_every)
  if run.config.intent.steps:
    run.fine_tune()
  if run.config.preference.steps:
    run.optimize_preferences()
  if out_dir:
    run.save(out_dir, serving_catalog)
  return run


def run_fn(fn_args) -> IntentRun:
  """TFX Trainer entry point (``pipeline.intent_trainer.run_fn``).

  Args:
    fn_args: TFX ``FnArgs`` (or any object) with ``custom_config`` (see the module
      docstring), ``serving_model_dir`` and optionally ``train_steps``.

  Returns:
    The finished run.

  Raises:
    ValueError: ``custom_config`` has no ``catalog_path``.
  """
  custom = dict(getattr(fn_args, "custom_config", None) or {})
  path = custom.get("catalog_path")
  if not path:
    raise ValueError("custom_config needs 'catalog_path' (the tracks.parquet to serve)")
  catalog = pd.read_parquet(path)
  config = IntentTrainConfig.from_dict(custom)
  steps = getattr(fn_args, "train_steps", None)
  if steps:
    config = dataclasses.replace(
        config, intent=dataclasses.replace(config.intent, steps=int(steps)))
  lv = custom.get("listener_vectors_path")
  it = custom.get("interest_path")
  serving = custom.get("serving_catalog_path")
  return train_intent(catalog, fn_args.serving_model_dir, config,
                      np.load(lv) if lv else None, np.load(it) if it else None,
                      log_every=int(custom.get("log_every", 0)),
                      serving_catalog=pd.read_parquet(serving) if serving else None)
