"""The ranking benchmark's verdicts: means over seeds per variant, paired differences
between variants on the same seeds, and the quality targets checked on them.
"""

from typing import Dict, List, Optional

import numpy as np

from bench import ranking_models

COMMERCIAL_HEADS = ("subscription_auc", "exposure_rmse")
INTEREST_AUC_HEADS = ("interest_skip_auc", "interest_like_auc")
# How far above the best baseline the default model's interest AUCs must be.
INTEREST_MARGIN = 0.005


def mean_rows(rows: List[Dict[str, object]],
              names: Optional[List[str]] = None) -> List[Dict[str, object]]:
  """Per model (of ``names``, in that order; ``ranking_models.MODELS`` by default): the
  mean of every metric over seeds, and its standard deviation (``<metric>_std``, ddof 1;
  0 with one seed)."""
  out = []
  for name in names or ranking_models.MODELS:
    mine = [r for r in rows if r["model"] == name]
    if not mine:
      continue
    keys = sorted({k for r in mine for k in r if k not in ("model", "seed")})
    row = {"model": name, "seeds": len(mine)}
    for k in keys:
      v = np.array([r[k] for r in mine if k in r], dtype=np.float64)
      row[k] = float(v.mean())
      row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    out.append(row)
  return out


def _paired(runs, a: str, b: str, key: str) -> Optional[Dict[str, float]]:
  """``a - b`` on ``key`` over the seeds both models ran: mean, sd and standard error."""
  va = {r["seed"]: r[key] for r in runs if r["model"] == a and key in r}
  vb = {r["seed"]: r[key] for r in runs if r["model"] == b and key in r}
  seeds = sorted(set(va) & set(vb))
  if not seeds:
    return None
  d = np.array([va[s] - vb[s] for s in seeds])
  sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
  return {"mean": float(d.mean()), "sd": sd, "se": sd / np.sqrt(len(d)), "n": len(d),
          "per_seed": [float(x) for x in d]}


def paired_diffs(runs, a: str, b: str, keys) -> Dict[str, Dict[str, float]]:
  """``a - b`` per key of ``keys`` both models have, paired by seed (as ``_paired``)."""
  out = {k: _paired(runs, a, b, k) for k in keys}
  return {k: v for k, v in out.items() if v is not None}


def targets(block: Dict[str, object]) -> Dict[str, object]:
  """The quality targets, checked on the simulator runs (paired by seed).

  * ``mmoe_within_0.003_auc_of_single_on_interest``: on every covered interest AUC head,
    mean(MMoE) >= mean(best single-task model) - 0.003 (the only single-task model with
    interest heads is ``single:interest``).
  * ``mmoe_beats_shared_bottom``: per commercial head, the paired mean difference is in
    MMoE's favour (AUC higher, RMSE lower); ``..._beyond_noise`` also asks it to exceed
    two standard errors of the paired difference.
  * ``single_minus_shared_bottom``: single-task minus shared-bottom on each commercial
    head, the negative transfer (how much sharing costs that head; the conflict MMoE is
    meant to relieve).
  * ``mmoe_minus_mmoe_without_id_dropout``: what the listener-id dropout adds, per head.
  * the baseline verdicts of :func:`baseline_targets`.
  """
  runs = block["runs"]
  by = {r["model"]: r for r in block["mean"]}
  out: Dict[str, object] = baseline_targets(block)
  if "mmoe" in by and "single:interest" in by:
    gaps = {h: by["mmoe"][h] - by["single:interest"][h] for h in INTEREST_AUC_HEADS
            if h in by["mmoe"] and h in by["single:interest"]}
    out["mmoe_minus_single_interest_auc"] = gaps
    out["mmoe_within_0.003_auc_of_single_on_interest"] = bool(gaps) and all(
        g >= -0.003 for g in gaps.values())
  if "mmoe" in by and "shared_bottom" in by:
    diffs, beats, beyond = {}, {}, {}
    for h in COMMERCIAL_HEADS:
      p = _paired(runs, "mmoe", "shared_bottom", h)
      if p is None:
        continue
      sign = 1.0 if h.endswith("_auc") else -1.0     # > 0: MMoE better
      diffs[h] = p
      beats[h] = bool(sign * p["mean"] > 0)
      beyond[h] = bool(sign * p["mean"] > 2 * p["se"]) if np.isfinite(p["se"]) else False
    out["mmoe_minus_shared_bottom"] = diffs
    out["mmoe_beats_shared_bottom"] = beats
    out["mmoe_beats_shared_bottom_beyond_noise"] = beyond
  ablation = {}
  for h in ranking_models.metric_columns():
    p = _paired(runs, "mmoe", ranking_models.NO_ID_DROPOUT, h)
    if p is not None:
      ablation[h] = p
  if ablation:
    out["mmoe_minus_mmoe_without_id_dropout"] = ablation
  transfer = {}
  for h, single in (("subscription_auc", "single:subscription"),
                    ("exposure_rmse", "single:exposure")):
    p = _paired(runs, single, "shared_bottom", h)
    if p is not None:
      transfer[h] = p
  if transfer:
    out["single_minus_shared_bottom"] = transfer
  return out


