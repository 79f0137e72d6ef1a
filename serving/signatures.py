"""The exported serving graph: Melody's signatures as an explicit ``tf.Module``.

This module owns what TF Serving (stock or ``serving.server``) runs for Melody: the
:class:`RankerServingModule` with its signatures, the catalogue table it carries
(:class:`Catalog`), and the request validators the local server calls before a request
reaches the graph. It calls the model (``ranking.model``), fusion
(``ranking.layers.fusion``) and mixing (``ranking.layers.mixing``); it holds no model math.

Signatures (every input has a leading batch dim ``B``; dense, padded, no ragged tensors):

* ``rank`` (also ``serving_default``): raw listener inputs (user, context, the last
  ``HISTORY_LEN`` plays and the session, padded, with their lengths) and ``N``
  candidate track ids per listener (``""`` = padding). The artists of the history and
  session plays are looked up in the catalogue inside the graph. The listener goes
  through the TFT layer and the encoder ONCE; the candidates' transformed features come
  from the catalogue table built at export (unknown ids get the OOV row, never an
  error); the ``N`` candidates are scored against the one encoding, then fused and mixed.
* ``recommend``: the same listener inputs and a scalar ``k``; candidates are retrieved
  from the whole catalogue with ``tfrs.layers.factorized_top_k.BruteForce`` over the
  model's item embeddings, then ranked, fused and mixed as in ``rank``. With an intent
  module, a ``request_text`` input adds the intent candidates (``""`` = collaborative
  only).
* ``intent_candidates`` (only with an intent module): texts and ``k`` -> track ids and
  scores.
* ``transform_features``: serialized raw ``tf.Example`` s -> transformed features.
* ``score_examples``: serialized raw ``tf.Example`` s -> one ``[B]`` prediction per label
  key plus ``interest`` (what TFMA and the InfraValidator call).

Request conventions (TF Serving signatures have no optional inputs, so sentinels stand
in for "not given"):

* ``override`` ``[B]`` int: non-zero uses ``alpha_beta_gamma`` ``[B, 3]`` for that row;
  a negative (or non-finite) component keeps the segment table's value for that
  component. With ``override`` 0 the row uses the table whatever ``alpha_beta_gamma``
  holds. Paid listeners keep beta = 0 (``FusionConfig.zero_beta_segments``).
* ``exploration_seed`` ``[B]`` int: >= 0 gives the seeded exploration bonus
  ``epsilon * novelty * u(seed, row)`` (``row`` = the candidate's catalogue row, i.e.
  its ``tracks.parquet`` row; ``ranking.layers.fusion.exploration_uniform_py`` recomputes
  it); a negative seed turns exploration off for the row.

Reason codes (``reasons``, one comma-separated string per candidate, ``""`` for padding),
in this order:

* ``promo``: the candidate is promoted (``candidate_is_promo``, or the catalogue's
  ``is_promo`` in ``recommend``);
* ``exploration``: the exploration bonus of the candidate is at least half of epsilon;
* ``intent_match``: (``recommend`` with text) the intent model proposed the candidate;
* ``session_style_match``: the candidate shares its artist or a tag with a track of the
  current session;
* exactly one of ``familiar_track`` (the listener played this track within the
  history or session), ``familiar_artist`` (played the artist, not the track) and
  ``new_for_you`` (neither).

Familiarity for fusion (the context term ``kappa * (2 * familiar - 1)``) is 1 for
``familiar_track`` and ``familiar_artist``, else 0; novelty is ``1 - familiar``. Tracks
and artists are compared by catalogue identity (row, distinct artist name), never by
vocabulary id, since OOV hash buckets are shared; the mixing artist cap uses the same
artist identity (unknown artists are exempt).
"""

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from features import examples as examples_lib
from features import feature_spec
from ranking import model as model_lib
from ranking import tasks as tasks_lib
from ranking.layers import fusion as fusion_lib
from ranking.layers import mixing as mixing_lib

X = feature_spec.xf
DEFAULT_N_MAX = 1000
HEAD_OUTPUTS: Tuple[str, ...] = feature_spec.LABEL_KEYS + (tasks_lib.INTEREST_SCORE,)
OOV_TRACK_ID = b"<melody-oov-track>"
# Weight of the popularity z-score appended to the retrieval embeddings: enough to order
# a cold-start listener's (zero query) candidates by popularity, small next to a cosine.
RETRIEVAL_POPULARITY_WEIGHT = 0.05
REASON_CODES: Tuple[str, ...] = (
    "promo", "exploration", "intent_match", "session_style_match", "familiar_track",
    "familiar_artist", "new_for_you")
# recommend ranks a retrieved pool of max(RECOMMEND_POOL_FACTOR * k, RECOMMEND_MIN_POOL)
# candidates (bounded by the catalogue and N_max) and returns its top k.
RECOMMEND_POOL_FACTOR = 4
RECOMMEND_MIN_POOL = 100

_TF_DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
_NP_DTYPES = {"string": object, "int64": np.int64, "float32": np.float32}

