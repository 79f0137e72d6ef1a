"""The lexical side of hybrid intent retrieval: BM25F over track tags and titles, in the graph.

Owns the word-level matching that the dense encoder is fused with. At export the
catalog's tag texts and titles are split into words (lower case, letters and digits, a
plural ``s`` dropped, stopwords removed); the words become a vocabulary and every track
gets a BM25F weight per word, where a title occurrence counts ``title_weight`` of a tag
occurrence before the BM25 saturation, so titles can help but never outvote the tags.
The weights are held as one sparse ``[N, V]`` matrix. At serving time a request goes
through the same word split in the graph, its words are looked up in the vocabulary
(unknown words are dropped) and its scores over the whole catalog are one sparse-dense
matmul: ``score(d) = sum over distinct request words w of W[d, w]``. For fusion with
dense scores, :meth:`LexicalIndex.coverage` divides that by the best score each request
word could reach on any track (``sum_w max_d W[d, w]``), so a track matching every word
as well as any track can scores 1 and a track matching one filler word of a long request
scores little.
"""

import collections
import math
import re
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

# Function words and request boilerplate that say nothing about the music.
STOPWORDS = frozenset("""
a an and any are as at be but by for from give good have i i'm im in into is it its just
like me mix music my need of on or please put really so some something song songs sound
sounds than that the their this to track tracks tune tunes very want with would you your
""".split())

_NOT_WORD = r"[^a-z0-9&]+"
_PLURAL = r"^([a-z0-9&]{3,}[^s])s$"


def words(text: str) -> List[str]:
  """The index words of a text, exactly as :meth:`LexicalIndex.scores` splits requests."""
  out = []
  for w in re.sub(_NOT_WORD, " ", str(text).lower()).split():
    w = re.sub(_PLURAL, r"\1", w)
    if w and w not in STOPWORDS:
      out.append(w)
  return out


