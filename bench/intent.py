"""Text-intent benchmark: BM25 vs zero-shot vs fine-tuned vs fine-tuned + preference
optimization on held-out requests, and serving latency against exact numpy search.

Catalog: a few thousand real MTG-Jamendo tracks (titled ones first) plus tagged HetRec
artists from the shared data (the simulator's catalog, which carries real Jamendo tags,
when the shared data is absent). Listeners: a RankingModel briefly trained on synthetic
batches encodes listeners (``listener`` vectors) and scores every catalog track for them
(``interest``), the personal signal of the triplets and of the reward. Evaluation
requests come from held-out phrasing templates; a track is relevant when its tags
satisfy the request's intent (``ranking.intent.evaluation``: capped Recall@10/50,
NDCG@10). ``personal@10`` is the mean per-listener z-scored interest of the top 10.

Latency (same process, same embeddings): request encoding (raw string -> vector, batch
1) and top-100 retrieval over the whole catalog with the in-graph BruteForce index, each
against an exact numpy search (``q @ T.T`` + partial sort) of the same vectors; the
ratio is reported. Writes ``bench/results/intent.json`` and prints the table.
"""

import argparse
import os
import time
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from bench import common
from features import feature_spec
from pipeline import intent_trainer
from ranking import config as ranking_config
from ranking import model as ranking_model
from melody_testing import synthetic_batches
from ranking.intent import catalog as catalog_lib
from ranking.intent import dual_encoder
from ranking.intent import evaluation
from ranking.intent import intents
from ranking.intent import preference as pref

X = feature_spec.xf
METRIC_KEYS = ("recall@10", "recall@50", "ndcg@10", "personal@10")


def load_catalog(data_dir: Optional[str], n_jamendo: int, n_hetrec: int,
                 seed: int) -> (pd.DataFrame, str):
  """Real Jamendo (+ HetRec) catalog, or the simulator's when the data is absent."""
  if data_dir and os.path.isdir(data_dir):
    from features.datasets import registry  # pylint: disable=g-import-not-at-top
    _, jam, _ = registry.load("jamendo", data_dir)
    _, het, _ = registry.load("hetrec", data_dir)
    return catalog_lib.mixed_catalog(jam, het, n_jamendo, n_hetrec, seed=seed), "jamendo+hetrec"
  from simulation import world as world_lib  # pylint: disable=g-import-not-at-top
  from simulation import world_config  # pylint: disable=g-import-not-at-top
  w = world_lib.World(world_config.WorldConfig(n_tracks=n_jamendo + n_hetrec), seed=seed)
  return w.tracks.reset_index(drop=True), "simulator (Jamendo tags)"


def _stable_hash(values, buckets: int) -> np.ndarray:
  import zlib  # pylint: disable=g-import-not-at-top
  return np.asarray([1 + zlib.crc32(str(v).encode()) % (buckets - 1) for v in values],
                    np.int64)


def catalog_candidates(catalog: pd.DataFrame) -> Dict[str, np.ndarray]:
  """Transformed candidate features of every catalog row for the RankingModel.

  Ids are hashed into the ranker's vocabularies (the pipeline's TFT vocabularies do this
  for real; here only the structure matters: one id per track, artist and tag).
  """
  card = {k: v[2] for k, v in feature_spec.TRANSFORMED_FEATURES.items()}
  n = len(catalog)
  tags = np.zeros((n, feature_spec.MAX_TAGS), np.int64)
  for i, t in enumerate(catalog["tags"]):
    keys = [catalog_lib.tag_key(x) for x in list(t)[:feature_spec.MAX_TAGS]]
    if keys:
      tags[i, :len(keys)] = _stable_hash(keys, card[X("cand_tags")])
  pop = pd.to_numeric(catalog["popularity"], errors="coerce").fillna(0.0).to_numpy()
  pop = (pop - pop.mean()) / (pop.std() + 1e-6)
  dur = pd.to_numeric(catalog["duration_s"], errors="coerce").fillna(200.0).to_numpy()
  dur_b = np.clip((np.log1p(dur) - 3.0) * 4, 0, card[X("cand_duration_s")] - 1)
  return {
      X("cand_track_id"): 1 + np.arange(n, dtype=np.int64) % (card[X("cand_track_id")] - 1),
      X("cand_artist_id"): _stable_hash(catalog["artist_id"].fillna(""),
                                        card[X("cand_artist_id")]),
      X("cand_tags"): tags,
      X("cand_num_tags"): (tags > 0).sum(1).astype(np.int64),
      X("cand_duration_s"): dur_b.astype(np.int64),
      X("cand_popularity"): pop.astype(np.float32),
      X("cand_is_promo"): np.zeros(n, np.int64),
  }


