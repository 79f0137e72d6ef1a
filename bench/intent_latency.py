"""Latency side of the text-intent benchmark: the request-length curve and catalog scale.

Owns two measurements, both in process on this CPU, batch 1, after warm-up (every timed
function is called first, so tracing never lands in a percentile):

* the length curve: for each request width ``T`` (word pieces), the p50/p99 of encoding a
  long request and the P@10 the serving module reaches at that width on the evaluation
  sets; the benchmark picks the shortest width within 0.005 P@10 of the best;
* text -> top-100 over a large catalog (50k tracks: the test-split vectors and texts
  repeated with a little noise), hybrid (dense + BM25F) and dense only, end to end
  through ``candidates``.
"""

import time
from typing import Callable, Dict, List, Sequence

import numpy as np

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from bench import common
from bench import intent_eval
from ranking.intent import lexical as lexical_lib
from ranking.intent import retrieval
from ranking.intent import tokenizer as tok_lib


def rank_fn(module: retrieval.IntentCandidates, k: int = 10,
            batch: int = 64) -> Callable[[List[str]], np.ndarray]:
  """``texts -> [R, k]`` catalog rows through the module's in-graph ``candidates``."""
  def rank(texts: List[str]) -> np.ndarray:
    out = [module.candidates(tf.constant(texts[s:s + batch]), tf.constant(k))[0].numpy()
           for s in range(0, len(texts), batch)]
    return np.concatenate(out)
  return rank


def timed_calls(fn: Callable[[int], object], repeats: int, warmup: int = 10) -> Dict[str, float]:
  """p50/p99 of ``fn(i)`` over ``repeats`` calls after ``warmup`` untimed ones."""
  for i in range(warmup):
    fn(i)
  samples = []
  for i in range(repeats):
    t0 = time.perf_counter()
    fn(i)
    samples.append(time.perf_counter() - t0)
  return common.percentiles_ms(samples)


def length_curve(run, vectors: np.ndarray, lexical: lexical_lib.LexicalIndex, weight: float,
                 sets: Sequence[intent_eval.EvalSet], lengths: Sequence[int],
                 repeats: int) -> List[Dict[str, object]]:
  """P@10 per set and encoding p50/p99 of long requests at each request width."""
  rows = []
  long_texts = [t for s in sets if "(long)" in s.name for t in s.texts] or sets[0].texts
  for length in lengths:
    tok = tok_lib.WordPieceTokenizer(run.checkpoint.vocab, length)
    module = retrieval.IntentCandidates(run.model, tok, vectors, lexical, weight)
    row: Dict[str, object] = {"max_length": length}
    for s in sets:
      top = rank_fn(module)(s.texts)
      row[f"p@10 {s.name}"] = float(intent_eval.precision_at(top, s.relevant).mean())
    cut = module.text_cut(tf.constant(long_texts)).numpy()
    row["long requests cut"] = float(cut.mean())
    lat = timed_calls(lambda i: module.encode(  # noqa: B023
        tf.constant([long_texts[i % len(long_texts)]])).numpy(), repeats)
    row["encode p50 ms"], row["encode p99 ms"] = lat["p50_ms"], lat["p99_ms"]
    rows.append(row)
    common.log("intent", f"length {length}: " + ", ".join(
        f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
  return rows


def choose_length(curve: List[Dict[str, object]], key: str, tolerance: float = 0.005) -> int:
  """The shortest width whose ``key`` P@10 is within ``tolerance`` of the best width's."""
  best = max(r[key] for r in curve)
  return int(min(r["max_length"] for r in curve if r[key] >= best - tolerance))


def scaled_catalog(vectors: np.ndarray, texts: Sequence[str], titles: Sequence[str],
                   size: int, seed: int):
  """``size`` rows: the catalog repeated, each copy's vectors jittered and re-normalised."""
  rng = np.random.default_rng(seed)
  idx = np.arange(size) % len(vectors)
  v = vectors[idx] + rng.normal(0, 0.02, (size, vectors.shape[1])).astype(np.float32)
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  return v, [texts[i] for i in idx], [titles[i] for i in idx]


def catalog_latency(run, tokenizer: tok_lib.WordPieceTokenizer, vectors: np.ndarray,
                    texts: Sequence[str], titles: Sequence[str], weight: float,
                    requests: Sequence[str], size: int, repeats: int,
                    seed: int) -> Dict[str, object]:
  """text -> top-100 p50/p99 over ``size`` tracks: hybrid and dense-only ``candidates``."""
  v, t, u = scaled_catalog(vectors, texts, titles, size, seed)
  lex = lexical_lib.LexicalIndex(t, u, run.config.title_weight)
  out: Dict[str, object] = {"catalog_tracks": size, "k": 100,
                            "max_length": tokenizer.max_length}
  k = tf.constant(100)
  for name, module in (("hybrid", retrieval.IntentCandidates(run.model, tokenizer, v, lex,
                                                             weight)),
                       ("dense", retrieval.IntentCandidates(run.model, tokenizer, v))):
    out[name] = timed_calls(lambda i: module.candidates(  # noqa: B023
        tf.constant([requests[i % len(requests)]]), k)[0].numpy(), repeats, warmup=20)
    common.log("intent", f"{size} tracks, {name} top-100: p50 {out[name]['p50_ms']:.1f} ms, "
               f"p99 {out[name]['p99_ms']:.1f} ms")
  return out
