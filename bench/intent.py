"""Text-intent benchmark: what the intent model retrieves for real and synthesized requests.

Training uses MTG-Jamendo train/validation tracks only; every evaluation is against the
11,565 split-0 **test** tracks, which no model trains on (their vectors come from the
catalog refresh: pretrained text embeddings through the trained track head). Sets
(``bench.intent_eval``): the HetRec phrase development set (``tune`` half chooses the
lexical weight, ``dev`` half is only reported), synthesized held-out-phrasing requests,
and the same requests behind an intent-free preamble (long requests). Metrics: P@10,
capped Recall@10, NDCG@10, per query type.

Systems, all in the same run: BM25 (bm25s) with titles in the text and without, the
in-graph BM25F alone, zero-shot MiniLM (old and new track text), the previous recipe
retrained on train/validation tracks (8 tags + title in the track text, short colloquial
requests only, 32 word pieces, dense only), the new recipe's parts one by one (the
ablation) and the final hybrid. Then the request-length curve (P@10 and encoding
p50/p99 per width) and text -> top-100 over a 50k-track catalog after warm-up
(``bench.intent_latency``). Writes ``bench/results/intent.json`` and ``docs/intent.png``.
"""

import argparse
import json
import os
import time
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from bench import common
from bench import intent_eval
from bench import intent_latency
from features import feature_spec
from pipeline import intent_trainer
from ranking import config as ranking_config
from ranking import model as ranking_model
from melody_testing import synthetic_batches
from ranking.intent import catalog as catalog_lib
from ranking.intent import catalog_refresh
from ranking.intent import dual_encoder
from ranking.intent import evaluation
from ranking.intent import lexical as lexical_lib
from ranking.intent import preference as pref
from ranking.intent import retrieval
from ranking.intent import synthesis
from ranking.intent import tokenizer as tok_lib

X = feature_spec.xf
COLUMNS = ("system", "set", "p@10", "recall@10", "ndcg@10") + tuple(
    f"p@10 {t}" for t in intent_eval.QUERY_TYPES)
LEXICAL_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
LENGTHS = (16, 32, 64, 128, 256)


def load_catalogs(data_dir: str, n_train: int, n_eval: int, seed: int):
  """(training catalog of train/validation tracks, test-split evaluation catalog, source).

  Without the shared data, the simulator's catalog (real Jamendo tag words) is split in
  two halves instead, and there is no phrase set.
  """
  if data_dir and os.path.isdir(data_dir):
    from features.datasets import jamendo_splits  # pylint: disable=g-import-not-at-top
    from features.datasets import registry  # pylint: disable=g-import-not-at-top
    _, jam, _ = registry.load("jamendo", data_dir)
    jam = jamendo_splits.with_splits(jam, data_dir)
    train = catalog_lib.mixed_catalog(jam, None, n_train, seed=seed)
    test = catalog_lib.mixed_catalog(jam, None, n_eval, seed=seed, splits=("test",))
    return train, test, "MTG-Jamendo split-0"
  from simulation import world as world_lib  # pylint: disable=g-import-not-at-top
  from simulation import world_config  # pylint: disable=g-import-not-at-top
  w = world_lib.World(world_config.WorldConfig(n_tracks=n_train + n_eval), seed=seed)
  tracks = w.tracks.reset_index(drop=True)
  return (tracks.iloc[:n_train].reset_index(drop=True),
          tracks.iloc[n_train:].reset_index(drop=True), "simulator (Jamendo tags)")


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




def old_track_text(tags, title) -> str:
  """The previous track text: at most 8 tags, then the title (the "before" system)."""
  words = []
  for t in list(tags if tags is not None else [])[:8]:
    w = catalog_lib.tag_words(t)
    if w and w not in words:
      words.append(w)
  text, title = ", ".join(words), (title or "").strip()
  return f"{text}. {title}" if text and title else (text or title)


def top_rows(scores: np.ndarray, k: int = 10) -> np.ndarray:
  """``[R, k]`` best rows of ``[R, N]`` scores, ties to the lower row."""
  return np.argsort(-scores, axis=1, kind="stable")[:, :k]


