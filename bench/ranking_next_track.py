"""The ranking benchmark's 30Music next-track comparison (a step of the ``real`` part).

Protocol. The plays of the 30Music slices (``features.datasets.thirty_music``) are split
chronologically: plays before the ``1 - eval_fraction`` quantile of play times train,
later plays are the next tracks to predict. A later play is an evaluation case when its
listener has an earlier play (the history: the listener's last ``max_len`` plays before
it, training or evaluation plays alike, as a live system would have them) and its track
was played in training (no scorer can know a track it never saw); at most
``max_cases`` cases are drawn (seeded). Each case ranks the played track among
``CANDIDATES - 1`` tracks drawn uniformly from the training tracks (seeded, the same
draw for every scorer): "sampled" Recall@10 and NDCG@10 (``pipeline.next_play_metrics``,
ties at their expected value), comparable between scorers on the same draw only.

Scorers: popularity (training play counts), item-kNN (cosine of session co-occurrence
counts in training, plays at most ``KNN_WINDOW`` apart in a session; a candidate scores
the decayed sum of its similarity to the listener's last ``KNN_LAST`` plays, popularity
breaks ties), and the trained models of ``ranking_next_track_models`` (Melody's causal
encoder and a SASRec-style baseline), trained on the training plays cut into windows of
``max_len + 1`` per listener, the same steps, batch and negatives, one run per seed.
"""

from typing import Dict, List

import numpy as np

from bench import common
from bench import ranking_next_track_models
from pipeline import next_play_metrics

KNN_WINDOW = 5
KNN_LAST = 3
KNN_DECAY = 0.5
POPULARITY = "popularity"
ITEM_KNN = "item-kNN"


def load_plays(data_dir: str) -> Dict[str, np.ndarray]:
  """The 30Music plays as integer arrays, by listener and time."""
  from features.datasets import thirty_music  # pylint: disable=g-import-not-at-top
  events = thirty_music.load(data_dir).events
  events = events.sort_values(["user_id", "ts"], kind="stable")
  codes = {}
  for col in ("user_id", "session_id", "track_id", "artist_id"):
    codes[col] = events[col].astype("category").cat.codes.to_numpy(np.int64)
  return {"user": codes["user_id"], "session": codes["session_id"],
          "track": codes["track_id"] + 1, "artist": codes["artist_id"] + 1,
          "ts": events["ts"].to_numpy(np.int64)}


def _windows(tracks: List[np.ndarray], artists: List[np.ndarray], size: int):
  """Every listener's plays cut into left-padded windows of ``size``."""
  out_t, out_a = [], []
  for t, a in zip(tracks, artists):
    for hi in range(len(t), 1, -(size - 1)):   # windows overlap by one play: every
      lo = max(0, hi - size)                     # play but the first is a target
      row_t, row_a = np.zeros(size, np.int64), np.zeros(size, np.int64)
      row_t[size - (hi - lo):], row_a[size - (hi - lo):] = t[lo:hi], a[lo:hi]
      out_t.append(row_t)
      out_a.append(row_a)
  return {"tracks": np.stack(out_t), "artists": np.stack(out_a)}


