"""Catalog refresh: serving vectors for a new catalog from an already trained intent model.

Owns the one correct way to embed tracks after training. The track tower reads the
*pretrained* encoder's embedding of a track's text (``e`` in ``normalize(e + P_t e +
E_id[row])``), cached before fine-tuning; the fine-tuned encoder's embedding of the same
text is a different vector the track head was never trained on. So a refresh embeds the
new catalog's texts with a fresh copy of the pretrained checkpoint, passes them through
the trained track head (id embeddings for tracks the model was trained on, none for
new ones) and builds the serving module (dense index and, optionally, the BM25F index)
over the new rows.
"""

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ranking.intent import catalog as catalog_lib
from ranking.intent import checkpoint as ckpt_lib
from ranking.intent import dual_encoder
from ranking.intent import lexical as lexical_lib
from ranking.intent import retrieval
from ranking.intent import text_encoder
from ranking.intent import tokenizer as tok_lib


def pretrained_text_embeddings(checkpoint: ckpt_lib.Checkpoint, texts: Sequence[str],
                               track_max_length: int) -> np.ndarray:
  """``[N, H]`` embeddings of track texts by the pretrained (never fine-tuned) encoder."""
  encoder = text_encoder.BertTextEncoder(checkpoint.config, trainable_layers=0,
                                         name="pretrained_text_encoder")
  encoder.load_checkpoint(checkpoint)
  tokenizer = tok_lib.WordPieceTokenizer(checkpoint.vocab, track_max_length,
                                         name="track_tokenizer")
  return dual_encoder.encode_texts(encoder, tokenizer, list(texts))


def refresh_module(model: dual_encoder.IntentDualEncoder, checkpoint: ckpt_lib.Checkpoint,
                   request_tokenizer: tok_lib.WordPieceTokenizer, tracks: pd.DataFrame,
                   trained_track_ids: Optional[Sequence[str]] = None,
                   track_max_length: int = 128, lexical_weight: float = 0.0,
                   title_weight: float = 0.3) -> retrieval.IntentCandidates:
  """The serving module of a trained model over a new catalog.

  Usage:
    module = refresh_module(run.model, run.checkpoint, run.tokenizer, new_tracks,
                            trained_track_ids=run.catalog["track_id"])
    module.save(path)

  Args:
    model: the trained dual encoder.
    checkpoint: the pretrained checkpoint the model was fine-tuned from.
    request_tokenizer: the request tokenizer the model was trained with.
    tracks: the new catalog (``TRACK_SCHEMA`` frame) in serving row order.
    trained_track_ids: the training catalog's track ids in row order (their id
      embeddings carry over); None when the catalogs share no track.
    track_max_length: the track-text width the model was trained with.
    lexical_weight: weight of the BM25F scores (0: dense retrieval only).
    title_weight: weight of a title word against a tag word in BM25F.

  Returns:
    An ``IntentCandidates`` whose rows are ``tracks``' rows.
  """
  tracks = tracks.reset_index(drop=True)
  texts = catalog_lib.catalog_texts(tracks)
  emb = pretrained_text_embeddings(checkpoint, texts, track_max_length)
  if trained_track_ids is None:
    id_rows = np.full(len(tracks), -1, np.int32)
  else:
    id_rows = retrieval.map_track_ids(trained_track_ids, tracks["track_id"].astype(str))
  vectors = retrieval.catalog_track_vectors(model, emb, id_rows)
  lexical = (lexical_lib.LexicalIndex(texts, catalog_lib.catalog_titles(tracks), title_weight)
             if lexical_weight > 0 else None)
  return retrieval.IntentCandidates(model, request_tokenizer, vectors, lexical, lexical_weight)