class Evaluator:
  """Scores systems on the evaluation sets over one evaluation catalog."""

  def __init__(self, catalog: pd.DataFrame, sets: List[intent_eval.EvalSet], checkpoint,
               track_max_length: int):
    self.catalog, self.sets, self.checkpoint = catalog, sets, checkpoint
    self.texts = catalog_lib.catalog_texts(catalog)
    self.titles = catalog_lib.catalog_titles(catalog)
    self.old_texts = [old_track_text(t, u) for t, u in zip(catalog["tags"], self.titles)]
    t0 = time.time()
    self.emb = catalog_refresh.pretrained_text_embeddings(checkpoint, self.texts,
                                                          track_max_length)
    self.old_emb = catalog_refresh.pretrained_text_embeddings(checkpoint, self.old_texts,
                                                              track_max_length)
    common.log("intent", f"pretrained embeddings of {len(catalog)} test tracks (two text "
               f"renderings) in {time.time() - t0:.0f}s")
    self.lexical = lexical_lib.LexicalIndex(self.texts, self.titles)
    self.rows: List[Dict[str, object]] = []

  def add(self, system: str, rank) -> List[Dict[str, object]]:
    rows = intent_eval.evaluate(system, rank, self.sets)
    for r in rows:
      common.log("intent", f"{system} / {r['set']}: P@10 {r['p@10']:.3f}")
    self.rows += rows
    return rows

  def vectors(self, run, old_text: bool = False) -> np.ndarray:
    """The evaluation catalog through ``run``'s track head (no test track was trained)."""
    emb = self.old_emb if old_text else self.emb
    return retrieval.catalog_track_vectors(run.model, emb, np.full(len(emb), -1))

  def module(self, run, length: int, weight: float = 0.0, old_text: bool = False):
    tok = tok_lib.WordPieceTokenizer(self.checkpoint.vocab, length)
    return retrieval.IntentCandidates(run.model, tok, self.vectors(run, old_text),
                                      self.lexical if weight > 0 else None, weight)


def bm25s_rank(texts: List[str]):
  return lambda queries: bm25_top(texts, queries, 10)


def train_run(train_cat, args, listeners, interest, *, length, descriptive, old_text, steps,
              fine_tune=True):
  config = intent_trainer.IntentTrainConfig(
      intent=dual_encoder.IntentConfig(steps=steps, batch_size=args.batch_size,
                                       max_length=length, seed=args.seed),
      preference=pref.PreferenceConfig(steps=0, seed=args.seed),
      synth=synthesis.SynthConfig(descriptive=descriptive),
      num_train_requests=args.train_requests, seed=args.seed)
  texts = ([old_track_text(t, u) for t, u in zip(train_cat["tags"],
                                                 catalog_lib.catalog_titles(train_cat))]
           if old_text else None)
  t0 = time.time()
  run = intent_trainer.IntentRun(train_cat, config, listeners, interest, log_every=100,
                                 texts=texts)
  prep = time.time() - t0
  t0 = time.time()
  if steps and fine_tune:
    run.fine_tune()
  return run, {"prepare_s": prep, "train_s": time.time() - t0}


