"""In-graph WordPiece tokenization of raw request strings for the BERT text encoder.

Owns the step from a batch of raw strings to the dense, fixed-width inputs a BERT encoder
takes: ``tensorflow_text.FastBertTokenizer`` over the checkpoint's own vocabulary
(lower-casing, NFD and accent stripping, punctuation splitting, WordPiece), truncation
to ``max_length - 2`` word pieces, ``[CLS]`` in front, ``[SEP]`` after, ``[PAD]`` to a
fixed width, and the attention mask. Everything runs in the TensorFlow graph, so a
SavedModel built on it takes raw strings and needs no Python at serving time.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"


class WordPieceTokenizer(tf.Module):
  """Raw strings ``[B]`` -> ``input_ids [B, T]``, ``input_mask [B, T]`` (int32).

  ``T`` is ``max_length`` (padded to a fixed width, so shapes are static for serving and
  batching). Texts longer than ``max_length - 2`` word pieces are cut at the end.

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
    self._tokenizer = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int64, unknown_token=UNK,
        lower_case_nfd_strip_accents=True)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, texts: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Tokenizes a batch of raw strings.

    Args:
      texts: ``[B]`` UTF-8 strings.

    Returns:
      ``input_ids [B, max_length]`` int32 and ``input_mask [B, max_length]`` int32
      (1 on ``[CLS]``, the word pieces and ``[SEP]``; 0 on padding).
    """
    pieces = self._tokenizer.tokenize(texts)                  # ragged [B, (n)]
    pieces = pieces[:, : self.max_length - 2]
    batch = tf.shape(texts, out_type=tf.int64)[0]
    cls = tf.fill([batch, 1], tf.constant(self.cls_id, tf.int64))
    sep = tf.fill([batch, 1], tf.constant(self.sep_id, tf.int64))
    ids = tf.concat([cls, pieces, sep], axis=1)
    mask = tf.ones_like(ids)
    shape = [None, self.max_length]
    dense_ids = ids.to_tensor(default_value=self.pad_id, shape=shape)
    dense_mask = mask.to_tensor(default_value=0, shape=shape)
    return {"input_ids": tf.cast(dense_ids, tf.int32),
            "input_mask": tf.cast(dense_mask, tf.int32)}
