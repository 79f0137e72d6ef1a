"""Calibration of the listener world against the shared public datasets: the run.

This module owns ``melody data calibrate``: :func:`run` loads the real data
(``simulation.calibration_data``), fits ``simulation/calibrated_params.json``
(``simulation.calibration_fit``), writes it, simulates with the fitted parameters and
reports simulator vs real data side by side (``simulation.calibration_report``:
quantiles and KS distances) and the skip behaviour against its published targets
(``simulation.calibration_skip_report``: target, source, simulated value, distance)
as printed tables, a markdown file, a JSON file and a PNG.
"""

import dataclasses
import json
import os
import sys
from typing import Optional

from simulation import calibration_data
from simulation import calibration_fit
from simulation import calibration_report
from simulation import calibration_skip_report
from simulation import world_config


def run(data_dir: str, out: str, seed: int = 7, params_out: Optional[str] = None) -> int:
  """Fits the world to the shared data, writes the params, reports sim vs real.

  Args:
    data_dir: the shared data root (kkbox_sample/, 30music_slices/, …).
    out: report directory: ``calibration.md``, ``calibration.png``, ``calibration.json``.
    seed: seed of every simulation in the fit and the report.
    params_out: where the fitted JSON goes (default ``simulation/calibrated_params.json``).

  Returns:
    0 on success, 2 when the data is missing.
  """
  if not os.path.isdir(data_dir):
    print(f"melody data calibrate: data directory not found: {data_dir}", file=sys.stderr)
    return 2
  params_out = params_out or world_config.PARAMS_PATH
  say = lambda msg: print(msg, flush=True)
  say(f"loading real data from {data_dir}")
  try:
    real = calibration_data.load_real(data_dir)
  except FileNotFoundError as e:
    print(f"melody data calibrate: {e}", file=sys.stderr)
    return 2
  params = calibration_fit.fit(real, seed=seed, say=say)
  calibration_fit.write_params(params, params_out)
  say(f"wrote {params_out}")
  rows = calibration_report.compare(params, real, seed=seed)
  say("\nsimulator vs real data\n" + calibration_report.format_table(rows))
  _, cols = calibration_report.report_plays(params, seed)
  skips = calibration_skip_report.compare(cols)
  say("\nskip behaviour vs published targets\n" + calibration_skip_report.format_table(skips))
  os.makedirs(out, exist_ok=True)
  cooc = calibration_report.cooc_agreement(params, seed)
  say(f"tag co-occurrence (pairs with real lift > 1): Spearman {cooc['spearman']:.3f} "
      f"over {cooc['pairs']} pairs; simulated lift > 1 for {100 * cooc['share_above_1']:.0f}%")
  with open(os.path.join(out, "calibration.md"), "w", encoding="utf-8") as f:
    f.write(f"# Simulator calibration (seed {seed})\n\n"
            + calibration_report.format_table(rows, True) + "\n\n"
            f"Tag co-occurrence: Spearman {cooc['spearman']:.3f} between real and simulated "
            f"lift over {cooc['pairs']} top pairs with real lift > 1; simulated lift > 1 "
            f"for {100 * cooc['share_above_1']:.0f}% of them.\n\n"
            "## Skip behaviour vs published targets\n\n"
            + calibration_skip_report.format_table(skips, True) + "\n")
  with open(os.path.join(out, "calibration.json"), "w", encoding="utf-8") as f:
    json.dump({"seed": seed, "rows": [dataclasses.asdict(r) for r in rows], "cooc": cooc,
               "skips": skips,
               "behaviour": params["behaviour"], "targets": params["targets"]}, f, indent=2)
  calibration_report.plot(rows, params, real, os.path.join(out, "calibration.png"),
                          seed=seed)
  say(f"wrote {out}/calibration.md, calibration.json, calibration.png")
  return 0
