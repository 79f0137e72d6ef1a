"""Recurring Kubeflow runs of the compiled Melody pipeline (``melody pipeline schedule``).

Users write standard 5-field cron (``"0 3 * * *"``); the KFP API wants 6 fields with
seconds first, so the expression is converted and validated here. With ``dry_run`` the
request is printed instead of sent, for use without a cluster.
"""

import json
import re
from typing import Optional

_FIELD = re.compile(r"^[\d\*/,\-\?A-Za-z]+$")


def to_kfp_cron(expr: str) -> str:
  """5-field cron (min hour dom month dow) → KFP's 6-field cron (sec min hour …)."""
  fields = expr.split()
  if len(fields) == 6:
    pass
  elif len(fields) == 5:
    fields = ["0"] + fields
  else:
    raise ValueError(f"cron expression must have 5 fields (min hour dom month dow), "
                     f"got {len(fields)} in {expr!r}")
  for f in fields:
    if not _FIELD.match(f):
      raise ValueError(f"bad cron field {f!r} in {expr!r}")
  return " ".join(fields)


def recurring_run_request(spec_path: str, cron: str, experiment: str = "melody",
                          job_name: str = "melody-daily", pipeline_root: str = "",
                          max_concurrency: int = 1) -> dict:
  """The arguments of ``kfp.Client.create_recurring_run`` for this schedule."""
  request = {
      "experiment": experiment,
      "job_name": job_name,
      "cron_expression": to_kfp_cron(cron),
      "pipeline_package_path": spec_path,
      "max_concurrency": max_concurrency,
      "no_catchup": True,
      "enabled": True,
  }
  if pipeline_root:
    request["pipeline_root"] = pipeline_root
  return request


def schedule(spec_path: str, cron: str, host: Optional[str] = None, dry_run: bool = False,
             **kwargs) -> dict:
  """Creates the recurring run (or prints the request with ``dry_run``)."""
  request = recurring_run_request(spec_path, cron, **kwargs)
  if dry_run:
    print(json.dumps({"host": host or "(in-cluster default)", "create_recurring_run": request},
                     indent=2))
    return request
  import kfp  # pylint: disable=g-import-not-at-top
  client = kfp.Client(host=host)
  experiment = client.create_experiment(name=request.pop("experiment"))
  result = client.create_recurring_run(experiment_id=experiment.experiment_id, **request)
  print(f"created recurring run {result.recurring_run_id} ({request['cron_expression']})")
  return request
