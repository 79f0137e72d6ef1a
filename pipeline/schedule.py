"""Recurring Kubeflow runs of the compiled Melody pipeline (``melody pipeline schedule``).

Users write standard 5-field cron (``"0 3 * * *"``); the KFP API wants 6 fields with
seconds first, so the expression is converted and validated here. With ``dry_run`` the
request is printed instead of sent, for use without a cluster.

A spec compiled with a rolling window (``melody pipeline compile --window-days N``)
declares the ``scheduled_date`` parameter: each scheduled run gets its own date from
the KFP scheduler's ``[[ScheduledTime.20060102]]`` macro (YYYYMMDD of the time it was
scheduled for), and the schedule catches up: runs missed while the schedule was paused
or behind start later, in order and one at a time, each with its own date.
"""

import json
import re
from typing import Optional

_FIELD = re.compile(r"^[\d\*/,\-\?A-Za-z]+$")
SCHEDULED_DATE = "scheduled_date"
# The KFP scheduler's macro for the run's scheduled time, in Go's layout: YYYYMMDD.
SCHEDULED_DATE_MACRO = "[[ScheduledTime.20060102]]"


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


def has_window(spec_path: str) -> bool:
  """Whether the compiled spec at ``spec_path`` takes a ``scheduled_date`` (False when
  there is no file to read, e.g. a dry run before compiling)."""
  try:
    with open(spec_path, encoding="utf-8") as f:
      spec = json.load(f)
  except (OSError, ValueError):
    return False
  root = spec.get("pipelineSpec", {}).get("root", {})
  return SCHEDULED_DATE in root.get("inputDefinitions", {}).get("parameters", {})


def recurring_run_request(spec_path: str, cron: str, experiment: str = "melody",
                          job_name: str = "melody-daily", pipeline_root: str = "",
                          max_concurrency: int = 1, window: bool = False) -> dict:
  """The arguments of ``kfp.Client.create_recurring_run`` for this schedule; with
  ``window``, each run's ``scheduled_date`` and catch-up of missed runs."""
  request = {
      "experiment": experiment,
      "job_name": job_name,
      "cron_expression": to_kfp_cron(cron),
      "pipeline_package_path": spec_path,
      "max_concurrency": max_concurrency,
      "no_catchup": not window,
      "enabled": True,
  }
  if window:
    request["params"] = {SCHEDULED_DATE: SCHEDULED_DATE_MACRO}
  if pipeline_root:
    request["pipeline_root"] = pipeline_root
  return request


def schedule(spec_path: str, cron: str, host: Optional[str] = None, dry_run: bool = False,
             **kwargs) -> dict:
  """Creates the recurring run (or prints the request with ``dry_run``)."""
  request = recurring_run_request(spec_path, cron, window=has_window(spec_path), **kwargs)
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
