"""Tests for ``IntentCandidates``: served signature vs in-process model, exactness of the
dense index, personalization input, k clipping, the BM25F scorer against a plain-Python
reference, hybrid retrieval never below lexical matching, and the exported op set."""

import numpy as np
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top

from ranking.intent import catalog as catalog_lib
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import lexical
from ranking.intent import retrieval
from ranking.intent import tokenizer as tok_lib
from simulation import world as world_lib
from simulation.world_config import WorldConfig

REQUESTS = ["calm piano for a rainy commute", "upbeat but not cheesy, for cleaning the flat",
            "dark techno late at night", "something to study to", "Jazz für das Abendessen"]
LISTENER_DIM = 8


@pytest.fixture(scope="module")
def setup():
  """A dense-only module over 150 simulator tracks (MiniLM, non-trivial heads)."""
  ck = ckpt_lib.load()
  tracks = world_lib.World(WorldConfig(n_tracks=150), seed=3).tracks
  tok = tok_lib.WordPieceTokenizer(ck.vocab, 32)
  model = dual_encoder.IntentDualEncoder(ck.config,
                                         num_tracks=len(tracks),
                                         listener_dim=LISTENER_DIM)
  model.encoder.load_checkpoint(ck)
  rng = np.random.default_rng(0)
  # Non-trivial heads so personalization and ids change the result.
  model.listener_projection.kernel.assign(rng.normal(0, 0.05, (LISTENER_DIM, 384)))
  model.track_ids.embeddings.assign(rng.normal(0, 0.02, (len(tracks), 384)))
  text_emb = dual_encoder.encode_texts(model.encoder, tok_lib.WordPieceTokenizer(ck.vocab, 64),
                                       catalog_lib.catalog_texts(tracks))
  vectors = retrieval.catalog_track_vectors(model, text_emb)
  return retrieval.IntentCandidates(model, tok, vectors), vectors


@pytest.fixture(scope="module")
def hybrid(setup, tmp_path_factory):
  """The hybrid module and its saved SavedModel (the one export these tests load)."""
  module, vectors = setup
  tracks = world_lib.World(WorldConfig(n_tracks=150), seed=3).tracks
  titles = [f"Song {n} of the rock club" if n % 7 == 0 else "" for n in range(len(tracks))]
  lex = lexical.LexicalIndex(catalog_lib.catalog_texts(tracks), titles)
  module = retrieval.IntentCandidates(module.model, module.tokenizer, vectors, lex, 2.5)
  path = str(tmp_path_factory.mktemp("hybrid") / "saved")
  module.save(path)
  return module, tf.saved_model.load(path), catalog_lib.catalog_texts(tracks), titles, path


def _bm25f_reference(texts, titles, query, title_weight=0.3, k1=1.2, b=0.75):
  """Plain-Python BM25F of one query over (tags, title) documents."""
  docs = [(lexical.words(t), lexical.words(u)) for t, u in zip(texts, titles)]
  lengths = [len(t) + title_weight * len(u) for t, u in docs]
  avg = sum(lengths) / len(lengths)
  out = []
  for (tag_words, title_words), length in zip(docs, lengths):
    score = 0.0
    for w in set(lexical.words(query)):
      df = sum(w in t or w in u for t, u in docs)
      if not df:
        continue
      tf_ = tag_words.count(w) + title_weight * title_words.count(w)
      idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
      score += idf * tf_ * (k1 + 1) / (tf_ + k1 * (1 - b + b * length / avg)) if tf_ else 0.0
    out.append(score)
  return np.asarray(out)


def test_lexical_scores_match_a_plain_python_bm25f(hybrid):
  module, _, texts, titles, _ = hybrid
  queries = ["Rock!  rock and ROCKS, club", "calm piano, rainy commute", "zzz unknown", ""]
  got = module.lexical.scores(tf.constant(queries)).numpy()
  for query, row in zip(queries, got):
    np.testing.assert_allclose(row, _bm25f_reference(texts, titles, query), rtol=1e-5,
                               atol=1e-6)
  assert got[2].max() == got[3].max() == 0.0
  assert lexical.words("The Drums & Pianos, please") == ["drum", "&", "piano"]


def test_hybrid_is_never_below_lexical_matching(hybrid):
  module, _, _, _, _ = hybrid
  texts = tf.constant(REQUESTS + ["rock", "no word matches this qqq"])
  k = module.num_tracks
  rows, scores = module.candidates(texts, tf.constant(k))
  lex = module.lexical.scores(texts).numpy()
  dense = module.encode(texts).numpy() @ module.track_matrix.numpy().T
  for r in range(len(REQUESTS) + 2):
    best = lex[r] == lex[r].max()
    if lex[r].max() > 0:   # weight 2.5 > any cosine gap: best lexical matches come first
      assert best[rows.numpy()[r, :best.sum()]].all()
    else:                  # no shared word: the dense order
      np.testing.assert_array_equal(rows.numpy()[r], np.argsort(-dense[r], kind="stable"))
  vocab = {w: i for i, w in enumerate(module.lexical.vocabulary)}
  best = module.lexical.weights().values.numpy()
  cols = module.lexical.weights().indices.numpy()[:, 1]
  per_word = np.zeros(len(vocab))
  np.maximum.at(per_word, cols, best)
  for r, text in enumerate(texts.numpy()):
    reach = sum(per_word[vocab[w]] for w in set(lexical.words(text.decode())) if w in vocab)
    want = dense[r] + (2.5 * lex[r] / reach if reach else 0.0)
    np.testing.assert_allclose(scores.numpy()[r], want[rows.numpy()[r]], atol=1e-5)