def ranking_listeners(catalog: pd.DataFrame, n_listeners: int, train_steps: int,
                      seed: int):
  """(listener vectors [L, d], interest [L, N]) from a briefly trained RankingModel."""
  tf.keras.utils.set_random_seed(seed)
  model = ranking_model.RankingModel(ranking_config.ModelConfig(),
                                     ranking_config.TrainConfig())
  model.compile(optimizer=ranking_model.make_optimizer(model, model.train_config))
  n_art = feature_spec.TRANSFORMED_FEATURES[X("cand_artist_id")][2] - 1
  if train_steps:
    batches = [synthetic_batches.synthetic_batch(256, seed=seed + s, num_artists=min(n_art, 200))
               for s in range(train_steps)]
    ds = tf.data.Dataset.from_tensor_slices(
        {k: np.stack([b[k] for b in batches]) for k in batches[0]})
    model.fit(ds, epochs=1, verbose=0)
  listeners = synthetic_batches.synthetic_batch(n_listeners, seed=seed + 10_000,
                                              num_artists=min(n_art, 200))
  feats = {k: tf.constant(listeners[k]) for k in ranking_model.LISTENER_FEATURES}
  enc = model.encode_listener(feats, training=False)
  cands = {k: tf.constant(v) for k, v in catalog_candidates(catalog).items()}
  # The synthetic listeners like a few artist ids: give catalog artists those ids in
  # turn so that the ranker's interest differs between listeners on this catalog.
  artists = catalog["artist_id"].fillna("").to_numpy()
  _, art_idx = np.unique(artists, return_inverse=True)
  cands[X("cand_artist_id")] = tf.constant(1 + art_idx % min(n_art, 200), tf.int64)
  interest = np.zeros((n_listeners, len(catalog)), np.float32)
  for i in range(n_listeners):
    one = {k: v[i:i + 1] for k, v in enc.items()}
    interest[i] = model.score(one, cands, training=False)["interest"].numpy()
  return enc["listener"].numpy(), interest


def bm25_top(texts: List[str], queries: List[str], k: int) -> np.ndarray:
  import bm25s  # pylint: disable=g-import-not-at-top
  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False),
                  show_progress=False)
  rows, _ = retriever.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False),
                               k=k, show_progress=False)
  return np.asarray(rows)


def evaluate(top: np.ndarray, relevant: np.ndarray, personal: np.ndarray,
             listener_rows: np.ndarray) -> Dict[str, float]:
  m = evaluation.retrieval_metrics(top, relevant, ks=(10, 50), ndcg_k=10)
  m["personal@10"] = float(np.mean(personal[listener_rows[:, None], top[:, :10]]))
  return m


def latency(module, vectors: np.ndarray, texts: List[str], repeats: int) -> Dict[str, object]:
  """Request encoding and top-100 retrieval p50/p99 vs exact numpy on the same vectors."""
  enc_tf, enc_np, ret_tf, ret_np = [], [], [], []
  queries = module.encode(tf.constant(texts[:repeats])).numpy()
  k = min(100, vectors.shape[0])
  kt = tf.constant(k)
  for i in range(repeats):   # warm up both paths
    module.retrieve(tf.constant(queries[i:i + 1]), kt)
    evaluation.exact_top_k(queries[i:i + 1], vectors, k)
  for i in range(repeats):
    t = tf.constant([texts[i % len(texts)]])
    t0 = time.perf_counter()
    module.encode(t).numpy()
    enc_tf.append(time.perf_counter() - t0)
    q = queries[i:i + 1]
    t0 = time.perf_counter()
    rows, _ = module.retrieve(tf.constant(q), kt)
    rows.numpy()
    ret_tf.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    evaluation.exact_top_k(q, vectors, k)
    ret_np.append(time.perf_counter() - t0)
  for i in range(min(repeats, 50)):
    t = tf.constant([texts[i % len(texts)]])
    t0 = time.perf_counter()
    module.candidates(t, kt)[0].numpy()
    enc_np.append(time.perf_counter() - t0)
  out = {"encode": common.percentiles_ms(enc_tf),
         "retrieve_bruteforce": common.percentiles_ms(ret_tf),
         "retrieve_numpy_exact": common.percentiles_ms(ret_np),
         "candidates_end_to_end": common.percentiles_ms(enc_np)}
  out["retrieve_p99_ratio_bruteforce_over_numpy"] = (
      out["retrieve_bruteforce"]["p99_ms"] / out["retrieve_numpy_exact"]["p99_ms"])
  out["encode_p99_over_retrieve_numpy_p99"] = (
      out["encode"]["p99_ms"] / out["retrieve_numpy_exact"]["p99_ms"])
  return out


