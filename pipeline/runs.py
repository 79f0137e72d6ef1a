"""Reads past pipeline runs from ML Metadata: per-component times and states, the
Evaluator's metrics per head and slice, blessing and push.

Used by ``melody pipeline run`` (live progress) and ``melody pipeline runs`` (table).
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


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
  run_id: str
  started: float
  components: List[ComponentRun]
  blessed: Optional[bool] = None
  infra_blessed: Optional[bool] = None
  pushed: Optional[bool] = None
  pushed_version: str = ""
  metrics: Dict[Tuple[str, str, str], float] = dataclasses.field(default_factory=dict)

  @property
  def state(self) -> str:
    states = {c.state for c in self.components}
    if "FAILED" in states:
      return "FAILED"
    if states <= {"COMPLETE", "CACHED"}:
      return "COMPLETE"
    return "RUNNING"


def _node_name(store, execution_id: int) -> str:
  for ctx in store.get_contexts_by_execution(execution_id):
    if ctx.type == "node":
      return ctx.name.split(".", 1)[-1]
  return "?"


def component_runs(store, run_context_id: int) -> List[ComponentRun]:
  out = []
  for ex in sorted(store.get_executions_by_context(run_context_id), key=lambda e: e.id):
    secs = max(0.0, (ex.last_update_time_since_epoch - ex.create_time_since_epoch) / 1e3)
    out.append(ComponentRun(_node_name(store, ex.id), _STATES.get(ex.last_known_state, "?"),
                            secs))
  return out


def _outputs(store, run_context_id: int, type_name: str):
  return [a for a in store.get_artifacts_by_context(run_context_id)
          if store.get_artifact_types_by_id([a.type_id])[0].name == type_name]


def _int_prop(artifact, key) -> Optional[int]:
  if key in artifact.custom_properties:
    return artifact.custom_properties[key].int_value
  return None


def evaluation_metrics(uri: str) -> Dict[Tuple[str, str, str], float]:
  """(output, slice, metric) -> value from an Evaluator ModelEvaluation artifact."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  out = {}
  try:
    results = list(tfma.load_metrics(uri))
  except Exception:  # pylint: disable=broad-except
    return out
  for mfs in results:
    slice_name = "overall" if not mfs.slice_key.single_slice_keys else ",".join(
        f"{k.column}={k.bytes_value.decode() if k.HasField('bytes_value') else k.int64_value}"
        for k in mfs.slice_key.single_slice_keys)
    for kv in mfs.metric_keys_and_values:
      if kv.key.is_diff:
        continue
      if kv.key.model_name and "baseline" in kv.key.model_name:
        continue
      if not kv.value.HasField("double_value"):
        continue
      out[(kv.key.output_name, slice_name, kv.key.name)] = kv.value.double_value.value
  return out


def list_runs(metadata_path: str, with_metrics: bool = True) -> List[RunSummary]:
  """All pipeline runs in the store, oldest first."""
  store = connect(metadata_path)
  runs = []
  for ctx in store.get_contexts_by_type("pipeline_run"):
    summary = RunSummary(ctx.name, ctx.create_time_since_epoch / 1e3,
                         component_runs(store, ctx.id))
    for b in _outputs(store, ctx.id, "ModelBlessing"):
      summary.blessed = _int_prop(b, "blessed") == 1
    for b in _outputs(store, ctx.id, "InfraBlessing"):
      summary.infra_blessed = _int_prop(b, "blessed") == 1
    for p in _outputs(store, ctx.id, "PushedModel"):
      summary.pushed = _int_prop(p, "pushed") == 1
      if "pushed_version" in p.custom_properties:
        summary.pushed_version = p.custom_properties["pushed_version"].string_value
    if with_metrics:
      for ev in _outputs(store, ctx.id, "ModelEvaluation"):
        summary.metrics.update(evaluation_metrics(ev.uri))
    runs.append(summary)
  return sorted(runs, key=lambda r: r.started)


def _yes_no(v: Optional[bool]) -> str:
  return "-" if v is None else ("yes" if v else "no")


def format_runs(runs: List[RunSummary]) -> str:
  """A table: one row per run, with the overall metric per head."""
  heads = [("interest_skip", "auc"), ("interest_like", "auc"), ("subscription", "auc"),
           ("interest_completion", "root_mean_squared_error"),
           ("exposure", "mean_absolute_error")]
  header = ["run", "state", "secs", "blessed", "infra", "pushed"] + [
      f"{o.replace('interest_', '')}:{m.replace('root_mean_squared_error', 'rmse').replace('mean_absolute_error', 'mae')}"
      for o, m in heads]
  rows = []
  for r in runs:
    row = [r.run_id, r.state, f"{sum(c.seconds for c in r.components):.0f}",
           _yes_no(r.blessed), _yes_no(r.infra_blessed), _yes_no(r.pushed)]
    for o, m in heads:
      v = r.metrics.get((o, "overall", m))
      row.append("-" if v is None else f"{v:.4f}")
    rows.append(row)
  return _table(header, rows)


def format_slices(run: RunSummary) -> str:
  """Per head and slice metrics of one run."""
  rows = sorted((o, s, m, f"{v:.4f}") for (o, s, m), v in run.metrics.items()
                if m != "example_count" or s == "overall")
  return _table(["head", "slice", "metric", "value"], [list(r) for r in rows])


def _table(header, rows) -> str:
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [
      len(h) for h in header]
  line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
