"""``melody train`` and ``melody pipeline …`` sub-commands (argument parsing only)."""

import os
import sys


def _train(args):
  from pipeline import train_local
  return train_local.main(args)


def _local_config(args):
  from pipeline import configs
  overrides = {"train_steps": args.steps, "model_config": args.config,
               "with_intent": args.with_intent, "intent_steps": args.intent_steps,
               "enable_cache": args.cache}
  if args.auc_drop_tolerance is not None:
    overrides["auc_drop_tolerance"] = args.auc_drop_tolerance
  if args.beam_mode:
    overrides["beam_args"] = configs.direct_beam_args(args.beam_mode)
  if args.infer_schema:
    overrides["schema_dir"] = None
  elif args.schema:
    overrides["schema_dir"] = args.schema
  if args.policy:
    from ranking.fusion import policy_file
    overrides["policy_json"] = policy_file.load(args.policy).to_json()
  return configs.local_config(args.data, args.workdir, **overrides)


def _run(args):
  from ranking.fusion import policy_file
  if args.policy:   # a policy that fails validation stops the run before it starts
    try:
      policy_file.load(args.policy)
    except policy_file.PolicyError as e:
      print(f"melody pipeline run: error: {e}", file=sys.stderr, flush=True)
      return 2
  from pipeline import local_runner, run_errors, runs
  if args.window_days:
    return _run_window(args)
  config = _local_config(args)
  checks = []
  if args.serving_log:
    from pipeline import skew_gate
    try:
      checks.append(skew_gate.serving_log_check(
          config, os.path.join(config.data_root, "examples"), args.serving_log))
    except FileNotFoundError as e:
      print(f"melody pipeline run: error: {e}", file=sys.stderr, flush=True)
      return 2
  try:
    summary = local_runner.run(config, checks=checks)
  except run_errors.PipelineRunError as e:
    print(e.report(), file=sys.stderr, flush=True)
    return 1
  print(runs.format_runs([summary]))
  print()
  print(runs.format_slices(summary))
  return 0


def _run_window(args):
  from pipeline import run_errors, runs, span_lock, window_runs
  try:
    outcomes = window_runs.run_spans(_local_config(args), args.window_days,
                                     until=args.until, span=args.span,
                                     drift_check=not args.no_drift_check,
                                     serving_log=args.serving_log or "")
  except run_errors.PipelineRunError as e:
    print(e.report(), file=sys.stderr, flush=True)
    return 1
  except span_lock.SpanBusyError as e:
    print(f"melody pipeline run: {e}", file=sys.stderr, flush=True)
    return 1
  ran = [o.run for o in outcomes if o.run is not None]
  for o in outcomes:
    if o.skipped:
      print(f"{window_runs.span_name(o.span)}: {o.skipped}")
  if not outcomes:
    print("no new span to run")
  if ran:
    print(runs.format_runs(ran))
  return 0


def _rollback(args):
  from pipeline import rollback
  workdir = os.path.abspath(args.workdir)
  try:
    done = rollback.rollback(os.path.join(workdir, "serving_model"),
                             os.path.join(workdir, "rolled_back"), to=args.to)
  except ValueError as e:
    print(f"melody pipeline rollback: {e}", file=sys.stderr)
    return 1
  print(f"serving version {done.serving}; moved {', '.join(done.moved)} to "
        f"{os.path.join(workdir, 'rolled_back')}")
  return 0


def _runs(args):
  from pipeline import runs
  workdir = os.path.abspath(args.workdir)
  all_runs = runs.list_runs(os.path.join(workdir, "metadata", "metadata.sqlite"),
                            runs_dir=os.path.join(workdir, "runs"))
  print(runs.format_runs(all_runs))
  if args.slices and all_runs:
    print()
    print(runs.format_slices(all_runs[-1]))
  return 0


def _schema(args):
  import glob
  from pipeline import schema_tools
  found = sorted(glob.glob(os.path.join(os.path.abspath(args.workdir), "pipeline_root",
                                        "SchemaGen", "schema", "*", "schema.pbtxt")),
                 key=lambda p: int(p.split(os.sep)[-2]))
  if not found:
    print(f"no SchemaGen output under {args.workdir}; run `melody pipeline run` first")
    return 1
  schema_tools.write(schema_tools.curate(schema_tools.read(found[-1])), args.out)
  print(f"curated {found[-1]} -> {args.out}")
  return 0


def _compile(args):
  from pipeline import configs, kubeflow_v2_runner
  if args.beam == "dataflow":
    beam = configs.dataflow_beam_args(args.project, args.region, args.temp_location)
  elif args.beam == "flink":
    beam = configs.flink_beam_args(args.flink_master)
  else:
    beam = configs.direct_beam_args("multi_processing", 2)
  spec = kubeflow_v2_runner.compile_pipeline(kubeflow_v2_runner.KubeflowConfig(
      image=args.image, pipeline_root=args.pipeline_root, data_root=args.data_root,
      serving_dir=args.serving_dir, beam_args=beam, window_days=args.window_days), args.out)
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  window = (f", window {args.window_days} days ending with the run's scheduled_date"
            if args.window_days else "")
  print(f"wrote {args.out}: {len(tasks)} components, image {args.image}{window}")
  return 0


def _schedule(args):
  from pipeline import schedule
  schedule.schedule(args.spec, args.cron, host=args.host, dry_run=args.dry_run,
                    experiment=args.experiment, job_name=args.job_name)
  return 0