def main(argv=None) -> Dict[str, object]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", default=os.environ.get(
      "MELODY_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")))
  p.add_argument("--n_train", type=int, default=6000)
  p.add_argument("--n_eval", type=int, default=20000)
  p.add_argument("--train_requests", type=int, default=8000)
  p.add_argument("--eval_requests", type=int, default=400)
  p.add_argument("--listeners", type=int, default=16)
  p.add_argument("--ranker_steps", type=int, default=30)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--latency_tracks", type=int, default=50_000)
  p.add_argument("--latency_repeats", type=int, default=200)
  p.add_argument("--no_ablation", action="store_true")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_write", action="store_true")
  p.add_argument("--latency_only", action="store_true",
                 help="re-measure only the latencies of bench/results/intent.json")
  args = p.parse_args([] if argv is None else argv)
  if args.latency_only:
    return latency_only(args)
  t_start = time.time()
  data = os.path.abspath(args.data)
  train_cat, eval_cat, source = load_catalogs(data, args.n_train, args.n_eval, args.seed)
  common.log("intent", f"training catalog {len(train_cat)} tracks, evaluation catalog "
             f"{len(eval_cat)} tracks ({source})")
  if "split" in train_cat:
    intent_trainer.check_training_splits(train_cat)
  lvecs, interest = ranking_listeners(train_cat, args.listeners, args.ranker_steps, args.seed)

  synth = intent_eval.synthesized_set(eval_cat, args.eval_requests, args.seed)
  sets = [synth, intent_eval.long_set(synth)]
  phrase = {}
  if source.startswith("MTG"):
    phrase = intent_eval.phrase_sets(data, eval_cat)
    sets = [phrase["dev"], phrase["tune"]] + sets
  main_set = sets[0].name
  checkpoint = intent_trainer.ckpt_lib.load(None)
  ev = Evaluator(eval_cat, sets, checkpoint, dual_encoder.IntentConfig().track_max_length)

  # Lexical baselines.
  ev.add("BM25 (bm25s), tags + title in one text", bm25s_rank(ev.old_texts))
  ev.add("BM25 (bm25s), all tags, no title", bm25s_rank(ev.texts))
  ev.add("BM25F in-graph (tags, title 0.3)",
         lambda q: top_rows(ev.lexical.scores(tf.constant(q)).numpy()))

  # Before: the previous recipe, retrained on train/validation tracks.
  timings = {}
  before, timings["before"] = train_run(train_cat, args, lvecs, interest, length=32,
                                        descriptive=False, old_text=True, steps=args.steps,
                                        fine_tune=False)
  ev.add("zero-shot MiniLM, old track text, 32 pieces",
         intent_latency.rank_fn(ev.module(before, 32, old_text=True)))
  ev.add("zero-shot MiniLM, new track text, 64 pieces",
         intent_latency.rank_fn(ev.module(before, 64)))
  ablation = []
  if not args.no_ablation:
    t0 = time.time()
    before.fine_tune()
    timings["before"]["train_s"] = time.time() - t0
    ablation.append(("before: 8 tags + title, colloquial requests, 32 pieces, dense",
                     ev.add("before (previous recipe, train/val tracks)",
                            intent_latency.rank_fn(ev.module(before, 32, old_text=True)))))
    mid, timings["all tags, old synthesis"] = train_run(
        train_cat, args, lvecs, interest, length=64, descriptive=False, old_text=False,
        steps=args.steps)
    ablation.append(("+ all tags, title out of the text, 64 pieces",
                     ev.add("fine-tuned, all tags, colloquial requests, 64",
                            intent_latency.rank_fn(ev.module(mid, 64)))))
    del mid
  run, timings["final"] = train_run(train_cat, args, lvecs, interest, length=64,
                                    descriptive=True, old_text=False, steps=args.steps)
  ablation.append(("+ mood tags named, descriptive synthesis",
                   ev.add("fine-tuned, dense only, 64", intent_latency.rank_fn(
                       ev.module(run, 64)))))
  ev.add("fine-tuned, dense only, 32", intent_latency.rank_fn(ev.module(run, 32)))

  # The lexical weight: the best mean P@10 over the tune half of the phrases and a
  # second draw of synthesized requests (neither is a reported set).
  tunes = [s for s in (phrase.get("tune"), intent_eval.synthesized_set(
      eval_cat, args.eval_requests, args.seed + 100)) if s is not None]
  sweep = []
  for w in LEXICAL_WEIGHTS:
    rank = intent_latency.rank_fn(ev.module(run, 64, w))
    row = {"lexical_weight": w}
    for s in tunes:
      row[f"p@10 {s.name} (tune)"] = float(
          intent_eval.precision_at(rank(s.texts), s.relevant).mean())
    row["mean"] = float(np.mean([v for k, v in row.items() if k.startswith("p@10")]))
    sweep.append(row)
  best_w = max(sweep, key=lambda r: (round(r["mean"], 6), -r["lexical_weight"]))
  weight = best_w["lexical_weight"]
  common.log("intent", f"lexical weight {weight} (tune mean P@10 {best_w['mean']:.3f})")
  ablation.append((f"+ hybrid BM25F (weight {weight})",
                   ev.add(f"hybrid: fine-tuned + BM25F x{weight}, 64",
                          intent_latency.rank_fn(ev.module(run, 64, weight)))))

  curve = intent_latency.length_curve(run, ev.vectors(run), ev.lexical, weight,
                                      [s for s in sets if s.name != "hetrec tune"], LENGTHS,
                                      repeats=50)
  chosen = intent_latency.choose_length(curve, f"p@10 {sets[-1].name}")
  common.log("intent", f"chosen request length {chosen}")
  lat = intent_latency.catalog_latency(
      run, tok_lib.WordPieceTokenizer(checkpoint.vocab, chosen), ev.vectors(run), ev.texts,
      ev.titles, weight, synth.texts, args.latency_tracks, args.latency_repeats, args.seed)

  abl_rows = [{"change": name, **{r["set"]: r["p@10"] for r in rows}}
              for name, rows in ablation]
  print(common.table(ev.rows, COLUMNS))
  print(common.table(abl_rows, ["change"] + [s.name for s in sets]))
  payload = {
      "catalog": {"source": source, "train_tracks": len(train_cat),
                  "eval_tracks": len(eval_cat),
                  "train_splits": sorted(set(train_cat.get("split", pd.Series(["-"]))))},
      "sets": {s.name: {"requests": len(s.texts),
                        "types": {t: s.types.count(t) for t in intent_eval.QUERY_TYPES}}
               for s in sets},
      "settings": vars(args), "systems": ev.rows, "ablation": abl_rows,
      "lexical_weight_sweep": sweep, "lexical_weight": weight,
      "length_curve": curve, "chosen_max_length": chosen, "latency": lat,
      "load_average": list(os.getloadavg()), "timings_s": timings,
      "total_seconds": time.time() - t_start, "main_set": main_set,
  }
  if not args.no_write:
    common.write_results("intent", payload)
    plot(payload, os.path.join(os.path.dirname(__file__), "..", "docs", "intent.png"))
  return payload