class LexicalIndex(tf.Module):
  """BM25F scores of raw requests against a fixed catalog, as a sparse matmul.

  Usage:
    lex = LexicalIndex(catalog.catalog_texts(tracks), catalog.catalog_titles(tracks))
    scores = lex.scores(tf.constant(["flamenco guitar"]))        # [B, N] float32

  Args:
    texts: ``[N]`` the tracks' tag texts (``catalog.catalog_texts``).
    titles: ``[N]`` the tracks' titles (``""`` where none); None for no title field.
    title_weight: how much a title occurrence counts against a tag occurrence.
    k1: BM25 term-frequency saturation.
    b: BM25 length normalization.
    name: module name.
  """

  def __init__(self, texts: Sequence[str], titles: Sequence[str] = None,
               title_weight: float = 0.3, k1: float = 1.2, b: float = 0.75,
               name: str = "lexical"):
    super().__init__(name=name)
    texts = [str(t) for t in texts]
    titles = [""] * len(texts) if titles is None else [str(t) for t in titles]
    if len(titles) != len(texts):
      raise ValueError(f"titles has {len(titles)} rows, texts {len(texts)}")
    if not texts:
      raise ValueError("the catalog is empty")
    if not 0.0 <= title_weight <= 1.0:
      raise ValueError(f"title_weight must be in [0, 1], got {title_weight}")
    if k1 <= 0 or not 0.0 <= b <= 1.0:
      raise ValueError(f"need k1 > 0 and b in [0, 1], got k1={k1} b={b}")
    self.num_tracks = len(texts)
    self.title_weight = float(title_weight)
    rows, cols, vals, vocab = bm25f_weights(texts, titles, title_weight, k1, b)
    self.vocabulary = tuple(vocab)
    self.vocab_size = max(len(vocab), 1)
    # The vocabulary table lives in the SavedModel (built at export, no asset file).
    self._table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocab or [""], tf.string),
                                            tf.range(max(len(vocab), 1), dtype=tf.int64)),
        default_value=-1, name="lexical_vocabulary")
    order = np.lexsort((cols, rows))
    self._indices = tf.Variable(np.stack([rows, cols], 1)[order].astype(np.int64).reshape(-1, 2),
                                trainable=False, name="bm25_indices")
    self._values = tf.Variable(np.asarray(vals, np.float32)[order], trainable=False,
                               name="bm25_values")
    best = np.zeros(self.vocab_size, np.float32)
    np.maximum.at(best, cols, np.asarray(vals, np.float32))
    self._best = tf.Variable(best, trainable=False, name="bm25_best_per_word")

  def weights(self) -> tf.SparseTensor:
    """The ``[N, V]`` BM25F weight matrix."""
    return tf.SparseTensor(self._indices, self._values, [self.num_tracks, self.vocab_size])

  def word_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """``[B, (n)]`` vocabulary ids of the distinct known words of each request."""
    text = tf.strings.regex_replace(tf.strings.lower(texts, encoding="utf-8"), _NOT_WORD, " ")
    split = tf.strings.split(text)
    split = tf.ragged.map_flat_values(tf.strings.regex_replace, split, _PLURAL, r"\1")
    ids = tf.ragged.map_flat_values(self._table.lookup, split)
    return tf.ragged.boolean_mask(ids, ids >= 0)

  def _bag(self, texts: tf.Tensor) -> tf.Tensor:
    """``[B, V]`` 1 where the request holds the word."""
    return tf.math.bincount(tf.cast(self.word_ids(texts), tf.int32), minlength=self.vocab_size,
                            maxlength=self.vocab_size, binary_output=True, axis=-1,
                            dtype=tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def scores(self, texts: tf.Tensor) -> tf.Tensor:
    """``[B, N]`` BM25F scores of raw requests (0 for a track sharing no word)."""
    bag = self._bag(texts)
    return tf.transpose(tf.sparse.sparse_dense_matmul(self.weights(), bag, adjoint_b=True))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def coverage(self, texts: tf.Tensor) -> tf.Tensor:
    """``[B, N]`` scores over the request's best reachable score, in [0, 1] (0: no word)."""
    bag = self._bag(texts)
    raw = tf.transpose(tf.sparse.sparse_dense_matmul(self.weights(), bag, adjoint_b=True))
    reachable = tf.linalg.matvec(bag, self._best)[:, tf.newaxis]
    return tf.math.divide_no_nan(raw, reachable)


def bm25f_weights(texts: Sequence[str], titles: Sequence[str], title_weight: float,
                  k1: float, b: float):
  """BM25F weights of every (track, word) pair: ``(rows, cols, values, vocabulary)``.

  ``tf(d, w) = tf_tags + title_weight * tf_title``, ``len(d)`` the same blend of the
  fields' word counts; ``W[d, w] = idf(w) * tf (k1 + 1) / (tf + k1 (1 - b + b len/avglen))``
  with ``idf(w) = log(1 + (N - df + 0.5) / (df + 0.5))``.
  """
  bags: List[Dict[str, float]] = []
  lengths = np.zeros(len(texts), np.float64)
  df: Dict[str, int] = collections.Counter()
  for n, (text, title) in enumerate(zip(texts, titles)):
    bag: Dict[str, float] = collections.defaultdict(float)
    tag_words, title_words = words(text), words(title) if title_weight > 0 else []
    for w in tag_words:
      bag[w] += 1.0
    for w in title_words:
      bag[w] += title_weight
    lengths[n] = len(tag_words) + title_weight * len(title_words)
    df.update(bag.keys())
    bags.append(bag)
  vocab = sorted(df)
  col = {w: i for i, w in enumerate(vocab)}
  n_docs = len(texts)
  avg = max(float(lengths.mean()), 1e-9)
  rows, cols, vals = [], [], []
  for n, bag in enumerate(bags):
    norm = k1 * (1.0 - b + b * lengths[n] / avg)
    for w, tf_ in bag.items():
      idf = math.log(1.0 + (n_docs - df[w] + 0.5) / (df[w] + 0.5))
      rows.append(n)
      cols.append(col[w])
      vals.append(idf * tf_ * (k1 + 1.0) / (tf_ + norm))
  return (np.asarray(rows, np.int64), np.asarray(cols, np.int64),
          np.asarray(vals, np.float64), vocab)