def split(plays: Dict[str, np.ndarray], max_len: int, eval_fraction: float = 0.2,
          max_cases: int = 5000, candidates: int = next_play_metrics.CANDIDATES,
          seed: int = 0) -> Dict[str, object]:
  """The chronological split, the training windows and the evaluation cases.

  Returns:
    ``train`` windows (``ranking_next_track_models.train_and_score``), ``cases``
    (histories and candidates, the played track in column 0), ``counts`` (training
    plays per track id), ``train_sessions`` (per-session track arrays), ``vocab``,
    ``artist_vocab`` and the split's sizes.
  """
  cutoff = np.quantile(plays["ts"], 1.0 - eval_fraction)
  is_train = plays["ts"] < cutoff
  vocab = int(plays["track"].max()) + 1
  counts = np.bincount(plays["track"][is_train], minlength=vocab)
  starts = np.flatnonzero(np.r_[True, plays["user"][1:] != plays["user"][:-1]])
  bounds = list(zip(starts, np.r_[starts[1:], len(plays["user"])]))
  train_t = [plays["track"][lo:hi][is_train[lo:hi]] for lo, hi in bounds]
  train_a = [plays["artist"][lo:hi][is_train[lo:hi]] for lo, hi in bounds]
  first = np.zeros(len(is_train), bool)
  first[starts] = True
  eligible = np.flatnonzero(~is_train & ~first & (counts[plays["track"]] > 0))
  rng = np.random.default_rng(seed)
  picked = np.sort(rng.choice(eligible, min(max_cases, len(eligible)), replace=False))
  user_start = np.repeat(starts, [hi - lo for lo, hi in bounds])
  hist_t = np.zeros((len(picked), max_len), np.int64)
  hist_a = np.zeros_like(hist_t)
  for row, i in enumerate(picked):
    lo = max(user_start[i], i - max_len)
    hist_t[row, max_len - (i - lo):] = plays["track"][lo:i]
    hist_a[row, max_len - (i - lo):] = plays["artist"][lo:i]
  pool = np.flatnonzero(counts > 0)
  cand = pool[rng.integers(0, len(pool), (len(picked), candidates))]
  cand[:, 0] = plays["track"][picked]
  # A drawn track that is the played one is redrawn from the rest of the pool.
  for row, col in zip(*np.nonzero(cand[:, 1:] == cand[:, :1])):
    while cand[row, col + 1] == cand[row, 0]:
      cand[row, col + 1] = pool[rng.integers(0, len(pool))]
  track_artist = np.zeros(vocab, np.int64)
  track_artist[plays["track"]] = plays["artist"]
  sess = plays["session"][is_train]
  order = np.argsort(sess, kind="stable")
  sess_tracks = np.split(plays["track"][is_train][order],
                         np.flatnonzero(np.diff(sess[order])) + 1)
  return {"train": _windows(train_t, train_a, max_len + 1),
          "cases": {"tracks": hist_t, "artists": hist_a, "cand_tracks": cand,
                    "cand_artists": track_artist[cand]},
          "counts": counts, "train_sessions": sess_tracks, "vocab": vocab,
          "artist_vocab": int(plays["artist"].max()) + 1,
          "train_plays": int(is_train.sum()), "eval_plays": int((~is_train).sum()),
          "eligible_cases": int(len(eligible)), "cases_n": int(len(picked)),
          "train_tracks": int(len(pool))}


def item_knn_scores(sessions: List[np.ndarray], counts: np.ndarray, cases) -> np.ndarray:
  """Item-kNN scores of the cases' candidates (see the module docstring)."""
  import scipy.sparse  # pylint: disable=g-import-not-at-top
  rows, cols = [], []
  for s in sessions:
    for gap in range(1, KNN_WINDOW + 1):
      rows += [s[:-gap], s[gap:]]
      cols += [s[gap:], s[:-gap]]
  vocab = len(counts)
  co = scipy.sparse.coo_matrix((np.ones(sum(len(r) for r in rows)),
                                (np.concatenate(rows), np.concatenate(cols))),
                               shape=(vocab, vocab)).tocsr()
  co.sum_duplicates()
  norm = np.sqrt(np.maximum(counts, 1).astype(np.float64))
  hist, cand = cases["tracks"], cases["cand_tracks"]
  scores = np.zeros(cand.shape, np.float64)
  for back in range(1, KNN_LAST + 1):
    last = hist[:, -back]
    sim = np.asarray(co[last][np.arange(len(last))[:, None], cand].todense())
    scores += KNN_DECAY ** (back - 1) * sim / (norm[last][:, None] * norm[cand])
  # Popularity only orders candidates the co-occurrences cannot tell apart.
  return scores + 1e-9 * counts[cand] / counts.max()


def compare(data_dir: str, steps: int, batch_size: int, seeds, max_len: int = 50,
            negatives: int = 256, max_cases: int = 5000) -> Dict[str, object]:
  """The ``next_track`` block of the results: per-scorer Recall@10 / NDCG@10 rows."""
  data = split(load_plays(data_dir), max_len, max_cases=max_cases)
  cases = data["cases"]
  rows = []

  def add(name, scores, seed=None):
    recall, ndcg = next_play_metrics.per_play(scores)
    row = {"model": name, "seed": seed, **next_play_metrics.summarize(recall, ndcg)}
    common.log("ranking", f"30music next track {name} seed {seed}: {row}")
    rows.append(row)

  add(POPULARITY, data["counts"][cases["cand_tracks"]].astype(np.float64))
  add(ITEM_KNN, item_knn_scores(data["train_sessions"], data["counts"], cases))
  for seed in seeds:
    for name in ranking_next_track_models.MODELS:
      add(name, ranking_next_track_models.train_and_score(
          name, data["train"], cases, data["vocab"], data["artist_vocab"], steps,
          batch_size, negatives, seed), seed)
  settings = {"steps": steps, "batch_size": batch_size, "max_len": max_len,
              "negatives": negatives, "candidates": next_play_metrics.CANDIDATES,
              "seeds": list(seeds)}
  return summarize(rows, data, settings)