def register(subparsers) -> None:
  p = subparsers.add_parser("train", help="train the ranking model on generated examples")
  p.add_argument("--data", required=True,
                 help="directory written by `melody data generate` (raw TFRecord examples "
                      "and the catalogue tracks.parquet)")
  p.add_argument("--out", default="runs/train",
                 help="checkpoints, TensorBoard logs, metrics and the serving model "
                      "(serving_model/<version>/ with models.config beside it)")
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--batch-size", type=int, default=512)
  p.add_argument("--config", default="mmoe", help="mmoe | ple | shared_bottom | single:<task>")
  p.add_argument("--seed", type=int, default=7)
  p.add_argument("--sequence-level", action="store_true",
                 help="train on whole listener sequences: each listener's plays encoded "
                      "once per chunk with the causal model, every impression trained in "
                      "that pass (the export serves it like any model)")
  p.set_defaults(handler=_train)

  pipe = subparsers.add_parser("pipeline",
                               help="run, inspect, compile and schedule the TFX pipeline")
  sub = pipe.add_subparsers(dest="pipeline_command", metavar="PIPELINE_COMMAND")

  p = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite MLMD, "
                                 "Beam Direct)")
  p.add_argument("--data", required=True, help="directory written by `melody data generate`")
  p.add_argument("--workdir", default="runs/pipeline",
                 help="pipeline root, metadata, pushed models")
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--config", default="mmoe")
  p.add_argument("--schema", default=None,
                 help="schema dir to import (default: the curated pipeline/schema/)")
  p.add_argument("--with-intent", action="store_true",
                 help="also train the text-intent model and compose it into the export")
  p.add_argument("--intent-steps", type=int, default=300,
                 help="contrastive fine-tuning steps of the intent model")
  p.add_argument("--infer-schema", action="store_true",
                 help="infer the schema with SchemaGen instead (first run on new data)")
  p.add_argument("--cache", action="store_true",
                 help="reuse outputs of components whose inputs and settings are unchanged "
                      "(e.g. statistics and Transform when only --steps changes)")
  p.add_argument("--beam-mode", default=None,
                 choices=["in_memory", "multi_threading", "multi_processing"],
                 help="DirectRunner mode (default in_memory; multi_processing for large data)")
  p.add_argument("--auc-drop-tolerance", type=float, default=None, metavar="DELTA",
                 help="bless a candidate unless its skip or like AUC is below the last "
                      "blessed model's by more than DELTA beyond the eval split's noise "
                      "(default 0.002; wider for models trained a few dozen steps)")
  p.add_argument("--window-days", type=int, default=0,
                 help="scheduled run over day spans: train on the last N days' spans, "
                      "evaluate on the newest, catch up missed days in order, push each "
                      "span at most once")
  p.add_argument("--until", type=int, default=None, metavar="YYYYMMDD",
                 help="with --window-days: the scheduled date; later spans wait")
  p.add_argument("--span", type=int, default=None, metavar="YYYYMMDD",
                 help="with --window-days: run this span only (skipped if already pushed)")
  p.add_argument("--serving-log", default=None, metavar="FILE",
                 help="a `melody serve --request-log` file: stop the run when its requests' "
                      "features are skewed from the training span (schema thresholds)")
  p.add_argument("--no-drift-check", action="store_true",
                 help="with --window-days: do not compare each span with the one before")
  p.add_argument("--policy", default=None, metavar="POLICY_JSON",
                 help="policy.json (from `melody simulate`) the Trainer bakes into the "
                      "exported model's fusion and mixing tables")
  p.set_defaults(handler=_run)

  p = sub.add_parser("rollback", help="serve the previous pushed version again (local)")
  p.add_argument("--workdir", default="runs/pipeline")
  p.add_argument("--to", default=None, metavar="VERSION",
                 help="the version to serve (default: the one before the newest)")
  p.set_defaults(handler=_rollback)

  p = sub.add_parser("runs", help="list past runs with their metrics and blessing")
  p.add_argument("--workdir", default="runs/pipeline")
  p.add_argument("--slices", action="store_true", help="also print the last run's slices")
  p.set_defaults(handler=_runs)

  p = sub.add_parser("schema", help="curate the last inferred schema into pipeline/schema/")
  p.add_argument("--workdir", default="runs/pipeline")
  p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "schema", "schema.pbtxt"))
  p.set_defaults(handler=_schema)

  p = sub.add_parser("compile", help="compile the Kubeflow Pipelines v2 spec (offline)")
  p.add_argument("--out", default="runs/kubeflow/melody_pipeline.json")
  p.add_argument("--image", default="ghcr.io/melody/melody:latest")
  p.add_argument("--pipeline-root", default="gs://melody-pipelines/root")
  p.add_argument("--data-root", default="gs://melody-data/generated")
  p.add_argument("--serving-dir", default="gs://melody-models/ranker")
  p.add_argument("--beam", choices=["direct", "dataflow", "flink"], default="direct")
  p.add_argument("--project", default="")
  p.add_argument("--region", default="")
  p.add_argument("--temp-location", default="")
  p.add_argument("--flink-master", default="")
  p.add_argument("--window-days", type=int, default=0,
                 help="train on the spans of the N days ending with the run's "
                      "scheduled_date parameter (YYYYMMDD; default 'latest': the newest "
                      "span) and evaluate on that day's span (WindowExampleGen)")
  p.set_defaults(handler=_compile)

  p = sub.add_parser("schedule", help="create a recurring Kubeflow run with the KFP client")
  p.add_argument("--cron", required=True, help='5-field cron, e.g. "0 3 * * *"')
  p.add_argument("--spec", default="runs/kubeflow/melody_pipeline.json")
  p.add_argument("--host", default=None, help="KFP API endpoint (default: in-cluster)")
  p.add_argument("--experiment", default="melody")
  p.add_argument("--job-name", default="melody-daily")
  p.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
  p.set_defaults(handler=_schedule)
