"""The exported serving graph: Melody's signatures as an explicit ``tf.Module``.

This module owns what TF Serving (stock or ``serving.server``) runs for Melody: the
:class:`RankerServingModule` with its signatures. It wires the request schema
(``serving.request_schema``), the catalogue (``serving.catalog``), the model
(``ranking.model``), retrieval (``serving.retrieval``), the candidate flags
(``serving.candidate_flags``), fusion (``ranking.fusion``) and mixing
(``ranking.layers.mixing``); it holds no model math.

Signatures (every input has a leading batch dim ``B``; ``serving.request_schema`` has
the inputs and the conventions of the fusion controls):

* ``rank`` (also ``serving_default``): raw listener inputs (user, context, the last
  ``HISTORY_LEN`` plays and the session, padded, with their lengths) and ``N``
  candidate track ids per listener (``""`` = padding). The artists of the history and
  session plays are looked up in the catalogue inside the graph. The listener goes
  through the TFT layer and the encoder ONCE; the candidates' transformed features come
  from the catalogue table built at export (unknown ids get the OOV row, never an
  error); the ``N`` candidates are scored against the one encoding, then fused and mixed.
* ``recommend``: the same listener inputs and a scalar ``k``; candidates are retrieved
  from the whole catalogue, then ranked, fused and mixed as in ``rank``. With an intent
  module, a ``request_text`` input adds the intent candidates (``""`` or whitespace =
  collaborative only; text that is not UTF-8 is rejected by the validator).
* ``intent_candidates`` (only with an intent module): texts and ``k`` -> track ids and
  scores.
* ``transform_features``: serialized raw ``tf.Example`` s -> transformed features.
* ``score_examples``: serialized raw ``tf.Example`` s -> one ``[B]`` prediction per label
  key plus ``interest`` (what TFMA and the InfraValidator call).
* ``policy`` (only when exported with a ``policy.json``): ``request_id`` ``[B]`` ->
  ``policy_json`` and ``policy_version`` ``[B]`` strings, the policy whose weights,
  epsilon and mixing rules the graph holds (``ranking.fusion.policy_file``).

``rank`` and ``recommend`` answer with the heads, ``fused_score`` (of the fusion the
``fusion`` input chose, ``serving.fusion_select``), the effective ``weights``, the mixed
order and one ``reasons`` string per candidate (``ranking.fusion.reasons`` has the codes,
``serving.candidate_flags`` how they are set); ``rank`` adds ``familiar`` per candidate.

The same request gets the same list alone and inside any batch (the model server merges
concurrent requests). Float kernels round a row differently with the number of rows
beside it (matmul blocking, reduction order), by ~1e-7, which is enough to swap two
near-tied candidates, and repeated tracks are exact ties up to such noise. So every float
step that feeds the order runs per listener at the shapes of a batch of one
(``serving.row_wise``): the encoder and scorer, retrieval, the intent source; the TFT layer,
fusion and the candidate flags are element-wise, and mixing compares only ranks. The
scores of a row are then the same to the bit in any batch, and
``ranking.fusion.ordering`` (score desc, ties to the lower index) turns them into one
order. ``score_examples`` and ``transform_features`` order nothing and run batch-wise.
"""

from typing import Dict, Optional, Tuple, Union

import pandas as pd
import tensorflow as tf

from features import feature_spec
from ranking import model as model_lib
from ranking import tasks as tasks_lib
from ranking.fusion.spec import FusionConfig
from ranking.layers import mixing as mixing_lib
from serving import candidate_flags
from serving import catalog as catalog_lib
from serving import fusion_select
from serving import request_schema
from serving import retrieval
from serving import row_wise

X = feature_spec.xf
HEAD_OUTPUTS: Tuple[str, ...] = feature_spec.LABEL_KEYS + (tasks_lib.INTEREST_SCORE,)
# recommend ranks a retrieved pool of max(RECOMMEND_POOL_FACTOR * k, RECOMMEND_MIN_POOL)
# candidates (bounded by the catalogue and N_max) and returns its top k.
RECOMMEND_POOL_FACTOR = 4
RECOMMEND_MIN_POOL = 100