# ------------------------------------------------------------------ request inputs
# Raw listener inputs of ``rank`` and ``recommend``: name -> (dtype, trailing shape).
LISTENER_INPUTS: Dict[str, Tuple[str, Tuple[int, ...]]] = {
    "user_id": ("string", ()),
    "user_segment": ("string", ()),
    "user_tenure_days": ("float32", ()),
    "context_activity": ("string", ()),
    "context_surface": ("string", ()),
    "context_hour": ("int64", ()),
    "context_weekday": ("int64", ()),
    "hist_track_ids": ("string", (feature_spec.HISTORY_LEN,)),
    "hist_completion": ("float32", (feature_spec.HISTORY_LEN,)),
    "hist_skip": ("float32", (feature_spec.HISTORY_LEN,)),
    "hist_gap_s": ("float32", (feature_spec.HISTORY_LEN,)),
    "hist_len": ("int64", ()),
    "sess_track_ids": ("string", (feature_spec.SESSION_LEN,)),
    "sess_completion": ("float32", (feature_spec.SESSION_LEN,)),
    "sess_skip": ("float32", (feature_spec.SESSION_LEN,)),
    "sess_gap_s": ("float32", (feature_spec.SESSION_LEN,)),
    "sess_len": ("int64", ()),
}
# Per-request fusion controls shared by ``rank`` and ``recommend``.
CONTROL_INPUTS: Dict[str, Tuple[str, Tuple[int, ...]]] = {
    "alpha_beta_gamma": ("float32", (3,)),
    "override": ("int64", ()),
    "exploration_seed": ("int64", ()),
}
CANDIDATE_INPUTS: Dict[str, Tuple[str, Tuple[Optional[int], ...]]] = {
    "candidate_ids": ("string", (None,)),
    "candidate_is_promo": ("int64", (None,)),
}
_SEQ = {"hist": feature_spec.HISTORY_LEN, "sess": feature_spec.SESSION_LEN}


def _specs(inputs: Mapping[str, Tuple[str, Tuple]]) -> Dict[str, tf.TensorSpec]:
  return {name: tf.TensorSpec((None,) + tuple(shape), _TF_DTYPES[dtype], name=name)
          for name, (dtype, shape) in inputs.items()}


def rank_input_spec() -> Dict[str, tf.TensorSpec]:
  """Input spec of the ``rank`` signature."""
  return _specs({**LISTENER_INPUTS, **CONTROL_INPUTS, **CANDIDATE_INPUTS})


def recommend_input_spec(with_text: bool) -> Dict[str, tf.TensorSpec]:
  """Input spec of ``recommend`` (``k`` is a scalar, so the server runs it unbatched)."""
  spec = _specs({**LISTENER_INPUTS, **CONTROL_INPUTS})
  spec["k"] = tf.TensorSpec([], tf.int32, name="k")
  if with_text:
    spec["request_text"] = tf.TensorSpec([None], tf.string, name="request_text")
  return spec


def neutral_controls(batch: int) -> Dict[str, np.ndarray]:
  """Control inputs meaning "segment table, no exploration" for ``batch`` rows."""
  return {"alpha_beta_gamma": np.full((batch, 3), -1.0, np.float32),
          "override": np.zeros(batch, np.int64),
          "exploration_seed": np.full(batch, -1, np.int64)}


# --------------------------------------------------------------------- validation
def _fail(name: str, problem: str) -> None:
  raise ValueError(f"input '{name}' {problem}")


def _check_listener(arrays: Mapping[str, np.ndarray]) -> int:
  batch = None
  for name, (_, shape) in {**LISTENER_INPUTS, **CONTROL_INPUTS}.items():
    if name not in arrays:
      _fail(name, "is missing")
    a = np.asarray(arrays[name])
    if a.ndim != 1 + len(shape) or tuple(a.shape[1:]) != tuple(shape):
      _fail(name, f"has shape {list(a.shape)}, expected [B{''.join(f', {d}' for d in shape)}]")
    if batch is None:
      batch = a.shape[0]
    elif a.shape[0] != batch:
      _fail(name, f"has batch size {a.shape[0]}, other inputs have {batch}")
  for prefix, length in _SEQ.items():
    lens = np.asarray(arrays[f"{prefix}_len"])
    bad = (lens < 0) | (lens > length)
    if bad.any():
      _fail(f"{prefix}_len", f"must be in [0, {length}], got {int(lens[bad][0])}")
    for part in ("completion", "skip", "gap_s"):
      values = np.asarray(arrays[f"{prefix}_{part}"])
      if not np.all(np.isfinite(values)):
        _fail(f"{prefix}_{part}", "holds NaN or infinite values")
  for name in ("context_hour", "context_weekday"):
    if np.any(np.asarray(arrays[name]) < 0):
      _fail(name, "must be >= 0")
  if not np.all(np.isfinite(np.asarray(arrays["user_tenure_days"]))):
    _fail("user_tenure_days", "holds NaN or infinite values")
  return int(batch)


