"""``WindowExampleGen``: the rolling window's Examples artifact for runs on Kubeflow.

A scheduled local run (``pipeline.window_runs``) builds a folder of links per window and
points ImportExampleGen at it. On Kubeflow that does not work: ExampleGen's range
config reads one span (``RollingRange.num_spans`` must be 1) and the KFP v2 compiler
compiles only the latest-artifact and latest-blessed resolvers, so no stock component
reads N spans. This component does, with the same rule as the local runs
(``window_runs.window`` and ``window_runs.window_files``): given the data root, the
scheduled date and N, it copies the train files of the spans of the N days ending with
that date and the eval files of that date's span into an Examples artifact
(``Split-train/``, ``Split-eval/``, gzip TFRecords as ExampleGen writes them), and
records the spans on it: ``span`` (the evaluated one) and the custom properties
``window_spans`` (comma-separated span folder names) and ``window_days``. The scheduled
date is a runtime parameter of the compiled pipeline (``scheduled_date``, YYYYMMDD),
which a recurring run fills from its scheduled time; its default ``latest`` takes the
newest span. Files go through ``tf.io.gfile``, so the data root may be an object store.
"""

import os
from typing import List, Sequence, Tuple

from tfx import v1 as tfx
from tfx.dsl.components.base import base_component
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from pipeline import window_runs

COMPONENT_ID = "WindowExampleGen"
SCHEDULED_DATE = "scheduled_date"
WINDOW_SPANS = "window_spans"
WINDOW_DAYS = "window_days"
SPLITS = ("train", "eval")
# The scheduled date of a run started by hand: the newest span in the data root.
LATEST = "latest"


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def gfile_listdir(folder: str) -> List[str]:
  """A folder's names through ``tf.io.gfile`` (object stores mark folders with '/')."""
  gfile = _gfile()
  if not gfile.isdir(folder):
    raise FileNotFoundError(f"no folder {folder}")
  return [name.rstrip("/") for name in gfile.listdir(folder)]


def scheduled_spans(available: Sequence[int], scheduled_date: str,
                    days: int) -> Tuple[int, ...]:
  """The window of a scheduled run: the spans of the ``days`` days ending with
  ``scheduled_date`` (YYYYMMDD; ``latest`` or empty: the newest available span).

  Args:
    available: the data root's spans, oldest first (``window_runs.available_spans``).
    scheduled_date: the run's ``scheduled_date`` parameter.
    days: N, the calendar days of the window.

  Returns:
    The window's spans, oldest first.

  Raises:
    ValueError: no span at all, a malformed date, or no span for the scheduled date
      (a day whose data has not landed must fail the run, not train on older days).
  """
  if not available:
    raise ValueError("no span folders (examples/span-YYYYMMDD) in the data root")
  if scheduled_date in ("", LATEST):
    return window_runs.window(available[-1], available, days)
  if len(scheduled_date) != 8 or not scheduled_date.isdigit():
    raise ValueError(f"{SCHEDULED_DATE} must be YYYYMMDD or {LATEST!r}, got "
                     f"{scheduled_date!r}")
  span = int(scheduled_date)
  if span not in available:
    raise ValueError(f"no {window_runs.span_name(span)} in the data root for the scheduled "
                     f"date; the newest span is {window_runs.span_name(available[-1])}")
  return window_runs.window(span, available, days)


def assemble(data_root: str, scheduled_date: str, days: int, examples_uri: str
             ) -> Tuple[int, ...]:
  """Copies the window's files under ``examples_uri/Split-<split>/``.

  Args:
    data_root: the dataset's root (local or an object store).
    scheduled_date: YYYYMMDD or ``latest`` (:func:`scheduled_spans`).
    days: N, the calendar days of the window.
    examples_uri: the output Examples artifact's directory.

  Returns:
    The window's spans, oldest first.
  """
  gfile = _gfile()
  spans = scheduled_spans(window_runs.available_spans(data_root, gfile_listdir),
                          scheduled_date, days)
  files = window_runs.window_files(data_root, spans, gfile_listdir)
  for split in SPLITS:
    if not any(f.split == split for f in files):
      raise ValueError(f"the window {', '.join(map(window_runs.span_name, spans))} has no "
                       f"{split} files")
    gfile.makedirs(os.path.join(examples_uri, f"Split-{split}"))
  for f in files:
    gfile.copy(f.source, os.path.join(examples_uri, f"Split-{f.split}", f.name),
               overwrite=True)
  return spans


@tfx.dsl.components.component
def WindowExampleGen(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.OutputArtifact[standard_artifacts.Examples],
    data_root: tfx.dsl.components.Parameter[str],
    window_days: tfx.dsl.components.Parameter[int],
    scheduled_date: tfx.dsl.components.Parameter[str] = LATEST):
  """Writes the Examples of the window ending with ``scheduled_date`` (see the module)."""
  spans = assemble(data_root, scheduled_date, window_days, examples.uri)
  examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
  examples.span = spans[-1]
  examples.set_string_custom_property(WINDOW_SPANS,
                                      ",".join(map(window_runs.span_name, spans)))
  examples.set_int_custom_property(WINDOW_DAYS, window_days)


def create(data_root: str, window_days: int) -> base_component.BaseComponent:
  """The component, with the scheduled date as the pipeline's runtime parameter.

  Args:
    data_root: the dataset's root (holds ``examples/span-YYYYMMDD/``).
    window_days: N, the calendar days of the window.

  Returns:
    The ``WindowExampleGen`` node, id ``WindowExampleGen``.
  """
  if window_days < 1:
    raise ValueError(f"window_days must be >= 1, got {window_days}")
  date = tfx.dsl.experimental.RuntimeParameter(name=SCHEDULED_DATE, ptype=str,
                                                default=LATEST)
  return WindowExampleGen(data_root=data_root, window_days=window_days,
                          scheduled_date=date).with_id(COMPONENT_ID)