def summarize(rows: List[Dict[str, object]], data: Dict[str, object],
              settings: Dict[str, object]) -> Dict[str, object]:
  """The results block from the per-run rows: mean and sd over each scorer's seeds.

  Args:
    rows: ``{"model", "seed", "recall_at_10", "ndcg_at_10"}`` per run.
    data: :func:`split`'s output (its sizes are recorded).
    settings: the training settings of the trained scorers.

  Returns:
    ``rows``, ``mean`` (per scorer, ``seeds`` = runs averaged), ``settings``, ``sizes``.
  """
  mean = []
  for name in [POPULARITY, ITEM_KNN, *ranking_next_track_models.MODELS]:
    got = [r for r in rows if r["model"] == name]
    if not got:
      continue
    m = {"model": name, "seeds": len(got)}
    for key in ("recall_at_10", "ndcg_at_10"):
      vals = np.array([r[key] for r in got])
      m[key], m[f"{key}_std"] = float(vals.mean()), float(vals.std(ddof=1) if len(vals) > 1
                                                          else 0.0)
    mean.append(m)
  sizes = {k: data[k] for k in ("train_plays", "eval_plays", "eligible_cases", "cases_n",
                                "train_tracks", "vocab")}
  by_name = {m["model"]: m["recall_at_10"] for m in mean}
  best = max((v, k) for k, v in by_name.items() if k != "melody")
  out = {"rows": rows, "mean": mean, "settings": settings, "sizes": sizes}
  if "melody" in by_name:
    # The target: Recall@10 >= the best baseline's + 10% relative.
    out["melody_recall_over_best_baseline"] = {"best_baseline": best[1],
                                               "ratio": by_name["melody"] / best[0]}
  return out


def lines(block) -> List[str]:
  """The docs section of the comparison (nothing when it has not run)."""
  if not block:
    return []
  if "error" in block:
    return ["", "### 30Music next track", "", f"Not measured: {block['error']}"]
  s, z = block["settings"], block["sizes"]

  def cell(m, key):
    sd = f" ± {m[key + '_std']:.4f}" if m["seeds"] > 1 else ""
    return f"{m[key]:.4f}{sd}"

  table = common.table(
      [{"model": m["model"], "runs": m["seeds"], "Recall@10": cell(m, "recall_at_10"),
        "NDCG@10": cell(m, "ndcg_at_10")} for m in block["mean"]],
      ["model", "runs", "Recall@10", "NDCG@10"])
  out = ["", "### 30Music next track (`bench/ranking_next_track.py`)", "",
          f"Chronological split at the 80% quantile of play times: {z['train_plays']:,} "
          f"training plays over {z['train_tracks']:,} tracks, {z['eval_plays']:,} later "
          f"plays of which {z['eligible_cases']:,} have a history and a track seen in "
          f"training; {z['cases_n']:,} of them drawn. Each ranks the played track among "
          f"{s['candidates']} (itself and {s['candidates'] - 1} training tracks drawn "
          "uniformly, the same draw for every scorer): sampled metrics. Trained models: "
          f"{s['steps']} steps of {s['batch_size']} windows of {s['max_len'] + 1} plays, "
          f"{s['negatives']} shared uniform negatives, Adam 1e-3, seeds {s['seeds']}; "
          "`melody` is Melody's `ItemEmbedding` + causal `SequenceEncoder` trained "
          "sequence-level on the next play, `sasrec` the SASRec-style baseline "
          "(track ids only, learned positions).", "", table]
  if "melody_recall_over_best_baseline" in block:
    v = block["melody_recall_over_best_baseline"]
    out += ["", f"- `melody` Recall@10 over the best baseline ({v['best_baseline']}): "
            f"**{v['ratio']:.3f}x** (target >= 1.10)"]
  return out