def validate_rank(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``rank`` request; the server answers INVALID_ARGUMENT on failure.

  The server has already checked dtypes, ranks, fixed trailing dims and that batch dims
  agree; this adds what a signature cannot express: ``N <= n_max``, the two candidate
  inputs having the same ``[B, N]`` shape, lengths within the padded sequences, promo
  flags 0/1 and finite floats.

  Raises:
    ValueError: naming the offending input.
  """
  batch = _check_listener(arrays)
  ids = np.asarray(arrays.get("candidate_ids", np.zeros((0, 0), object)))
  promo = np.asarray(arrays.get("candidate_is_promo", np.zeros((0, 0), np.int64)))
  if "candidate_ids" not in arrays:
    _fail("candidate_ids", "is missing")
  if "candidate_is_promo" not in arrays:
    _fail("candidate_is_promo", "is missing")
  if ids.ndim != 2 or ids.shape[0] != batch:
    _fail("candidate_ids", f"has shape {list(ids.shape)}, expected [B={batch}, N]")
  if ids.shape[1] > n_max:
    _fail("candidate_ids", f"has N={ids.shape[1]} candidates, more than N_max={n_max}")
  if promo.shape != ids.shape:
    _fail("candidate_is_promo", f"has shape {list(promo.shape)}, but candidate_ids has "
          f"{list(ids.shape)}; both must be [B, N]")
  if np.any((promo != 0) & (promo != 1)):
    _fail("candidate_is_promo", "must hold 0 or 1")


def validate_recommend(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``recommend`` request (listener inputs, ``k`` in [1, n_max]).

  Raises:
    ValueError: naming the offending input.
  """
  batch = _check_listener(arrays)
  if "k" not in arrays:
    _fail("k", "is missing")
  k = np.asarray(arrays["k"])
  if k.ndim != 0:
    _fail("k", f"must be a scalar, got shape {list(k.shape)}")
  if not 1 <= int(k) <= n_max:
    _fail("k", f"must be in [1, N_max={n_max}], got {int(k)}")
  if "request_text" in arrays and np.asarray(arrays["request_text"]).shape != (batch,):
    _fail("request_text", f"has shape {list(np.asarray(arrays['request_text']).shape)}, "
          f"expected [{batch}]")


def validate_intent(arrays: Mapping[str, np.ndarray], n_max: int = DEFAULT_N_MAX) -> None:
  """Checks a decoded ``intent_candidates`` request (``k`` in [1, n_max])."""
  k = np.asarray(arrays.get("k", 0))
  if k.ndim != 0 or not 1 <= int(k) <= n_max:
    _fail("k", f"must be a scalar in [1, N_max={n_max}], got {k.tolist()}")


def validators(n_max: int = DEFAULT_N_MAX) -> Dict[str, Callable[[Mapping[str, np.ndarray]],
                                                                None]]:
  """``{signature: validator}`` for ``serving.server.ModelServer(validators={model: ...})``."""
  rank = lambda arrays: validate_rank(arrays, n_max)  # noqa: E731
  return {"rank": rank, "serving_default": rank,
          "recommend": lambda arrays: validate_recommend(arrays, n_max),
          "intent_candidates": lambda arrays: validate_intent(arrays, n_max)}


# ----------------------------------------------------------------------- catalogue
@dataclasses.dataclass(frozen=True)
class Catalog:
  """The track catalogue in ``tracks.parquet`` row order (row i = track i).

  Attributes:
    track_ids: ``[C]`` bytes.
    artist_ids: ``[C]`` bytes (``b""`` unknown).
    tags: ``[C, MAX_TAGS]`` bytes, padded with ``PAD_TOKEN``.
    num_tags: ``[C]`` int64.
    duration_s: ``[C]`` float32 (0 unknown).
    popularity: ``[C]`` float32 (0 unknown).
    is_promo: ``[C]`` int64 (0 when the table has no ``is_promo`` column).
  """
  track_ids: np.ndarray
  artist_ids: np.ndarray
  tags: np.ndarray
  num_tags: np.ndarray
  duration_s: np.ndarray
  popularity: np.ndarray
  is_promo: np.ndarray

  def __len__(self) -> int:
    return len(self.track_ids)

  @classmethod
  def from_tracks(cls, tracks: Union[str, pd.DataFrame]) -> "Catalog":
    """Builds the catalogue from ``tracks.parquet`` (path) or its frame.

    Tags, duration and popularity go through ``features.examples.TrackIndex``, the
    same reading the training examples get.

    Raises:
      ValueError: an empty or malformed table.
    """
    frame = pd.read_parquet(tracks) if isinstance(tracks, str) else tracks
    if len(frame) == 0:
      raise ValueError("the catalogue (tracks table) is empty")
    index = examples_lib.TrackIndex(frame)
    dictionary = np.asarray(index.tag_dictionary.to_pylist(), dtype=object)
    promo = (frame["is_promo"].fillna(False).to_numpy().astype(np.int64)
             if "is_promo" in frame.columns else np.zeros(len(frame), np.int64))
    return cls(
        track_ids=np.asarray([s.encode() for s in index.ids], dtype=object),
        artist_ids=np.asarray([str(a).encode() for a in index.artist_ids], dtype=object),
        tags=dictionary[index.tag_codes],
        num_tags=index.num_tags.astype(np.int64),
        duration_s=index.duration_s.astype(np.float32),
        popularity=index.popularity.astype(np.float32),
        is_promo=np.clip(promo, 0, 1))


def _neutral_raw(batch: int) -> Dict[str, np.ndarray]:
  """Raw non-label features with padding/zero values for ``batch`` rows."""
  out = {}
  for f in feature_spec.RAW_FEATURES:
    if f.name in feature_spec.PASSTHROUGH_KEYS:
      continue
    shape = (batch,) if f.length == 1 else (batch, f.length)
    out[f.name] = np.full(shape, f.default, dtype=_NP_DTYPES[f.dtype])
  return out


def transformed_catalog(catalog: Catalog, tft_layer) -> Dict[str, np.ndarray]:
  """Transformed candidate features of every track, plus one OOV row at index ``C``.

  The rows go through the very TFT layer the examples went through (listener parts
  neutral), so a candidate looks exactly as it did in training. The OOV row is an id
  outside the vocabulary (its OOV bucket) with unknown artist, no tags, zero duration
  and popularity.
  """
  c = len(catalog)
  raw = _neutral_raw(c + 1)
  raw["cand_track_id"] = np.append(catalog.track_ids, OOV_TRACK_ID).astype(object)
  raw["cand_artist_id"] = np.append(catalog.artist_ids, b"").astype(object)
  raw["cand_tags"] = np.concatenate(
      [catalog.tags,
       np.full((1, feature_spec.MAX_TAGS), feature_spec.PAD_TOKEN, object)]).astype(object)
  raw["cand_num_tags"] = np.append(catalog.num_tags, 0).astype(np.int64)
  raw["cand_duration_s"] = np.append(catalog.duration_s, 0).astype(np.float32)
  raw["cand_popularity"] = np.append(catalog.popularity, 0).astype(np.float32)
  raw["cand_is_promo"] = np.append(catalog.is_promo, 0).astype(np.int64)
  out = {}
  for start in range(0, c + 1, 8192):   # bounded temporary tensors for big catalogues
    piece = tft_layer({k: tf.constant(v[start:start + 8192]) for k, v in raw.items()})
    for name in model_lib.CANDIDATE_FEATURES:
      out.setdefault(name, []).append(piece[name].numpy())
  return {name: np.concatenate(parts) for name, parts in out.items()}


# -------------------------------------------------------------------- the module
def _mask_tail(x: tf.Tensor, length: tf.Tensor, pad) -> tf.Tensor:
  """Replaces positions at or after ``length`` ``[B]`` of ``x`` ``[B, L]`` by ``pad``."""
  keep = tf.sequence_mask(length, tf.shape(x)[1])
  return tf.where(keep, x, tf.fill(tf.shape(x), tf.constant(pad, x.dtype)))


def _member(a: tf.Tensor, b: tf.Tensor, size: int) -> tf.Tensor:
  """``[B, N]``: whether ``a[i, n]`` occurs in ``b[i, :]``, for ids in [0, size)."""
  counts = tf.math.bincount(tf.cast(b, tf.int32), minlength=size, maxlength=size, axis=-1)
  return tf.gather(counts, tf.cast(a, tf.int32), batch_dims=1) > 0


class _Untracked:
  """Holds Python objects out of the SavedModel's object graph.

  The Keras model and layers are called by the signatures but not saved as Keras
  objects (saving them re-traces every layer's call for Keras' own loader, most of the
  export time); their variables are tracked through a plain list instead, which is all
  the saved functions need.
  """

  def __init__(self, **objects):
    self.__dict__.update(objects)


class RankerServingModule(tf.Module):
  """Melody's exported object: model, TFT layer, catalogue and the serving signatures.

  Usage:
    module = RankerServingModule(model, tft_output, Catalog.from_tracks(path))
    tf.saved_model.save(module, version_dir, signatures=module.signatures())

  Args:
    model: a built ``ranking.model.RankingModel``.
    tft_output: a ``tft.TFTransformOutput`` (or its directory).
    catalog: a :class:`Catalog`, a ``tracks.parquet`` path or its frame; its row order
      is the row order of the retrieval index and of the intent module.
    fusion_config: weights and adjustments of ``ScoreFusion``.
    mixing_config: rules of ``Mixing``.
    n_max: the most candidates ``rank`` accepts per listener (and ``k``'s bound).
    intent: optional ``tf.Module`` whose ``candidates(texts [B] string, k int32 scalar)``
      returns ``(catalogue rows [B, k] int32, scores [B, k] float32)``.
  """

  def __init__(self, model: model_lib.RankingModel, tft_output,
               catalog: Union[Catalog, str, pd.DataFrame],
               fusion_config: fusion_lib.FusionConfig = fusion_lib.FusionConfig(),
               mixing_config: mixing_lib.MixingConfig = mixing_lib.MixingConfig(),
               n_max: int = DEFAULT_N_MAX, intent: Optional[tf.Module] = None):
    super().__init__(name="melody_serving")
    if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
      raise ValueError(f"n_max must be a positive int, got {n_max!r}")
    if intent is not None and not callable(getattr(intent, "candidates", None)):
      raise ValueError(f"intent must have a candidates(texts, k) method, got {intent!r}")
    if isinstance(tft_output, str):
      import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
      tft_output = tft.TFTransformOutput(tft_output)
    if not isinstance(catalog, Catalog):
      catalog = Catalog.from_tracks(catalog)
    self._py = _Untracked(
        model=model, fusion=fusion_lib.ScoreFusion(fusion_config, name="fusion"),
        mixing=mixing_lib.Mixing(mixing_config, name="mixing"),
        retrieval=tfrs.layers.factorized_top_k.BruteForce(name="retrieval"))
    self.tft_layer = tft_output.transform_features_layer()
    self.fusion_config = fusion_config
    self.mixing_config = mixing_config
    self.n_max = n_max
    self.intent = intent
    self.catalog_size = len(catalog)

    c = len(catalog)
    self.catalog_track_ids = tf.Variable(catalog.track_ids.astype(object), trainable=False,
                                         dtype=tf.string, name="catalog_track_ids")
    self.catalog_is_promo = tf.Variable(catalog.is_promo, trainable=False,
                                        name="catalog_is_promo")
    # Padding ("") and unknown ids land on row C (the OOV row) of the candidate table.
    self.catalog_rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(catalog.track_ids.astype(object)),
                                            tf.range(c, dtype=tf.int64)),
        default_value=c, name="catalog_rows")
    # Exact artist identity for familiarity and the mixing artist cap: 1..A per distinct
    # artist of the catalogue, 0 for unknown artists and for the OOV row (cap-exempt).
    names = sorted({a for a in catalog.artist_ids if a})
    index = {a: i + 1 for i, a in enumerate(names)}
    self.catalog_artist_index = tf.Variable(
        np.asarray([index.get(a, 0) for a in catalog.artist_ids] + [0], np.int64),
        trainable=False, name="catalog_artist_index")
    self.num_artists = len(names)
    tag_names = sorted({t for row in catalog.tags for t in row if t})
    tag_index = {t: i + 1 for i, t in enumerate(tag_names)}
    self.num_tags = len(tag_names)
    self.catalog_tag_index = tf.Variable(
        np.asarray([[tag_index.get(t, 0) for t in row] for row in catalog.tags]
                   + [[0] * feature_spec.MAX_TAGS], np.int64).reshape(-1, feature_spec.MAX_TAGS),
        trainable=False, name="catalog_tag_index")
    self.catalog_artists = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(catalog.track_ids.astype(object)),
                                            tf.constant(catalog.artist_ids.astype(object))),
        default_value=feature_spec.PAD_TOKEN, name="catalog_artists")
    table = transformed_catalog(catalog, self.tft_layer)
    self.candidate_table = {name: tf.Variable(value, trainable=False, name=f"catalog_{name}")
                            for name, value in table.items()}

    # Retrieval index: normalized item embeddings (the model's shared track + artist
    # tables) with the popularity z-score appended; the query appends a constant.
    items = model.items(table[X("cand_track_id")][:c], table[X("cand_artist_id")][:c])
    pop = table[X("cand_popularity")][:c].astype(np.float32)[:, np.newaxis]
    embeddings = tf.concat([tf.math.l2_normalize(items, axis=-1), pop], axis=-1)
    self._py.retrieval.index(embeddings, tf.range(c, dtype=tf.int32))
    self.model_variables = list(model.variables)
    self.retrieval_variables = list(self._py.retrieval.variables)

    raw_spec = feature_spec.raw_feature_spec()
    self._example_spec = {
        k: v for k, v in raw_spec.items() if k not in feature_spec.PASSTHROUGH_KEYS
    }
    self._example_spec_with_labels = raw_spec
    examples_spec = tf.TensorSpec([None], tf.string, name="examples")
    # The tf.functions stay out of the object graph: only the signatures are saved, so
    # saving does not trace every function a second time.
    fn = lambda f, *spec: tf.function(f, input_signature=list(spec), autograph=False)  # noqa: E731
    self._py.functions = {
        "rank": fn(self._rank, rank_input_spec()),
        "recommend": fn(self._recommend, recommend_input_spec(intent is not None)),
        "transform_features": fn(self._transform_features, examples_spec),
        "score_examples": fn(self._score_examples, examples_spec),
    }
    if intent is not None:
      self._py.functions["intent_candidates"] = fn(
          self._intent_candidates, tf.TensorSpec([None], tf.string, name="text"),
          tf.TensorSpec([], tf.int32, name="k"))
    self._py.concrete = None

  @property
  def model(self):
    """The ``RankingModel`` (not part of the saved object graph, see ``_Untracked``)."""
    return self._py.model

  # ------------------------------------------------------------------ signatures
  def signatures(self) -> Dict[str, object]:
    """Concrete functions by signature name (traced once), for ``tf.saved_model.save``.

    Call one in process with keyword tensors: ``module.signatures()["rank"](**inputs)``.
    """
    if self._py.concrete is None:
      concrete = {name: fn.get_concrete_function() for name, fn in self._py.functions.items()}
      concrete["serving_default"] = concrete["rank"]
      self._py.concrete = concrete
    return dict(self._py.concrete)

  def _transform_features(self, examples):
    return self.tft_layer(tf.io.parse_example(examples, self._example_spec_with_labels))

  def _score_examples(self, examples):
    transformed = self.tft_layer(tf.io.parse_example(examples, self._example_spec))
    return self._heads(self.model(transformed, training=False))

  def _intent_candidates(self, text, k):
    rows, scores, valid = self._intent_rows(text, self._bounded_k(k))
    ids = tf.where(valid, tf.gather(self.catalog_track_ids, tf.maximum(rows, 0)), "")
    return {"track_ids": ids, "scores": tf.where(valid, scores, 0.0)}

  def _rank(self, inputs):
    ids = inputs["candidate_ids"]
    promo = inputs["candidate_is_promo"]
    with tf.control_dependencies(self._assert_listener(inputs) + [
        tf.debugging.assert_equal(tf.shape(promo), tf.shape(ids), message=(
            "input 'candidate_is_promo' must have the shape [B, N] of 'candidate_ids'")),
        tf.debugging.assert_less_equal(tf.shape(ids)[1], self.n_max, message=(
            f"input 'candidate_ids' has more than N_max={self.n_max} candidates"))]):
      ids = tf.identity(ids)
    listener = self._listener(inputs)
    rows = self.catalog_rows.lookup(ids)
    valid = tf.not_equal(ids, feature_spec.PAD_TOKEN)
    out = self._rank_rows(listener, inputs, rows, valid,
                          tf.clip_by_value(tf.cast(promo, tf.int64), 0, 1))
    ranked = tf.where(out["order"] >= 0,
                      tf.gather(ids, tf.maximum(out["order"], 0), batch_dims=1), "")
    result = {k: out[k] for k in HEAD_OUTPUTS + ("fused_score", "reasons", "order",
                                                 "weights", "num_placed")}
    result["ranked_track_ids"] = ranked
    return result

  def _recommend(self, inputs):
    k = self._bounded_k(inputs["k"])
    with tf.control_dependencies(self._assert_listener(inputs)):
      k = tf.identity(k)
    listener = self._listener(inputs)
    # Retrieve a pool larger than k so that mixing (promo spacing, the artist cap) has
    # alternatives to choose from; the top k of the mixed pool are returned.
    pool = tf.minimum(tf.maximum(RECOMMEND_POOL_FACTOR * k, RECOMMEND_MIN_POOL),
                      min(self.catalog_size, self.n_max))
    scores, rows = self._py.retrieval(self._query(listener["transformed"]), k=pool)
    rows = tf.cast(rows, tf.int64)
    valid = tf.ones_like(rows, tf.bool)
    retrieval_score = scores
    from_intent = tf.zeros_like(valid)
    if self.intent is not None:
      text_rows, text_scores, text_valid = self._intent_rows(inputs["request_text"], pool)
      rows = tf.concat([rows, tf.cast(text_rows, tf.int64)], axis=1)
      valid = tf.concat([valid, text_valid], axis=1)
      retrieval_score = tf.concat([retrieval_score, text_scores], axis=1)
      from_intent = tf.concat([from_intent, text_valid], axis=1)
      # A track both sources propose is kept once (its first, collaborative, copy).
      n = tf.shape(rows)[1]
      earlier = tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0) & ~tf.eye(n, dtype=tf.bool)
      dup = tf.reduce_any(tf.equal(rows[:, :, tf.newaxis], rows[:, tf.newaxis, :])
                          & valid[:, tf.newaxis, :] & earlier[tf.newaxis], axis=-1)
      from_intent = tf.reduce_any(tf.equal(rows[:, :, tf.newaxis], rows[:, tf.newaxis, :])
                                  & from_intent[:, tf.newaxis, :], axis=-1)
      valid = valid & ~dup
      rows = tf.where(valid, rows, self.catalog_size)
    promo = tf.gather(self.catalog_is_promo, tf.minimum(rows, self.catalog_size - 1))
    promo = tf.where(valid, promo, tf.zeros_like(promo))
    out = self._rank_rows(listener, inputs, rows, valid, promo, from_intent)
    order = out["order"][:, :k]
    take = lambda x: tf.gather(x, tf.maximum(order, 0), batch_dims=1)  # noqa: E731
    placed = order >= 0
    result = {name: tf.where(placed, take(out[name]), 0.0)
              for name in HEAD_OUTPUTS + ("fused_score",)}
    result["retrieval_score"] = tf.where(placed, take(retrieval_score), 0.0)
    result["reasons"] = tf.where(placed, take(out["reasons"]), "")
    result["ranked_track_ids"] = tf.where(
        placed, tf.gather(self.catalog_track_ids,
                          tf.minimum(take(rows), self.catalog_size - 1)), "")
    result["weights"] = out["weights"]
    return result

  # ----------------------------------------------------------------- graph parts
  def _bounded_k(self, k):
    k = tf.cast(k, tf.int32)
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        k, 1, message="input 'k' must be >= 1")]):
      return tf.minimum(k, min(self.catalog_size, self.n_max))

  def _assert_listener(self, inputs):
    checks = []
    for prefix, length in _SEQ.items():
      n = inputs[f"{prefix}_len"]
      checks.append(tf.debugging.assert_greater_equal(
          n, tf.constant(0, n.dtype), message=f"input '{prefix}_len' must be >= 0"))
      checks.append(tf.debugging.assert_less_equal(
          n, tf.constant(length, n.dtype), message=f"input '{prefix}_len' must be <= {length}"))
    return checks

  def _listener(self, inputs) -> Dict[str, object]:
    """Raw listener inputs -> TFT -> transformed features and the encoding (once)."""
    raw = dict(_neutral_raw_tf(tf.shape(inputs["user_id"])[0]))
    for name in LISTENER_INPUTS:
      raw[name] = inputs[name]
    for prefix in _SEQ:
      n = inputs[f"{prefix}_len"]
      raw[f"{prefix}_track_ids"] = _mask_tail(inputs[f"{prefix}_track_ids"], n,
                                              feature_spec.PAD_TOKEN)
      for part in ("completion", "skip", "gap_s"):
        raw[f"{prefix}_{part}"] = _mask_tail(inputs[f"{prefix}_{part}"], n, 0.0)
      raw[f"{prefix}_artist_ids"] = self.catalog_artists.lookup(raw[f"{prefix}_track_ids"])
    transformed = self.tft_layer(raw)
    encoding = self.model.encode_listener(transformed, training=False)
    # Catalogue rows of the plays (padding and unknown tracks: the OOV row C).
    rows = {f"{p}_rows": self.catalog_rows.lookup(raw[f"{p}_track_ids"]) for p in _SEQ}
    return {"raw": raw, "transformed": transformed, "encoding": encoding, **rows}

  def _query(self, transformed) -> tf.Tensor:
    """Listener query of the retrieval index: the completion-weighted mean of the item
    embeddings of the history and session plays, normalized, plus the popularity term."""
    parts, weights = [], []
    for prefix in _SEQ:
      ids = transformed[X(f"{prefix}_track_ids")]
      emb = self.model.items(ids, transformed[X(f"{prefix}_artist_ids")])      # [B, L, d]
      w = ((0.25 + tf.cast(transformed[X(f"{prefix}_completion")], tf.float32))
           * (1.0 - 0.5 * tf.cast(transformed[X(f"{prefix}_skip")], tf.float32))
           * tf.cast(tf.not_equal(ids, 0), tf.float32))
      parts.append(tf.reduce_sum(emb * w[..., tf.newaxis], axis=1))
      weights.append(tf.reduce_sum(w, axis=1, keepdims=True))
    query = tf.math.l2_normalize(tf.add_n(parts) / tf.maximum(tf.add_n(weights), 1e-6),
                                 axis=-1)
    pop = tf.fill(tf.stack([tf.shape(query)[0], 1]), RETRIEVAL_POPULARITY_WEIGHT)
    return tf.concat([query, pop], axis=-1)

  def _intent_rows(self, text, k):
    rows, scores = self.intent.candidates(text, k)
    rows = tf.cast(rows, tf.int32)
    valid = ((rows >= 0) & (rows < self.catalog_size)
             & tf.not_equal(text, "")[:, tf.newaxis])
    return rows, tf.cast(scores, tf.float32), valid

  def _heads(self, preds) -> Dict[str, tf.Tensor]:
    """Every ``HEAD_OUTPUTS`` key; heads a single-task model lacks are zeros."""
    some = next(iter(preds.values()))
    return {k: tf.cast(preds[k], tf.float32) if k in preds else tf.zeros_like(some)
            for k in HEAD_OUTPUTS}

  def _score(self, encoding, candidates) -> Dict[str, tf.Tensor]:
    """Scores ``[B, N]`` candidates, each row against its own listener's encoding.

    The encoding is never tiled per candidate: row ``b``'s N candidates are scored
    against the batch-1 slice of listener ``b`` (``RankingModel.score`` broadcasts it),
    one ``map_fn`` step per listener; a single listener skips the loop.
    """
    def one(b):
      # Exactly one row, said statically: the scorer's one-listener (broadcast) paths,
      # e.g. the target attention's single-memory matmuls, key on a static batch of 1.
      enc = {k: tf.ensure_shape(v[b:b + 1], [1] + v.shape[1:]) for k, v in encoding.items()}
      cands = {k: v[b] for k, v in candidates.items()}
      preds = self.model.score(enc, cands, training=False)
      return self._heads(preds)

    spec = {k: tf.TensorSpec([None], tf.float32) for k in HEAD_OUTPUTS}
    batch = tf.shape(candidates[X("cand_track_id")])[0]
    return tf.cond(
        tf.equal(batch, 1),
        lambda: {k: v[tf.newaxis] for k, v in one(0).items()},
        lambda: tf.map_fn(one, tf.range(batch), fn_output_signature=spec))

  def _rank_rows(self, listener, inputs, rows, valid, promo, from_intent=None):
    """Scores, fuses and mixes candidates given as catalogue rows ``[B, N]``."""
    xf = listener["transformed"]
    candidates = {name: tf.gather(table, rows) for name, table in self.candidate_table.items()}
    candidates[X("cand_is_promo")] = promo
    heads = self._score(listener["encoding"], candidates)
    for value in heads.values():
      value.set_shape(rows.shape)   # the cond / map_fn loses the static batch size

    # Familiarity and style use exact catalogue identities (rows and artist indices),
    # not vocabulary ids: OOV hash buckets are shared by unrelated tracks and artists.
    # Membership tests are per-listener count vectors gathered per candidate: O(N), where
    # comparing every candidate with every play (and tag) cost more than the scorer.
    c = self.catalog_size
    artist = tf.gather(self.catalog_artist_index, rows)                          # [B, N]
    known = rows < c
    hist_rows, sess_rows = listener["hist_rows"], listener["sess_rows"]          # [B, L]
    played = tf.concat([hist_rows, sess_rows], axis=1)
    has_artist = tf.not_equal(artist, 0)   # index 0: unknown artist or the OOV row
    familiar_track = known & _member(rows, played, c + 1)
    familiar_artist = has_artist & ~familiar_track & _member(
        artist, tf.gather(self.catalog_artist_index, played), self.num_artists + 1)
    familiar = tf.cast(familiar_track | familiar_artist, tf.float32)

    # Session style: a shared artist or tag with a track of the current session (tags
    # by exact name too; the OOV row and padding plays have none).
    tags = self.catalog_tag_index                                               # [C+1, T]
    sess_tags = tf.reshape(tf.gather(tags, sess_rows), [tf.shape(sess_rows)[0], -1])
    cand_tags = tf.gather(tags, rows)                                           # [B, N, T]
    tag_hit = tf.reduce_any(tf.not_equal(cand_tags, 0) & tf.reshape(
        _member(tf.reshape(cand_tags, [tf.shape(rows)[0], -1]), sess_tags,
                self.num_tags + 1), tf.shape(cand_tags)), axis=-1)
    style = tag_hit | has_artist & _member(
        artist, tf.gather(self.catalog_artist_index, sess_rows), self.num_artists + 1)

    seed = tf.cast(inputs["exploration_seed"], tf.int64)
    fused = self._py.fusion({
        "interest": heads[tasks_lib.INTEREST_SCORE], "subscription": heads["subscription"],
        "exposure": heads["exposure"], "segment": xf[X("user_segment")],
        "activity": xf[X("context_activity")], "familiar": familiar,
        "candidate_ids": rows, "seed": tf.maximum(seed, 0),
        "override_weights": inputs["alpha_beta_gamma"],
        "override": tf.not_equal(inputs["override"], 0)})
    explore_on = tf.cast(seed >= 0, tf.float32)[:, tf.newaxis]
    exploration = fused["exploration"] * explore_on
    score = fused["score"] - fused["exploration"] + exploration
    mixed = self._py.mixing({"scores": tf.where(valid, score, -1e9), "is_promo": promo,
                             "artist_ids": artist, "valid": valid})

    eps = self.fusion_config.exploration
    flags = [
        ("promo", tf.not_equal(promo, 0)),
        ("exploration", exploration >= 0.5 * eps if eps > 0 else tf.zeros_like(valid)),
        ("intent_match", from_intent if from_intent is not None else tf.zeros_like(valid)),
        ("session_style_match", style),
        ("familiar_track", familiar_track),
        ("familiar_artist", familiar_artist),
        ("new_for_you", ~(familiar_track | familiar_artist)),
    ]
    # One bit per code; the 2^7 joined strings are a constant table (no string ops).
    bits = tf.add_n([tf.cast(flag, tf.int32) * (1 << i) for i, (_, flag) in enumerate(flags)])
    table = tf.constant([",".join(code for i, (code, _) in enumerate(flags) if m >> i & 1)
                         for m in range(1 << len(flags))])
    reasons = tf.where(valid, tf.gather(table, bits), "")
    out = {k: tf.where(valid, v, 0.0) for k, v in heads.items()}
    out["fused_score"] = tf.where(valid, score, 0.0)
    out["reasons"] = reasons
    out["order"] = mixed["order"]
    out["num_placed"] = mixed["num_placed"]
    out["weights"] = fused["weights"]
    return out


def _neutral_raw_tf(batch: tf.Tensor) -> Dict[str, tf.Tensor]:
  """In-graph twin of :func:`_neutral_raw` for a dynamic batch size."""
  out = {}
  for f in feature_spec.RAW_FEATURES:
    if f.name in feature_spec.PASSTHROUGH_KEYS:
      continue
    shape = tf.stack([batch]) if f.length == 1 else tf.stack([batch, f.length])
    out[f.name] = tf.fill(shape, tf.constant(f.default, _TF_DTYPES[f.dtype]))
  return out