def _better(key: str, a: float, b: float) -> bool:
  return a > b if key.endswith("_auc") else a < b


def baseline_targets(block: Dict[str, object], default: str = "mmoe",
                     margin: float = INTEREST_MARGIN) -> Dict[str, object]:
  """The default model against the baselines and its own sequence-free ablations.

  * ``best_baseline``: per head, the baseline (``ranking_models.REFERENCES``) with the
    best mean.
  * ``default_minus_best_baseline``: per head, the default minus that baseline, paired
    by seed.
  * ``default_beats_best_baseline``: per head, the target: an interest AUC at least
    ``margin`` above the best baseline and beyond two standard errors of the paired
    difference; a regression head's RMSE at most the best baseline's; subscription AUC
    at least shared-bottom's.
  * ``sequence_encoder_contribution``: the default minus the same model with pooled
    sequences (no Transformer, no target attention), minus the target-attention-only
    model and minus the pooled model given the most recent play, per head, paired: what
    the Transformer adds.
  """
  runs, out = block["runs"], {}
  by = {r["model"]: r for r in block["mean"]}
  if default not in by:
    return out
  best, diffs, verdict = {}, {}, {}
  for key in ranking_models.metric_columns():
    if key not in by[default]:
      continue
    have = [m for m in ranking_models.REFERENCES if m in by and key in by[m]]
    if not have:
      continue
    top = have[0]
    for m in have[1:]:
      if _better(key, by[m][key], by[top][key]):
        top = m
    best[key] = {"model": top, "mean": by[top][key]}
    p = _paired(runs, default, top, key)
    if p is None:
      continue
    diffs[key] = p
    if key in INTEREST_AUC_HEADS:
      verdict[key] = bool(p["mean"] >= margin and
                          (not np.isfinite(p["se"]) or p["mean"] > 2 * p["se"]))
    elif key.endswith("_rmse"):
      verdict[key] = bool(p["mean"] <= 0)
  if "subscription_auc" in by[default] and "subscription_auc" in by.get("shared_bottom", {}):
    verdict["subscription_auc"] = bool(by[default]["subscription_auc"]
                                       >= by["shared_bottom"]["subscription_auc"])
  out["best_baseline"] = best
  out["default_minus_best_baseline"] = diffs
  out["default_beats_best_baseline"] = verdict
  contribution = {}
  for ablation in (ranking_models.FLAT_MMOE, ranking_models.TARGET_ATTENTION_ONLY,
                   ranking_models.FLAT_MMOE_RECENT):
    per_head = {key: p for key in ranking_models.metric_columns()
                for p in [_paired(runs, default, ablation, key)] if p is not None}
    if per_head:
      contribution[f"minus {ablation}"] = per_head
  if contribution:
    out["sequence_encoder_contribution"] = contribution
  return out