def main(argv=None) -> Dict[str, object]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", default=os.environ.get(
      "MELODY_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")))
  p.add_argument("--n_jamendo", type=int, default=3000)
  p.add_argument("--n_hetrec", type=int, default=500)
  p.add_argument("--train_requests", type=int, default=6000)
  p.add_argument("--eval_requests", type=int, default=600)
  p.add_argument("--listeners", type=int, default=32)
  p.add_argument("--ranker_steps", type=int, default=60)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--po_steps", type=int, default=60)
  p.add_argument("--latency_repeats", type=int, default=200)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_write", action="store_true")
  args = p.parse_args([] if argv is None else argv)
  t_start = time.time()

  catalog, source = load_catalog(os.path.abspath(args.data), args.n_jamendo, args.n_hetrec,
                                 args.seed)
  print(f"[intent] catalog: {len(catalog)} tracks ({source})", flush=True)
  lvecs, interest = ranking_listeners(catalog, args.listeners, args.ranker_steps, args.seed)
  personal = pref.standardize_interest(interest)
  config = intent_trainer.IntentTrainConfig(intent=dual_encoder.IntentConfig(
      steps=args.steps, batch_size=args.batch_size, seed=args.seed),
                                            preference=pref.PreferenceConfig(steps=args.po_steps,
                                                                             seed=args.seed),
                                            num_train_requests=args.train_requests,
                                            seed=args.seed)
  t0 = time.time()
  run = intent_trainer.IntentRun(catalog, config, lvecs, interest, log_every=50)
  prep_s = time.time() - t0
  print(f"[intent] pretrained track-text cache + {len(run.train)} triplets in {prep_s:.0f}s",
        flush=True)

  test = run.synthesizer.triplets(args.eval_requests, heldout=True, interest=interest)
  relevant = intents.relevance(test.requests, run.synthesizer.index)
  k_eval = 50
  rows: List[Dict[str, object]] = []

  def add(system, top):
    m = evaluate(top, relevant, personal, test.listener)
    rows.append(dict(system=system, **m))
    print(f"[intent] {system}: " + " ".join(f"{k} {m[k]:.4f}" for k in METRIC_KEYS),
          flush=True)

  add("BM25 (bm25s)", bm25_top(run.texts, test.texts, k_eval))
  vectors = run.track_vectors()
  add("zero-shot MiniLM", evaluation.exact_top_k(run.query_vectors(test.texts), vectors,
                                                 k_eval))
  t0 = time.time()
  run.fine_tune()
  ft_s = time.time() - t0
  vectors = run.track_vectors()
  add("fine-tuned (contrastive)", evaluation.exact_top_k(
      run.query_vectors(test.texts, test.listener), vectors, k_eval))
  t0 = time.time()
  run.optimize_preferences()
  po_s = time.time() - t0
  vectors = run.track_vectors()
  add("fine-tuned + preference opt.", evaluation.exact_top_k(
      run.query_vectors(test.texts, test.listener), vectors, k_eval))

  module = run.module()
  lat = latency(module, vectors, test.texts, args.latency_repeats)
  bm25_r10 = rows[0]["recall@10"]
  ratio = rows[2]["recall@10"] / bm25_r10 if bm25_r10 > 0 else float("inf")
  print(common.table(rows, ("system",) + METRIC_KEYS))
  print(f"fine-tuned Recall@10 / BM25 Recall@10 = {ratio:.2f} (target >= 1.3)")
  print(f"encode p50/p99 {lat['encode']['p50_ms']:.2f}/{lat['encode']['p99_ms']:.2f} ms; "
        f"top-100 BruteForce p99 {lat['retrieve_bruteforce']['p99_ms']:.3f} ms vs numpy exact "
        f"p99 {lat['retrieve_numpy_exact']['p99_ms']:.3f} ms "
        f"(ratio {lat['retrieve_p99_ratio_bruteforce_over_numpy']:.2f})")
  hist = run.history.get("preference", {})
  payload = {
      "catalog": {"source": source, "tracks": len(catalog),
                  "heldout_tracks": int(len(run.synthesizer.heldout_tracks))},
      "requests": {"train": len(run.train), "eval": len(test),
                   "eval_templates": "held-out phrasings only"},
      "settings": {**vars(args), "intent_config": config.to_dict()},
      "systems": rows,
      "finetuned_over_bm25_recall@10": ratio,
      "target_met": bool(ratio >= 1.3),
      "latency": lat,
      "train_seconds": {"prepare": prep_s, "contrastive": ft_s, "preference": po_s},
      "contrastive_loss_first_last": [float(np.mean(run.history["contrastive_loss"][:20])),
                                      float(np.mean(run.history["contrastive_loss"][-20:]))],
      "preference_reward_first_last": ([float(np.mean(hist["reward"][:10])),
                                        float(np.mean(hist["reward"][-10:]))]
                                       if hist.get("reward") else None),
      "total_seconds": time.time() - t_start,
  }
  if not args.no_write:
    common.write_results("intent", payload)
  return payload


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
