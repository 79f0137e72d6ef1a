"""Turns a failed local run into a message a user can act on.

A component failure surfaces as the exception of whatever library failed, often
wrapped by Beam and TFX and preceded by a long traceback. :func:`describe` keeps the
root cause's first line, prefixed by the component that failed (or the shard check's
message, which names the shard, when that check stopped the run before TFX started),
and points to the run's log file, which holds the full traceback.
:meth:`PipelineRunError.report` is what the CLI prints: the one-line cause first and
last, the details and the log path between.
"""

from typing import List, Sequence

from pipeline import shard_check

_MAX_DETAIL_LINES = 20
_MAX_LINE_CHARS = 400


class PipelineRunError(RuntimeError):
  """A local pipeline run failed.

  Attributes:
    cause: one line: where it failed and why.
    details: further lines of the root cause's message (e.g. one per anomaly).
    log_path: the run's log file with the full traceback.
    node: the component that failed ('' when the run stopped before TFX ran).
  """

  def __init__(self, cause: str, details: Sequence[str], log_path: str, node: str = ""):
    self.cause = cause
    self.details = list(details)
    self.log_path = log_path
    self.node = node
    super().__init__("\n".join([cause] + self.details + [f"full log: {log_path}"]))

  def report(self) -> str:
    """The CLI's error block: the cause first and last."""
    lines = [f"error: {self.cause}"]
    lines += [f"  {d}" for d in self.details]
    lines += [f"  full traceback in {self.log_path}", f"error: {self.cause}"]
    return "\n".join(lines)


def chain(exc: BaseException) -> List[BaseException]:
  """``exc`` and the exceptions behind it (explicit causes first, then contexts)."""
  out, seen = [], set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    out.append(exc)
    exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
  return out


def _lines(exc: BaseException) -> List[str]:
  lines = [line.rstrip() for line in str(exc).strip().splitlines() if line.strip()]
  return [line if len(line) <= _MAX_LINE_CHARS else line[:_MAX_LINE_CHARS] + " …"
          for line in lines] or [type(exc).__name__]


def describe(exc: BaseException, node: str, log_path: str) -> PipelineRunError:
  """The error to raise for a run that ended with ``exc``.

  Args:
    exc: what the run raised.
    node: the component ML Metadata shows as failed ('' if none).
    log_path: the run's log file.
  """
  causes = chain(exc)
  data_problem = next((e for e in causes if isinstance(e, shard_check.ShardError)), None)
  if data_problem is not None:
    return PipelineRunError(str(data_problem), [], log_path)
  root = causes[-1]
  lines = _lines(root)
  where = f" in {node}" if node else ""
  cause = f"pipeline run failed{where}: {type(root).__name__}: {lines[0]}"
  details = lines[1:1 + _MAX_DETAIL_LINES]
  if len(lines) > 1 + _MAX_DETAIL_LINES:
    details.append(f"… {len(lines) - 1 - _MAX_DETAIL_LINES} more lines in the log")
  return PipelineRunError(cause, details, log_path, node)

