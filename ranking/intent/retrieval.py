"""``IntentCandidates``: the text-intent candidate source that the serving export embeds.

Owns the serving-side contract of the intent model: raw request strings (and, optionally,
the ranking model's listener vectors) in, the top-k catalog rows and their scores out.
Tokenization, the request tower and the retrieval all run in the graph; the catalog's
track vectors are computed once at export and held as one ``[N, H]`` matrix (an exact
``q . t`` over every row, then top-k). With a ``lexical.LexicalIndex`` the retrieval is
hybrid: ``score = q . t + lexical_weight * coverage(request, track)``, the BM25F score
over the best score the request's words could reach (``LexicalIndex.coverage``), so the
weight means the same for short and long requests; a request sharing no word with the
catalog is scored by the dense part alone.
Rows index the catalog in ``tracks.parquet`` row order.

Contract (tf.functions, usable inside another module's signatures):

* ``candidates(texts [B] string, k [] int32) -> (rows [B, k] int32, scores [B, k] float32)``
* ``candidates_for_listener(texts [B] string, listener [B, d] float32, k [] int32)``
  with ``listener = RankingModel.encode_listener(...)["listener"]`` (``d`` =
  ``listener_dim``; a zero vector means "no personalization").
* ``encode(texts [B] string) -> [B, H]`` request vectors (for tests and analysis).
* ``text_cut(texts [B] string) -> [B] int32``: 1 where the request was longer than the
  tokenizer's width and cut at a word boundary (the stand-alone signature returns it).

``k`` larger than the catalog is clipped to the catalog size.
"""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from ranking.intent import dual_encoder
from ranking.intent import lexical as lexical_lib
from ranking.intent import tokenizer as tok_lib

SIGNATURE = "intent_candidates"


