"""The gateway's policy file: a ``policy.json`` applied per request, reloaded on change.

This module owns :class:`PolicySource`, how ``melody gateway --policy FILE`` applies a
newer policy without a model push: the file is validated on start (a bad one stops the
gateway), then checked for changes (``online.file_watch``) at most once per
``check_every_s``; a changed file that validates replaces the policy, one that does not
is logged and the policy in force stays. The gateway sends the policy's row for the
listener's segment and the request's context as the per-request ``alpha_beta_gamma``
override, so only the weights apply this way; epsilon and the mixing rules are baked
into the model by ``melody export --policy``.
"""

import logging
import time
from typing import Callable

from online import file_watch
from ranking.fusion import policy_file

_LOG = logging.getLogger("melody.online.policy")


class PolicySource:
  """The current policy of a file, reloaded when the file changes.

  Args:
    path: the ``policy.json``.
    check_every_s: least seconds between two looks at the file.
    clock: monotonic seconds (tests pass their own).

  Raises:
    policy_file.PolicyError: the file is missing or invalid on start.
  """

  def __init__(self, path: str, check_every_s: float = 1.0,
               clock: Callable[[], float] = time.monotonic):
    self.path, self.check_every_s = path, check_every_s
    known = file_watch.stamp_of(path)
    self._policy = policy_file.load(path)
    self._watch = file_watch.FileWatch(path, check_every_s, clock, known=known,
                                       look_now=False)
    self.rejected = 0   # changed files that failed validation
    _LOG.info("policy %s from %s", self._policy.version, path)

  def current(self) -> policy_file.PolicyFile:
    """The policy in force, after a reload if the file changed since the last look
    (a file gone meanwhile keeps the policy in force)."""
    self._watch.look(self._reload)
    return self._policy

  def _reload(self) -> None:
    try:
      policy = policy_file.load(self.path)
    except policy_file.PolicyError as e:
      self.rejected += 1
      _LOG.error("policy file rejected, %s stays in force: %s", self._policy.version, e)
      return
    if policy.version != self._policy.version:
      _LOG.info("policy %s replaces %s", policy.version, self._policy.version)
    self._policy = policy