def test_served_hybrid_signature_matches_in_process_and_flags_cut_requests(hybrid):
  module, loaded, _, _, _ = hybrid
  long = " ".join(["calm piano for a rainy commute"] * 12)
  texts = tf.constant(REQUESTS + [long])
  rows, scores = module.candidates(texts, tf.constant(15))
  served = loaded.signatures[retrieval.SIGNATURE](text=texts, k=tf.constant(15))
  np.testing.assert_array_equal(served["catalog_rows"].numpy(), rows.numpy())
  np.testing.assert_allclose(served["scores"].numpy(), scores.numpy(), atol=1e-5)
  assert served["text_cut"].numpy().tolist() == [0] * len(REQUESTS) + [1]


def test_index_is_an_exact_search_over_the_whole_catalog(setup):
  module, vectors = setup
  q = module.encode(tf.constant(REQUESTS)).numpy()
  rows, scores = module.candidates(tf.constant(REQUESTS), tf.constant(10))
  exact = q @ vectors.T
  want = np.argsort(-exact, axis=1, kind="stable")[:, :10]
  np.testing.assert_allclose(scores.numpy(), np.take_along_axis(exact, want, 1), atol=1e-5)
  np.testing.assert_array_equal(rows.numpy(), want)
  assert np.all(np.diff(scores.numpy(), axis=1) <= 1e-7)


def test_listener_vector_personalises_and_zero_listener_does_not(hybrid):
  module, loaded = hybrid[:2]
  texts = tf.constant(REQUESTS[:2])
  base, _ = module.candidates(texts, tf.constant(30))
  zero, _ = module.candidates_for_listener(texts, tf.zeros([2, LISTENER_DIM]), tf.constant(30))
  np.testing.assert_array_equal(zero.numpy(), base.numpy())
  listener = tf.constant(np.random.default_rng(1).normal(0, 3, (2, LISTENER_DIM)), tf.float32)
  personal, _ = module.candidates_for_listener(texts, listener, tf.constant(30))
  assert not np.array_equal(personal.numpy(), base.numpy())
  served = loaded.signatures[retrieval.SIGNATURE + "_for_listener"](
      text=texts, listener=listener, k=tf.constant(30))
  np.testing.assert_array_equal(served["catalog_rows"].numpy(), personal.numpy())


def test_k_is_clipped_to_the_catalog(hybrid):
  module, loaded = hybrid[:2]
  rows, _ = loaded.candidates(tf.constant(["rock"]), tf.constant(1000))
  assert rows.shape == (1, module.num_tracks)
  assert sorted(rows.numpy()[0].tolist()) == list(range(module.num_tracks))


def test_bad_track_vectors_are_rejected(setup):
  module, vectors = setup
  with pytest.raises(ValueError, match="track_vectors"):
    retrieval.IntentCandidates(module.model, module.tokenizer, vectors[:, :10])


# Dense math with GPU kernels, the tokenizer's string/ragged ops (CPU kernels, placed
# on the CPU automatically under soft placement) and checkpoint save/restore plumbing.
_GPU_MATH = {"AddV2", "All", "Assert", "BatchMatMulV2", "BiasAdd", "Cast", "ConcatV2",
             "Const", "Equal", "Erfc", "Fill", "GatherV2", "Identity", "If", "MatMul",
             "Maximum", "Mean", "Minimum", "Mul", "Neg", "NoOp", "OnesLike", "Pack",
             "Placeholder", "Prod", "Range", "ReadVariableOp", "RealDiv", "Reshape",
             "ResourceGather", "Rsqrt", "Select", "SelectV2", "Shape", "Softmax", "Square",
             "SquaredDifference", "StatefulPartitionedCall", "PartitionedCall",
             "StopGradient", "StridedSlice", "Sub", "Sum", "TopKV2", "Transpose",
             "VarHandleOp", "AssignVariableOp", "DisableCopyOnRead", "Less",
             "GreaterEqual", "LogicalAnd", "ExpandDims", "ZerosLike", "Squeeze"}
_TEXT_OPS = {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "RaggedGather",
             "RaggedRange", "RaggedTensorToTensor"}
# The BM25F scorer: string ops and the vocabulary table (CPU), the sparse matmul (GPU).
_LEXICAL_OPS = {"StringLower", "StaticRegexReplace", "StringSplitV2", "HashTableV2",
                "LookupTableFindV2", "LookupTableImportV2", "RaggedBincount", "DenseBincount",
                "SparseTensorDenseMatMul", "Where", "GatherNd", "Greater", "NotEqual", "Cumsum",
                "RaggedTensorFromVariant", "RaggedTensorToVariant", "Max", "DivNoNan",
                "Unique", "Size", "SparseToDense", "LogicalNot", "Slice", "Tile", "BroadcastTo",
                "LogicalOr", "UnsortedSegmentSum"}
_SAVE_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename",
             "StaticRegexFullMatch", "StringJoin"}


def test_exported_graph_has_only_gpu_servable_or_text_ops(hybrid):
  path = hybrid[-1]
  meta = saved_model_utils.get_meta_graph_def(path, "serve")
  ops = {n.op for n in meta.graph_def.node}
  for fn in meta.graph_def.library.function:
    ops |= {n.op for n in fn.node_def}
  assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
  assert {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"} <= ops  # in-graph text
  assert "SparseTensorDenseMatMul" in ops                                   # BM25F
  allowed = _GPU_MATH | _TEXT_OPS | _LEXICAL_OPS | _SAVE_OPS
  assert ops <= allowed, sorted(ops - allowed)
