"""Evaluation sets and metrics of the text-intent benchmark.

Owns what the intent systems are scored on, all against MTG-Jamendo **test-split** tracks
(the model trains on train/validation tracks only):

* the real-language development set: HetRec users' phrases mapped to Jamendo tags
  (``features.datasets.hetrec_phrases``), its ``tune`` half (used to choose the lexical
  weight) and its ``dev`` half (only reported);
* synthesized requests from held-out phrasing templates over the test-split catalog;
* long requests: the synthesized ones behind an intent-free preamble, for the request
  length curve.

A request's relevant tracks are those whose tags satisfy its intent clauses. Metrics:
P@10 (the fraction of the top 10 that is relevant), capped Recall@10 and NDCG@10, overall
and per query type (mood-only, genre, instrument, multi-tag).
"""

import dataclasses
from typing import Callable, Dict, List, Sequence

import numpy as np
import pandas as pd

from features.datasets import hetrec_phrases
from ranking.intent import catalog as catalog_lib
from ranking.intent import evaluation
from ranking.intent import intents
from ranking.intent import synthesis

QUERY_TYPES = ("mood-only", "genre", "instrument", "multi-tag")
# An intent-free opening, as people write before they get to what they want.
PREAMBLE = ("i have been listening to the same playlist all week and i would like a change "
            "tonight, friends are coming over later and i am cooking first, so here is what "
            "i am after: ")


@dataclasses.dataclass
class EvalSet:
  """Requests, their relevance over the evaluation catalog and their query types."""
  name: str
  texts: List[str]
  relevant: np.ndarray          # [R, N] bool
  types: List[str]

  def subset(self, mask: np.ndarray, name: str) -> "EvalSet":
    idx = np.flatnonzero(mask)
    return EvalSet(name, [self.texts[i] for i in idx], self.relevant[idx],
                   [self.types[i] for i in idx])


def tag_categories(tracks: pd.DataFrame) -> Dict[str, str]:
  """Canonical tag key -> ``genre``/``instrument``/``mood`` from Jamendo's prefixes."""
  out: Dict[str, str] = {}
  for tags in tracks["tags"]:
    for t in (tags if tags is not None else []):
      out.setdefault(catalog_lib.tag_key(t), catalog_lib.tag_category(t))
  return out


def query_type(clauses: Sequence[Sequence[str]], categories: Dict[str, str]) -> str:
  """``multi-tag`` for several clauses, else the category most of the clause's tags have."""
  if len(clauses) > 1:
    return "multi-tag"
  cats = [categories.get(t, "genre") for t in clauses[0]]
  top = max(set(cats), key=lambda c: (cats.count(c), c))
  return {"mood": "mood-only", "instrument": "instrument"}.get(top, "genre")


def phrase_sets(data_dir: str, catalog: pd.DataFrame) -> Dict[str, EvalSet]:
  """The HetRec phrase set's ``tune`` and ``dev`` halves over ``catalog``."""
  phrases = hetrec_phrases.load(data_dir)
  index = intents.TagIndex(catalog_lib.catalog_tag_keys(catalog))
  cats = tag_categories(catalog)
  reqs = [intents.Request(p, tuple(frozenset(c) for c in cl), frozenset(), 0, True)
          for p, cl in zip(phrases["phrase"], phrases["clauses"])]
  rel = intents.relevance(reqs, index)
  keep = rel.sum(1) > 0      # a phrase no test track answers cannot be scored
  full = EvalSet("hetrec phrases", list(phrases["phrase"]), rel,
                 [query_type(cl, cats) for cl in phrases["clauses"]])
  split = phrases["split"].to_numpy()
  return {s: full.subset(keep & (split == s), f"hetrec {s}") for s in hetrec_phrases.SPLITS}


def synthesized_set(catalog: pd.DataFrame, n: int, seed: int) -> EvalSet:
  """``n`` requests from held-out phrasings over the whole evaluation catalog."""
  syn = synthesis.RequestSynthesizer(catalog, synthesis.SynthConfig(heldout_track_fraction=0.5),
                                     seed=seed + 7)
  reqs = syn.requests(n, heldout=True)
  cats = tag_categories(catalog)
  return EvalSet("synthesized", [r.text for r in reqs], intents.relevance(reqs, syn.index),
                 [query_type([sorted(c) for c in r.clauses], cats) for r in reqs])


def long_set(base: EvalSet) -> EvalSet:
  """``base`` behind :data:`PREAMBLE` (the intent comes last, as in long descriptions)."""
  return EvalSet(base.name + " (long)", [PREAMBLE + t for t in base.texts], base.relevant,
                 base.types)


def precision_at(top: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
  """``[R]`` fraction of the first ``k`` rows that are relevant."""
  hits = np.take_along_axis(relevant, top[:, :k], axis=1)
  return hits.mean(axis=1)


def metrics(top: np.ndarray, s: EvalSet) -> Dict[str, object]:
  """P@10, capped Recall@10, NDCG@10 overall and P@10 per query type."""
  m = evaluation.retrieval_metrics(top, s.relevant, ks=(10,), ndcg_k=10)
  p10 = precision_at(top, s.relevant)
  out = {"p@10": float(p10.mean()), "recall@10": m["recall@10"], "ndcg@10": m["ndcg@10"],
         "n": len(s.texts)}
  types = np.asarray(s.types)
  for t in QUERY_TYPES:
    sel = types == t
    out[f"p@10 {t}"] = float(p10[sel].mean()) if sel.any() else None
    out[f"n {t}"] = int(sel.sum())
  return out


def evaluate(system: str, rank: Callable[[List[str]], np.ndarray],
             sets: Sequence[EvalSet]) -> List[Dict[str, object]]:
  """One row per set: ``rank(texts) -> [R, >=10] rows`` scored on the set."""
  return [dict(system=system, set=s.name, **metrics(rank(s.texts), s)) for s in sets]