class IntentCandidates(tf.Module):
  """Raw text (+ optional listener) -> top-k catalog rows, all in the graph.

  Usage:
    module = IntentCandidates(model, tokenizer, track_vectors)
    rows, scores = module.candidates(tf.constant(["calm piano, rainy commute"]), 10)

  Args:
    model: the trained ``IntentDualEncoder`` (its request tower is used).
    tokenizer: the ``WordPieceTokenizer`` over the encoder's vocabulary.
    track_vectors: ``[N, H]`` final track-tower vectors of the serving catalog, in
      catalog row order (see :func:`catalog_track_vectors`).
    lexical: optional BM25F index over the same catalog rows (hybrid retrieval).
    lexical_weight: weight of the BM25F coverage (in [0, 1]) against the cosine.
    name: module name.
  """

  def __init__(self, model: dual_encoder.IntentDualEncoder, tokenizer: tok_lib.WordPieceTokenizer,
               track_vectors: np.ndarray, lexical: Optional[lexical_lib.LexicalIndex] = None,
               lexical_weight: float = 0.0, name: str = "intent"):
    super().__init__(name=name)
    track_vectors = np.asarray(track_vectors, np.float32)
    if track_vectors.ndim != 2 or track_vectors.shape[1] != model.hidden_size:
      raise ValueError(f"track_vectors must be [N, {model.hidden_size}], got "
                       f"{track_vectors.shape}")
    if track_vectors.shape[0] < 1:
      raise ValueError("track_vectors is empty: the catalog has no track")
    # The Keras model is kept out of the object graph: saving a Keras model traces every
    # layer's call for Keras metadata (tens of seconds for BERT), which serving never
    # uses. Its variables are tracked directly, so the functions' captures are saved.
    self.__dict__["model"] = model
    self.model_variables = list(model.variables)
    self.tokenizer = tokenizer
    self.num_tracks = int(track_vectors.shape[0])
    self.listener_dim = int(model.listener_dim)
    if lexical is not None and lexical.num_tracks != self.num_tracks:
      raise ValueError(f"lexical indexes {lexical.num_tracks} tracks, track_vectors "
                       f"{self.num_tracks}")
    if lexical_weight < 0:
      raise ValueError(f"lexical_weight must be >= 0, got {lexical_weight}")
    self.lexical = lexical
    self.lexical_weight = float(lexical_weight) if lexical is not None else 0.0
    self.track_matrix = tf.Variable(track_vectors, trainable=False, name="track_vectors")

  def _top_k(self, q, k, texts=None):
    k = tf.minimum(tf.cast(k, tf.int32), self.num_tracks)
    scores = tf.matmul(q, self.track_matrix, transpose_b=True)
    if texts is not None and self.lexical_weight > 0:
      scores += self.lexical_weight * self.lexical.coverage(texts)
    scores, rows = tf.math.top_k(scores, k=k)
    return rows, scores

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                tf.TensorSpec([], tf.int32)])
  def retrieve(self, query_vectors, k):
    """Top-k catalog rows and scores for precomputed request vectors ``[B, H]``."""
    return self._top_k(query_vectors, k)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def encode(self, texts):
    """Request vectors ``[B, H]`` without personalization.

    The tokenizer pads to its full width; the columns that are padding in every row are
    dropped before the encoder, whose cost grows with the width (padding changes no
    masked mean, so the vectors are the same).
    """
    tokens = self.tokenizer(texts)
    width = tf.reduce_max(tf.reduce_sum(tokens["input_mask"], axis=1))
    trimmed = {k: tokens[k][:, :width] for k in ("input_ids", "input_mask")}
    return self.model.query(trimmed, None, training=False)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def text_cut(self, texts):
    """``[B]`` int32: 1 where a request had more word pieces than the tokenizer keeps."""
    return self.tokenizer(texts)["cut"]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([], tf.int32)])
  def candidates(self, texts, k):
    """Top-k catalog rows ``[B, k]`` int32 and scores ``[B, k]`` for raw requests."""
    return self._top_k(self.encode(texts), k, texts)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None, None], tf.float32),
                                tf.TensorSpec([], tf.int32)])
  def candidates_for_listener(self, texts, listener, k):
    """Like :meth:`candidates`, personalised by the ranking model's listener vectors."""
    q = self.model.personalize(self.encode(texts), listener if self.listener_dim else None)
    return self._top_k(q, k, texts)

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """``intent_candidates`` (and a personalised variant) for a stand-alone SavedModel."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([], tf.int32, name="k")])
    def intent_candidates(text, k):
      rows, scores = self.candidates(text, k)
      return {"catalog_rows": rows, "scores": scores, "text_cut": self.text_cut(text)}

    sigs = {SIGNATURE: intent_candidates.get_concrete_function()}
    if self.listener_dim:
      @tf.function(input_signature=[
          tf.TensorSpec([None], tf.string, name="text"),
          tf.TensorSpec([None, self.listener_dim], tf.float32, name="listener"),
          tf.TensorSpec([], tf.int32, name="k")])
      def intent_candidates_for_listener(text, listener, k):
        rows, scores = self.candidates_for_listener(text, listener, k)
        return {"catalog_rows": rows, "scores": scores}
      sigs[SIGNATURE + "_for_listener"] = intent_candidates_for_listener.get_concrete_function()
    return sigs

  def save(self, path: str) -> str:
    """Saves this module alone as a SavedModel with the ``intent_candidates`` signature."""
    tf.saved_model.save(self, path, signatures=self.signatures())
    return path


def catalog_track_vectors(model: dual_encoder.IntentDualEncoder, track_text_embeddings: np.ndarray,
                          id_rows: Optional[np.ndarray] = None,
                          batch_size: int = 4096) -> np.ndarray:
  """Track-tower vectors ``[N, H]`` of a serving catalog.

  Args:
    model: the trained dual encoder.
    track_text_embeddings: ``[N, H]`` pretrained-encoder embeddings of the catalog texts.
    id_rows: ``[N]`` the model's id-embedding row of each catalog row (-1: unknown track,
      text only); the identity when the serving catalog is the training catalog.
    batch_size: rows per call.
  """
  emb = np.asarray(track_text_embeddings, np.float32)
  rows = (np.arange(len(emb)) if id_rows is None else np.asarray(id_rows)).astype(np.int32)
  if len(rows) != len(emb):
    raise ValueError(f"id_rows has {len(rows)} rows, embeddings {len(emb)}")
  out = [model.track_vectors(tf.constant(emb[s:s + batch_size]),
                             tf.constant(rows[s:s + batch_size])).numpy()
         for s in range(0, len(emb), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, model.hidden_size), np.float32)


def map_track_ids(trained_ids: Sequence[str], catalog_ids: Sequence[str]) -> np.ndarray:
  """Id-embedding row of each serving-catalog track id (-1 where it was not trained)."""
  lookup = {str(t): i for i, t in enumerate(trained_ids)}
  return np.asarray([lookup.get(str(t), -1) for t in catalog_ids], np.int32)
