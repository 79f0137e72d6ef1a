"""The intent module inside the composed serving SavedModel (``serving.export``): the
served ``intent_candidates`` returns the track ids of the in-process module's rows."""

import numpy as np
import pandas as pd
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from bench import serving as bench_serving
from ranking.intent import catalog as catalog_lib
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import retrieval
from ranking.intent import tokenizer as tok_lib
from serving import export

TEXTS = ["calm piano for a rainy commute", "dance music for a house party",
         "dark ambient late at night"]


@pytest.fixture(scope="module")
def zero_shot_intent(serving_world):
  """The simulated world's paths and catalogue, and a zero-shot MiniLM intent module."""
  paths = serving_world
  tracks = pd.read_parquet(paths["tracks"])
  ck = ckpt_lib.load()
  model = dual_encoder.IntentDualEncoder(ck.config, num_tracks=len(tracks))
  model.encoder.load_checkpoint(ck)
  text_emb = dual_encoder.encode_texts(model.encoder, tok_lib.WordPieceTokenizer(ck.vocab, 48),
                                       catalog_lib.catalog_texts(tracks))
  module = retrieval.IntentCandidates(model, tok_lib.WordPieceTokenizer(ck.vocab, 32),
                                      retrieval.catalog_track_vectors(model, text_emb))
  return paths, tracks, module


@pytest.mark.slow
def test_composed_export_serves_the_in_process_intent_ids(zero_shot_intent, tmp_path_factory):
  paths, tracks, module = zero_shot_intent
  base = str(tmp_path_factory.mktemp("composed") / "melody")
  version = export.export_serving_model(bench_serving.build_model(), paths["tft"],
                                        paths["tracks"], base, n_max=100,
                                        warmup_examples=None, intent=module)
  loaded = tf.saved_model.load(version)
  served = loaded.signatures["intent_candidates"](text=tf.constant(TEXTS), k=tf.constant(10))
  rows, _ = module.candidates(tf.constant(TEXTS), tf.constant(10))
  want = tracks["track_id"].to_numpy()[rows.numpy()].astype(str)
  got = served["track_ids"].numpy().astype(str)
  np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_a_saved_intent_module_composes_like_the_in_process_one(zero_shot_intent,
                                                                tmp_path_factory):
  """The pipeline composes from the intent Trainer's SavedModel (fn_args.base_model):
  the reloaded module must serve the same ids inside the ranker's export."""
  paths, tracks, module = zero_shot_intent
  saved = module.save(str(tmp_path_factory.mktemp("intent_model") / "intent"))
  restored = tf.saved_model.load(saved)
  base = str(tmp_path_factory.mktemp("composed_saved") / "melody")
  version = export.export_serving_model(bench_serving.build_model(), paths["tft"],
                                        paths["tracks"], base, n_max=100,
                                        warmup_examples=None, intent=restored)
  served = tf.saved_model.load(version).signatures["intent_candidates"](
      text=tf.constant(TEXTS), k=tf.constant(10))
  rows, _ = module.candidates(tf.constant(TEXTS), tf.constant(10))
  want = tracks["track_id"].to_numpy()[rows.numpy()].astype(str)
  np.testing.assert_array_equal(served["track_ids"].numpy().astype(str), want)
