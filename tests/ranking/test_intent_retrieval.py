"""Tests for ``IntentCandidates``: served signature vs in-process model, exactness of the
BruteForce index, personalization input, k clipping and the exported op set."""

import numpy as np
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top

from ranking.intent import catalog as catalog_lib
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import retrieval
from ranking.intent import tokenizer as tok_lib
from simulation import world as world_lib
from simulation.world_config import WorldConfig

REQUESTS = ["calm piano for a rainy commute", "upbeat but not cheesy, for cleaning the flat",
            "dark techno late at night", "something to study to", "Jazz für das Abendessen"]
LISTENER_DIM = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
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
  module = retrieval.IntentCandidates(model, tok, vectors)
  path = str(tmp_path_factory.mktemp("intent") / "saved")
  module.save(path)
  return module, tf.saved_model.load(path), vectors, path


def test_served_intent_candidates_returns_the_in_process_ids(setup):
  module, loaded, _, _ = setup
  texts = tf.constant(REQUESTS)
  rows, scores = module.candidates(texts, tf.constant(20))
  served = loaded.signatures[retrieval.SIGNATURE](text=texts, k=tf.constant(20))
  np.testing.assert_array_equal(served["catalog_rows"].numpy(), rows.numpy())
  np.testing.assert_allclose(served["scores"].numpy(), scores.numpy(), atol=1e-5)
  assert served["catalog_rows"].dtype == tf.int32 and served["scores"].shape == (5, 20)


def test_index_is_an_exact_search_over_the_whole_catalog(setup):
  module, _, vectors, _ = setup
  q = module.encode(tf.constant(REQUESTS)).numpy()
  rows, scores = module.candidates(tf.constant(REQUESTS), tf.constant(10))
  exact = q @ vectors.T
  want = np.argsort(-exact, axis=1, kind="stable")[:, :10]
  np.testing.assert_allclose(scores.numpy(), np.take_along_axis(exact, want, 1), atol=1e-5)
  np.testing.assert_array_equal(rows.numpy(), want)
  assert np.all(np.diff(scores.numpy(), axis=1) <= 1e-7)


def test_listener_vector_personalises_and_zero_listener_does_not(setup):
  module, loaded, _, _ = setup
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


def test_k_is_clipped_to_the_catalog(setup):
  module, loaded, _, _ = setup
  rows, _ = loaded.candidates(tf.constant(["rock"]), tf.constant(1000))
  assert rows.shape == (1, module.num_tracks)
  assert sorted(rows.numpy()[0].tolist()) == list(range(module.num_tracks))


def test_bad_track_vectors_are_rejected(setup):
  module, _, vectors, _ = setup
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
_SAVE_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename",
             "StaticRegexFullMatch", "StringJoin"}


def test_exported_graph_has_only_gpu_servable_or_text_ops(setup):
  _, _, _, path = setup
  meta = saved_model_utils.get_meta_graph_def(path, "serve")
  ops = {n.op for n in meta.graph_def.node}
  for fn in meta.graph_def.library.function:
    ops |= {n.op for n in fn.node_def}
  assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
  assert {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"} <= ops  # in-graph text
  assert ops <= _GPU_MATH | _TEXT_OPS | _SAVE_OPS, sorted(ops - _GPU_MATH - _TEXT_OPS - _SAVE_OPS)
