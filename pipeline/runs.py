"""The history of local pipeline runs, from ML Metadata and the runner's run records:
per-component times and states, the spans a window run trained on, the run's own
Evaluator metrics per head and slice (or, for a play-only source, its next-play ranking
against popularity), its blessing (with the thresholds that failed),
infra blessing and push.

A run reports only what its own executions output. Its ``pipeline_run`` context also
holds the artifacts the resolver brought in (the last blessed model and its blessing,
from an earlier run), which must not make a run that never reached the Evaluator look
blessed. A run whose executions are still RUNNING is RUNNING only while the process
named in its run record (``pipeline.run_record``) is alive; once that process is gone
the run is ABANDONED.

Used by ``melody pipeline run`` (progress and summary) and ``melody pipeline runs``.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import measurability
from pipeline import next_play_metrics
from pipeline import run_record

_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
_OWN_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT,
                      metadata_store_pb2.Event.DECLARED_OUTPUT)
_DONE = {"COMPLETE", "CACHED"}
RUNNING, COMPLETE, FAILED, ABANDONED = "RUNNING", "COMPLETE", "FAILED", "ABANDONED"
# The pipeline_run context's property listing a window run's spans (pipeline.window_runs).
WINDOW_SPANS = "window_spans"


def connect(metadata_path: str) -> metadata_store.MetadataStore:
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(f"no ML Metadata store at {metadata_path}")
  cfg = metadata_store_pb2.ConnectionConfig()
  cfg.sqlite.filename_uri = metadata_path
  cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(cfg)


@dataclasses.dataclass
class ComponentRun:
  node: str
  state: str
  seconds: float


@dataclasses.dataclass
class RunSummary:
  """One run. ``runner`` is 'running', 'finished', 'gone' or '' (no run record, or
  the runner is on another host)."""
  run_id: str
  started: float
  components: List[ComponentRun]
  blessed: Optional[bool] = None
  infra_blessed: Optional[bool] = None
  pushed: Optional[bool] = None
  pushed_version: str = ""
  metrics: Dict[Tuple[str, str, str], float] = dataclasses.field(default_factory=dict)
  blessing_failures: List[str] = dataclasses.field(default_factory=list)
  runner: str = ""
  runner_desc: str = ""
  error: str = ""
  log_path: str = ""
  spans: List[str] = dataclasses.field(default_factory=list)
  policy_version: str = ""   # the policy.json its model was exported with ("" none)
  next_play: Optional[Dict[str, object]] = None   # pipeline.next_play_metrics result

  @property
  def state(self) -> str:
    states = {c.state for c in self.components}
    if "FAILED" in states or self.error:
      return FAILED
    if self.runner == "gone":
      return ABANDONED
    if self.runner == "finished":
      return COMPLETE if states <= _DONE else FAILED
    if self.runner == "running":
      return RUNNING
    return COMPLETE if states and states <= _DONE else RUNNING


def _node_name(store, execution_id: int) -> str:
  for ctx in store.get_contexts_by_execution(execution_id):
    if ctx.type == "node":
      return ctx.name.split(".", 1)[-1]
  return "?"


def component_runs(store, executions) -> List[ComponentRun]:
  out = []
  for ex in sorted(executions, key=lambda e: e.id):
    secs = max(0.0, (ex.last_update_time_since_epoch - ex.create_time_since_epoch) / 1e3)
    out.append(ComponentRun(_node_name(store, ex.id), _STATES.get(ex.last_known_state, "?"),
                            secs))
  return out


def own_outputs(store, executions) -> List[Tuple[str, metadata_store_pb2.Artifact]]:
  """(type name, artifact) of what the run's executions output, in id order.

  The resolver's artifacts are not among them: they enter the run as inputs and as
  the resolver's INTERNAL_OUTPUT events.
  """
  events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
  ids = sorted({ev.artifact_id for ev in events if ev.type in _OWN_OUTPUT_EVENTS})
  artifacts = store.get_artifacts_by_id(ids) if ids else []
  type_ids = sorted({a.type_id for a in artifacts})
  names = {t.id: t.name for t in store.get_artifact_types_by_id(type_ids)} if type_ids else {}
  return [(names[a.type_id], a) for a in sorted(artifacts, key=lambda a: a.id)]


def _int_prop(artifact, key) -> Optional[int]:
  if key in artifact.custom_properties:
    return artifact.custom_properties[key].int_value
  return None


def _summary(store, ctx, with_metrics: bool) -> RunSummary:
  executions = store.get_executions_by_context(ctx.id)
  summary = RunSummary(ctx.name, ctx.create_time_since_epoch / 1e3,
                       component_runs(store, executions))
  if WINDOW_SPANS in ctx.custom_properties:
    summary.spans = ctx.custom_properties[WINDOW_SPANS].string_value.split(",")
  evaluations = []
  for type_name, artifact in own_outputs(store, executions):
    if type_name == "ModelBlessing":
      summary.blessed = _int_prop(artifact, "blessed") == 1
    elif type_name == "InfraBlessing":
      summary.infra_blessed = _int_prop(artifact, "blessed") == 1
    elif type_name == "PushedModel":
      summary.pushed = _int_prop(artifact, "pushed") == 1
      if "pushed_version" in artifact.custom_properties:
        summary.pushed_version = artifact.custom_properties["pushed_version"].string_value
    elif type_name == "ModelEvaluation":
      evaluations.append(artifact.uri)
    elif type_name == "Model":
      summary.policy_version = model_policy_version(artifact.uri) or summary.policy_version
  if with_metrics and evaluations:
    from pipeline import evaluation_results  # pylint: disable=g-import-not-at-top
    for uri in evaluations:
      summary.next_play = next_play_metrics.read_result(uri) or summary.next_play
      if summary.next_play is not None:   # a play-only source's next-play evaluation
        if summary.blessed is False:
          summary.blessing_failures.extend(summary.next_play["reasons"])
        continue
      summary.metrics.update({(m.output, m.slice, m.metric): v
                              for m, v in evaluation_results.metrics(uri).items()
                              if m.model == evaluation_results.CANDIDATE})
      if summary.blessed is False:
        summary.blessing_failures.extend(evaluation_results.threshold_failures(uri))
  return summary


def model_policy_version(model_uri: str) -> str:
  """The policy version a Trainer's model was exported with ("" when none, or when the
  export has no ``melody_serving.json``)."""
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_uri, "Format-Serving", "assets.extra", "melody_serving.json")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f).get("policy_version") or ""
  except (OSError, ValueError):
    return ""


def _apply_record(summary: RunSummary, record: run_record.RunRecord) -> None:
  summary.log_path = record.log_path
  summary.error = record.error
  summary.runner_desc = f"pid {record.pid} on {record.host}"
  if record.finished is not None:
    summary.runner = "finished"
  else:
    alive = run_record.runner_alive(record)
    summary.runner = {True: "running", False: "gone", None: ""}[alive]


def list_runs(metadata_path: str, with_metrics: bool = True,
              runs_dir: Optional[str] = None) -> List[RunSummary]:
  """All runs, oldest first: those in ML Metadata, and those the runner recorded that
  stopped before TFX started (e.g. on a broken input shard).

  Args:
    metadata_path: the SQLite ML Metadata file.
    with_metrics: also read each run's Evaluator output (metrics, failed thresholds).
    runs_dir: the run records (default: ``runs/`` beside the metadata directory).
  """
  records = run_record.read_all(runs_dir or run_record.default_runs_dir(metadata_path))
  summaries = {}
  if os.path.exists(metadata_path) or not records:
    store = connect(metadata_path)
    for ctx in store.get_contexts_by_type("pipeline_run"):
      summaries[ctx.name] = _summary(store, ctx, with_metrics)
  for run_id, record in records.items():
    summary = summaries.setdefault(run_id, RunSummary(run_id, record.started, []))
    _apply_record(summary, record)
  return sorted(summaries.values(), key=lambda r: r.started)


def get_run(metadata_path: str, run_id: str, with_metrics: bool = True,
            runs_dir: Optional[str] = None) -> Optional[RunSummary]:
  """One run by id, or None."""
  return next((r for r in list_runs(metadata_path, with_metrics, runs_dir)
               if r.run_id == run_id), None)


def _yes_no(v: Optional[bool]) -> str:
  return "-" if v is None else ("yes" if v else "no")


_HEADS = (("interest_skip", "auc"), ("interest_like", "auc"), ("subscription", "auc"),
          ("interest_completion", "root_mean_squared_error"),
          ("exposure", "mean_absolute_error"))
_SHORT = {"root_mean_squared_error": "rmse", "mean_absolute_error": "mae"}
_COUNTS = ("example_count", "weighted_example_count")


def format_runs(runs: List[RunSummary]) -> str:
  """A table (one row per run, the overall metric per head), then for every run that
  was not blessed, failed or was abandoned, why."""
  header = ["run", "spans", "state", "secs", "blessed", "infra", "pushed"] + [
      f"{o.replace('interest_', '')}:{_SHORT.get(m, m)}" for o, m in _HEADS] + ["policy"]
  rows = []
  for r in runs:
    row = [r.run_id, format_spans(r.spans), r.state,
           f"{sum(c.seconds for c in r.components):.0f}",
           _yes_no(r.blessed), _yes_no(r.infra_blessed), _yes_no(r.pushed)]
    for o, m in _HEADS:
      row.append(_shown(r.metrics, o, "overall", m))
    row.append(r.policy_version or "-")
    rows.append(row)
  notes = [f"{r.run_id} {next_play_metrics.describe(r.next_play)}"
           for r in runs if r.next_play] + [line for r in runs for line in explain(r)]
  return _table(header, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def format_spans(spans: List[str]) -> str:
  """A window's spans in one cell: ``20240102..20240103 (2)``; '-' for no window."""
  if not spans:
    return "-"
  days = [s[len("span-"):] for s in spans]
  return days[0] if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)})"