def latency_only(args) -> Dict[str, object]:
  """Re-measures the length curve's encoding times and the 50k-track latency in place.

  Latency does not depend on the weights, so the zero-shot model stands in for the
  trained one (same graph, same shapes) and random unit vectors for the track vectors;
  the texts are the test tracks' own (the BM25F index sizes depend on them). The P@10
  columns of the stored run are kept.
  """
  path = os.path.join(common.RESULTS_DIR, "intent.json")
  with open(path, encoding="utf-8") as f:
    payload = json.load(f)
  data = os.path.abspath(args.data)
  _, eval_cat, _ = load_catalogs(data, args.n_train, args.n_eval, args.seed)
  run, _ = train_run(eval_cat.iloc[:args.batch_size * 2].assign(split="validation"), args,
                     None, None, length=64, descriptive=True, old_text=False, steps=0)
  rng = np.random.default_rng(args.seed)
  vectors = rng.normal(size=(len(eval_cat), run.model.hidden_size)).astype(np.float32)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  texts, titles = catalog_lib.catalog_texts(eval_cat), catalog_lib.catalog_titles(eval_cat)
  synth = intent_eval.synthesized_set(eval_cat, args.eval_requests, args.seed)
  long_texts = intent_eval.long_set(synth).texts
  weight = payload["lexical_weight"]
  lex = lexical_lib.LexicalIndex(texts, titles, run.config.title_weight)
  for row in payload["length_curve"]:
    module = retrieval.IntentCandidates(
        run.model, tok_lib.WordPieceTokenizer(checkpoint_vocab(run), row["max_length"]),
        vectors, lex, weight)
    lat = intent_latency.timed_calls(lambda i: module.encode(  # noqa: B023
        tf.constant([long_texts[i % len(long_texts)]])).numpy(), 50)
    row["encode p50 ms"], row["encode p99 ms"] = lat["p50_ms"], lat["p99_ms"]
    common.log("intent", f"length {row['max_length']}: encode p50 {lat['p50_ms']:.1f} ms, "
               f"p99 {lat['p99_ms']:.1f} ms")
  chosen = payload["chosen_max_length"]
  payload["latency"] = intent_latency.catalog_latency(
      run, tok_lib.WordPieceTokenizer(checkpoint_vocab(run), chosen), vectors, texts, titles,
      weight, synth.texts, args.latency_tracks, args.latency_repeats, args.seed)
  payload["latency_run"] = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "load_average": list(os.getloadavg()),
                            "weights": "zero-shot MiniLM and random track vectors"}
  if not args.no_write:
    common.write_results("intent", payload)
    plot(payload, os.path.join(os.path.dirname(__file__), "..", "docs", "intent.png"))
  return payload


def checkpoint_vocab(run) -> List[str]:
  return run.checkpoint.vocab


def plot(payload: Dict[str, object], path: str) -> None:
  """P@10 per system on the dev set, and P@10 / encoding p99 per request length."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  main_set = payload["main_set"]
  rows = [r for r in payload["systems"] if r["set"] == main_set]
  fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
  a.barh([r["system"] for r in rows], [r["p@10"] for r in rows], color="tab:blue")
  a.invert_yaxis()
  a.set_xlabel(f"P@10 ({main_set})")
  a.tick_params(axis="y", labelsize=7)
  curve = payload["length_curve"]
  lengths = [r["max_length"] for r in curve]
  for key in [k for k in curve[0] if k.startswith("p@10 ")]:
    b.plot(lengths, [r[key] for r in curve], marker="o", label=key[5:])
  b.set_xscale("log", base=2)
  b.set_xlabel("request width (word pieces)")
  b.set_ylabel("P@10")
  b2 = b.twinx()
  b2.plot(lengths, [r["encode p99 ms"] for r in curve], "k--", marker="x", label="encode p99")
  b2.set_ylabel("encode p99 (ms)")
  b.legend(loc="lower right", fontsize=7)
  b2.legend(loc="upper left", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
