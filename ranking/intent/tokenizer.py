"""In-graph WordPiece tokenization of raw request strings for the BERT text encoder.

Owns the step from a batch of raw strings to the dense, fixed-width inputs a BERT encoder
takes: ``tensorflow_text.FastBertTokenizer`` over the checkpoint's own vocabulary
(lower-casing, NFD and accent stripping, punctuation splitting, WordPiece), truncation
to at most ``max_length - 2`` word pieces at a word boundary (a word is never kept in
part), ``[CLS]`` in front, ``[SEP]`` after, ``[PAD]`` to a fixed width, the attention
mask, and a flag per text that says whether it was cut. Everything runs in the TensorFlow
graph, so a SavedModel built on it takes raw strings and needs no Python at serving time.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"


class WordPieceTokenizer(tf.Module):
  """Raw strings ``[B]`` -> ``input_ids [B, T]``, ``input_mask [B, T]`` (int32).

  ``T`` is ``max_length`` (padded to a fixed width, so shapes are static for serving and
  batching). Texts longer than ``max_length - 2`` word pieces are cut at the end, before
  the first word that does not fit whole (a word longer than the width alone is cut
  inside it).

  Usage:
    tok = WordPieceTokenizer(vocab_list, max_length=32)
    out = tok(tf.constant(["calm piano for a rainy commute"]))
    out["input_ids"]   # [[101, 5475, 4770, ..., 102, 0, ...]]

  Args:
    vocab: the WordPiece vocabulary, one token per entry, in id order (``vocab.txt``).
    max_length: width of the output including ``[CLS]`` and ``[SEP]``; at least 3.
    name: module name.
  """

  def __init__(self, vocab: Sequence[str], max_length: int = 32, name: str = "tokenizer"):
    super().__init__(name=name)
    vocab = list(vocab)
    if max_length < 3:
      raise ValueError(f"max_length must be at least 3 ([CLS] x [SEP]), got {max_length}")
    missing = [t for t in (CLS, SEP, PAD, UNK) if t not in vocab]
    if missing:
      raise ValueError(f"vocabulary lacks the special tokens {missing}")
    self.vocab_size = len(vocab)
    self.max_length = int(max_length)
    self.cls_id = vocab.index(CLS)
    self.sep_id = vocab.index(SEP)
    self.pad_id = vocab.index(PAD)
    # A "##" piece continues the word before it; a cut may only fall before other pieces.
    self._continues = tf.constant([t.startswith("##") for t in vocab], tf.bool)
    self._tokenizer = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int64, unknown_token=UNK,
        lower_case_nfd_strip_accents=True)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, texts: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Tokenizes a batch of raw strings.

    Args:
      texts: ``[B]`` UTF-8 strings.

    Returns:
      ``input_ids [B, max_length]`` int32, ``input_mask [B, max_length]`` int32 (1 on
      ``[CLS]``, the word pieces and ``[SEP]``; 0 on padding) and ``cut [B]`` int32 (1
      where the text had more word pieces than fit).
    """
    pieces = self._tokenizer.tokenize(texts)                  # ragged [B, (n)]
    pieces, cut = self._cut_at_word(pieces)
    batch = tf.shape(texts, out_type=tf.int64)[0]
    cls = tf.fill([batch, 1], tf.constant(self.cls_id, tf.int64))
    sep = tf.fill([batch, 1], tf.constant(self.sep_id, tf.int64))
    ids = tf.concat([cls, pieces, sep], axis=1)
    mask = tf.ones_like(ids)
    shape = [None, self.max_length]
    dense_ids = ids.to_tensor(default_value=self.pad_id, shape=shape)
    dense_mask = mask.to_tensor(default_value=0, shape=shape)
    return {"input_ids": tf.cast(dense_ids, tf.int32),
            "input_mask": tf.cast(dense_mask, tf.int32), "cut": tf.cast(cut, tf.int32)}

  def _cut_at_word(self, pieces: tf.RaggedTensor):
    """Keeps at most ``max_length - 2`` pieces per row, cutting before a word's first piece.

    Returns the kept pieces (ragged) and ``[B]`` bool: the row was cut.
    """
    width = self.max_length - 2
    n = pieces.row_lengths()
    head = pieces[:, :width + 1].to_tensor(default_value=0, shape=[None, width + 1])
    # Position j may end the kept text when piece j starts a word or lies past the end.
    past_end = tf.range(width + 1, dtype=tf.int64)[tf.newaxis, :] >= n[:, tf.newaxis]
    starts = ~tf.gather(self._continues, head) | past_end
    last_start = tf.reduce_max(tf.where(starts, tf.range(width + 1, dtype=tf.int64), 0), axis=1)
    cut = n > width
    keep = tf.where(cut, tf.where(last_start > 0, last_start, width), n)
    kept = tf.RaggedTensor.from_tensor(head[:, :width], lengths=keep)
    return kept, cut