def _mask_tail(x: tf.Tensor, length: tf.Tensor, pad) -> tf.Tensor:
  """Replaces positions at or after ``length`` ``[B]`` of ``x`` ``[B, L]`` by ``pad``."""
  keep = tf.sequence_mask(length, tf.shape(x)[1])
  return tf.where(keep, x, tf.fill(tf.shape(x), tf.constant(pad, x.dtype)))


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
    module = RankerServingModule(model, tft_output, catalog.Catalog.from_tracks(path))
    tf.saved_model.save(module, version_dir, signatures=module.signatures())

  Args:
    model: a built ``ranking.model.RankingModel``.
    tft_output: a ``tft.TFTransformOutput`` (or its directory).
    catalog: a ``serving.catalog.Catalog``, a ``tracks.parquet`` path or its frame; its
      row order is the row order of the retrieval index and of the intent module.
    fusion_config: weights and adjustments of ``ScoreFusion``.
    mixing_config: rules of ``Mixing``.
    n_max: the most candidates ``rank`` accepts per listener (and ``k``'s bound).
    intent: optional ``tf.Module`` whose ``candidates(texts [B] string, k int32 scalar)``
      returns ``(catalogue rows [B, k] int32, scores [B, k] float32)``.
    policy: optional ``ranking.fusion.policy_file.PolicyFile``; it replaces
      ``fusion_config`` and ``mixing_config``, adds the ``policy`` signature and, with
      learned parameters, the learned fusion (``serving.fusion_select``).
  """

  def __init__(self, model: model_lib.RankingModel, tft_output,
               catalog: Union[catalog_lib.Catalog, str, pd.DataFrame],
               fusion_config: FusionConfig = FusionConfig(),
               mixing_config: mixing_lib.MixingConfig = mixing_lib.MixingConfig(),
               n_max: int = request_schema.DEFAULT_N_MAX,
               intent: Optional[tf.Module] = None, policy=None):
    super().__init__(name="melody_serving")
    if policy is not None:
      fusion_config, mixing_config = policy.fusion, policy.mixing_config()
    self.policy = policy
    if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
      raise ValueError(f"n_max must be a positive int, got {n_max!r}")
    if intent is not None and not callable(getattr(intent, "candidates", None)):
      raise ValueError(f"intent must have a candidates(texts, k) method, got {intent!r}")
    if isinstance(tft_output, str):
      import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
      tft_output = tft.TFTransformOutput(tft_output)
    if not isinstance(catalog, catalog_lib.Catalog):
      catalog = catalog_lib.Catalog.from_tracks(catalog)
    self._py = _Untracked(
        model=model, fusion=fusion_select.FusionSelector(fusion_config, policy),
        mixing=mixing_lib.Mixing(mixing_config, name="mixing"),
        tft_layer=tft_output.transform_features_layer())
    # The TFT layer is a Keras model: tracked as one, saving would trace its call again
    # for Keras' loader (half of the export's time). The signatures only need the
    # loaded transform graph's tables and assets, which its loaded SavedModel holds.
    loader = self.tft_layer._saved_model_loader  # pylint: disable=protected-access
    self.tft_resources = loader._imported  # pylint: disable=protected-access
    self.fusion_config = fusion_config
    self.mixing_config = mixing_config
    self.n_max = n_max
    self.intent = intent
    c = self.catalog_size = len(catalog)
    self.catalog_track_ids = tf.Variable(catalog.track_ids.astype(object), trainable=False,
                                         dtype=tf.string, name="catalog_track_ids")
    self.catalog_is_promo = tf.Variable(catalog.is_promo, trainable=False,
                                        name="catalog_is_promo")
    # Padding ("") and unknown ids land on row C (the OOV row) of the candidate table.
    self.catalog_rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(catalog.track_ids.astype(object)),
                                            tf.range(c, dtype=tf.int64)),
        default_value=c, name="catalog_rows")
    # Exact identities for familiarity, session style and the mixing artist cap.
    artist_index, self.num_artists = catalog.artist_index()
    self.catalog_artist_index = tf.Variable(artist_index, trainable=False,
                                            name="catalog_artist_index")
    tag_index, self.num_tags = catalog.tag_index()
    self.catalog_tag_index = tf.Variable(tag_index, trainable=False, name="catalog_tag_index")
    self.catalog_artists = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(catalog.track_ids.astype(object)),
                                            tf.constant(catalog.artist_ids.astype(object))),
        default_value=feature_spec.PAD_TOKEN, name="catalog_artists")
    table = catalog_lib.transformed_catalog(catalog, self.tft_layer)
    self.candidate_table = {name: tf.Variable(value, trainable=False, name=f"catalog_{name}")
                            for name, value in table.items()}

    self._py.retrieval = retrieval.CatalogIndex(retrieval.index_embeddings(model, table, c),
                                                catalog.is_promo)
    self.model_variables = list(model.variables)
    self.retrieval_variables = self._py.retrieval.variables

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
        "rank": fn(self._rank, request_schema.rank_input_spec()),
        "recommend": fn(self._recommend, request_schema.recommend_input_spec(intent is not None)),
        "transform_features": fn(self._transform_features, examples_spec),
        "score_examples": fn(self._score_examples, examples_spec),
    }
    if intent is not None:
      self._py.functions["intent_candidates"] = fn(
          self._intent_candidates, tf.TensorSpec([None], tf.string, name="text"),
          tf.TensorSpec([], tf.int32, name="k"))
    if policy is not None:
      self._py.functions["policy"] = fn(self._policy, request_schema.policy_input_spec())
    # One listener's scoring and retrieval, each traced once and called as a function
    # by both branches of ``row_wise.per_row`` and by both ``rank`` and ``recommend``: the
    # model is traced (and saved) once instead of once per branch and signature.
    self._py.score_row = tf.function(self._score_row, autograph=False)
    self._py.retrieve_row = tf.function(self._retrieve_row, autograph=False)
    self._py.concrete = None

  @property
  def model(self):
    """The ``RankingModel`` (not part of the saved object graph, see ``_Untracked``)."""
    return self._py.model

  @property
  def tft_layer(self):
    """The TFT layer (its Keras object is not saved, see ``tft_resources``)."""
    return self._py.tft_layer

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

  def _policy(self, inputs):
    rows = tf.shape(inputs[request_schema.POLICY_INPUT])[:1]
    return {"policy_json": tf.fill(rows, tf.constant(self.policy.to_json())),
            "policy_version": tf.fill(rows, tf.constant(self.policy.version))}

  def _intent_candidates(self, text, k):
    rows, scores, valid = self._intent_rows(text, self._bounded_k(k))
    ids = tf.where(valid, tf.gather(self.catalog_track_ids, tf.maximum(rows, 0)), "")
    return {"track_ids": ids, "scores": tf.where(valid, scores, 0.0), **self._text_cut(text)}

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
                                                 "weights", "num_placed", "familiar")}
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
    xf = listener["transformed"]

    scores, rows = row_wise.per_row(lambda b: self._py.retrieve_row(b, xf, pool),
                            tf.shape(inputs["user_id"])[0],
                            (tf.TensorSpec([None], tf.float32),
                             tf.TensorSpec([None], tf.int32)))
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
    if self.intent is not None:
      result.update(self._text_cut(inputs["request_text"]))
    return result

  # ----------------------------------------------------------------- graph parts
  def _bounded_k(self, k):
    k = tf.cast(k, tf.int32)
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        k, 1, message="input 'k' must be >= 1")]):
      return tf.minimum(k, min(self.catalog_size, self.n_max))

  def _assert_listener(self, inputs):
    checks = []
    for prefix, length in request_schema.SEQUENCES.items():
      n = inputs[f"{prefix}_len"]
      checks.append(tf.debugging.assert_greater_equal(
          n, tf.constant(0, n.dtype), message=f"input '{prefix}_len' must be >= 0"))
      checks.append(tf.debugging.assert_less_equal(
          n, tf.constant(length, n.dtype), message=f"input '{prefix}_len' must be <= {length}"))
    return checks

  def _listener(self, inputs) -> Dict[str, object]:
    """Raw listener inputs -> TFT -> transformed features (batch-wise: the TFT ops are
    element-wise), and the catalogue rows of the plays; :meth:`_score` encodes."""
    raw = dict(request_schema.neutral_raw_tf(tf.shape(inputs["user_id"])[0]))
    for name in request_schema.LISTENER_INPUTS:
      raw[name] = inputs[name]
    for prefix in request_schema.SEQUENCES:
      n = inputs[f"{prefix}_len"]
      raw[f"{prefix}_track_ids"] = _mask_tail(inputs[f"{prefix}_track_ids"], n,
                                              feature_spec.PAD_TOKEN)
      for part in ("completion", "skip", "gap_s"):
        raw[f"{prefix}_{part}"] = _mask_tail(inputs[f"{prefix}_{part}"], n, 0.0)
      raw[f"{prefix}_artist_ids"] = self.catalog_artists.lookup(raw[f"{prefix}_track_ids"])
    transformed = self.tft_layer(raw)
    # Catalogue rows of the plays (padding and unknown tracks: the OOV row C).
    rows = {f"{p}_rows": self.catalog_rows.lookup(raw[f"{p}_track_ids"])
            for p in request_schema.SEQUENCES}
    return {"raw": raw, "transformed": transformed, **rows}

  def _intent_rows(self, text, k):
    def one(b):
      rows, scores = self.intent.candidates(text[b:b + 1], k)
      return tf.cast(rows[0], tf.int32), tf.cast(scores[0], tf.float32)

    rows, scores = row_wise.per_row(one, tf.shape(text)[0],
                                    (tf.TensorSpec([None], tf.int32),
                                     tf.TensorSpec([None], tf.float32)))
    # Empty or whitespace-only text asks for nothing: collaborative candidates only.
    asked = tf.strings.length(tf.strings.strip(text)) > 0
    valid = (rows >= 0) & (rows < self.catalog_size) & asked[:, tf.newaxis]
    return rows, scores, valid

  def _text_cut(self, text) -> Dict[str, tf.Tensor]:
    """``{"text_cut": [B] int32}`` (1 = the request text was cut to the intent model's
    length) when the intent module reports cuts; the server counts them."""
    cut = getattr(self.intent, "text_cut", None)
    return {} if cut is None else {"text_cut": tf.cast(cut(text), tf.int32)}

  def _heads(self, preds) -> Dict[str, tf.Tensor]:
    """Every ``HEAD_OUTPUTS`` key; heads a single-task model lacks are zeros."""
    some = next(iter(preds.values()))
    return {k: tf.cast(preds[k], tf.float32) if k in preds else tf.zeros_like(some)
            for k in HEAD_OUTPUTS}

  def _score(self, transformed, candidates) -> Dict[str, tf.Tensor]:
    """Encodes each listener and scores its row of ``[B, N]`` candidates against it.

    Per listener (``serving.row_wise``): listener ``b`` is encoded as a batch of one and its
    N candidates are scored against that encoding (``RankingModel.score`` broadcasts
    it; the encoding is never tiled per candidate).
    """
    listener = {k: transformed[k] for k in model_lib.LISTENER_FEATURES}
    spec = {k: tf.TensorSpec([None], tf.float32) for k in HEAD_OUTPUTS}
    return row_wise.per_row(lambda b: self._py.score_row(b, listener, candidates),
                    tf.shape(candidates[X("cand_track_id")])[0], spec)

  def _score_row(self, b, listener, candidates) -> Dict[str, tf.Tensor]:
    """Heads ``[N]`` of row ``b``'s candidates against row ``b``'s listener alone."""
    # Exactly one row, said statically: the scorer's one-listener (broadcast) paths,
    # e.g. the target attention's single-memory matmuls, key on a static batch of 1.
    enc = {k: tf.ensure_shape(v, [1] + v.shape[1:]) for k, v in
           self.model.encode_listener(row_wise.row(listener, b), training=False).items()}
    cands = {k: v[b] for k, v in candidates.items()}
    return self._heads(self.model.score(enc, cands, training=False))

  def _retrieve_row(self, b, transformed, pool) -> Tuple[tf.Tensor, tf.Tensor]:
    """The ``pool`` best catalogue rows ``[pool]`` and their scores for listener ``b``."""
    found, rows = self._py.retrieval.retrieve(
        retrieval.listener_query(self.model, row_wise.row(transformed, b)), pool)
    return found[0], tf.cast(rows[0], tf.int32)

  def _rank_rows(self, listener, inputs, rows, valid, promo, from_intent=None):
    """Scores, fuses and mixes candidates given as catalogue rows ``[B, N]``."""
    xf = listener["transformed"]
    candidates = {name: tf.gather(table, rows) for name, table in self.candidate_table.items()}
    candidates[X("cand_is_promo")] = promo
    heads = self._score(xf, candidates)
    for value in heads.values():
      value.set_shape(rows.shape)   # the cond / map_fn loses the static batch size

    artist = tf.gather(self.catalog_artist_index, rows)                         # [B, N]
    played = tf.concat([listener["hist_rows"], listener["sess_rows"]], axis=1)
    familiar = candidate_flags.familiarity(rows, played, self.catalog_artist_index,
                                           self.catalog_size, self.num_artists)
    style = candidate_flags.session_style(rows, listener["sess_rows"],
                                          self.catalog_artist_index, self.catalog_tag_index,
                                          self.num_artists, self.num_tags)
    known = tf.cast(familiar[0] | familiar[1], tf.float32)
    fused = self._py.fusion({
        "interest": heads[tasks_lib.INTEREST_SCORE], "subscription": heads["subscription"],
        "exposure": heads["exposure"], "segment": xf[X("user_segment")],
        "activity": xf[X("context_activity")], "familiar": known, "candidate_ids": rows,
        "seed": inputs["exploration_seed"],
        "override_weights": inputs["alpha_beta_gamma"], "promo": tf.cast(promo, tf.float32),
        "override": tf.not_equal(inputs["override"], 0)}, inputs[fusion_select.FUSION_INPUT])
    score = fused["score"]
    mixed = self._py.mixing({"scores": tf.where(valid, score, -1e9), "is_promo": promo,
                             "artist_ids": artist, "valid": valid})

    reasons = candidate_flags.reason_strings(valid, promo, fused["exploration"],
                                             self.fusion_config.exploration, style, familiar,
                                             from_intent)
    out = {k: tf.where(valid, v, 0.0) for k, v in heads.items()}
    out["fused_score"] = tf.where(valid, score, 0.0)
    out["reasons"], out["order"] = reasons, mixed["order"]
    out["num_placed"] = mixed["num_placed"]
    out["weights"] = fused["weights"]
    out["familiar"] = known
    return out