def explain(run: RunSummary) -> List[str]:
  """Lines on why a run was not blessed, failed or was abandoned ([] otherwise)."""
  out = []
  if run.state == ABANDONED:
    running = [c.node for c in run.components if c.state == "RUNNING"]
    at = f" during {', '.join(running)}" if running else ""
    out.append(f"{run.run_id} ABANDONED{at}: its runner ({run.runner_desc}) is gone")
  elif run.state == FAILED:
    failed = [c.node for c in run.components if c.state == "FAILED"]
    why = run.error or f"{', '.join(failed) or 'a component'} failed"
    log = f" (log: {run.log_path})" if run.log_path else ""
    out.append(f"{run.run_id} FAILED: {why}{log}")
  if run.blessed is False:
    out.append(f"{run.run_id} not blessed:")
    out.extend(f"  {line}" for line in run.blessing_failures or
               ["(the Evaluator wrote no threshold failures)"])
  return out


def _shown(metrics: Dict[Tuple[str, str, str], float], head: str, slice_: str,
           metric: str) -> str:
  """A metric as the tables show it: "not measurable" for a head whose examples all
  weigh 0, "n/a (no positives)" for an AUC over one class (``pipeline.measurability``)."""
  return measurability.display(metric, metrics.get((head, slice_, metric)),
                               metrics.get((head, slice_, "weighted_example_count")),
                               metrics.get((head, slice_, "mean_label")))


def format_slices(run: RunSummary) -> str:
  """Per head and slice metrics of one run."""
  rows = sorted((o, s, m, _shown(run.metrics, o, s, m)) for (o, s, m) in run.metrics
                if m not in _COUNTS or s == "overall")
  return _table(["head", "slice", "metric", "value"], [list(r) for r in rows])


def _table(header, rows) -> str:
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [
      len(h) for h in header]
  line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
