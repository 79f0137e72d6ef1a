"""The gateway's policy file: a ``policy.json`` applied per request, reloaded on change.

This module owns :class:`PolicySource`, how ``melody gateway --policy FILE`` applies a
newer policy without a model push: the file is validated on start (a bad one stops the
gateway), then checked for changes (modification time and size) at most once per
``check_every_s``; a changed file that validates replaces the policy, one that does not
is logged and the policy in force stays. The gateway sends the policy's row for the
listener's segment and the request's context as the per-request ``alpha_beta_gamma``
override, so only the weights apply this way; epsilon and the mixing rules are baked
into the model by ``melody export --policy``.
"""

import logging
import os
import threading
import time
from typing import Callable, Optional, Tuple

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
    if check_every_s < 0:
      raise ValueError(f"check_every_s must be >= 0, got {check_every_s}")
    self.path, self.check_every_s, self._clock = path, check_every_s, clock
    self._lock = threading.Lock()
    self._stamp = self._file_stamp()
    self._policy = policy_file.load(path)
    self._checked = clock()
    self.rejected = 0   # changed files that failed validation
    _LOG.info("policy %s from %s", self._policy.version, path)

  def _file_stamp(self) -> Optional[Tuple[int, int]]:
    try:
      st = os.stat(self.path)
    except OSError:
      return None
    return st.st_mtime_ns, st.st_size

  def current(self) -> policy_file.PolicyFile:
    """The policy in force, after a reload if the file changed since the last look."""
    now = self._clock()
    if now - self._checked < self.check_every_s:
      return self._policy
    with self._lock:
      if now - self._checked < self.check_every_s:
        return self._policy
      self._checked = now
      stamp = self._file_stamp()
      if stamp is not None and stamp != self._stamp:
        self._stamp = stamp
        try:
          policy = policy_file.load(self.path)
        except policy_file.PolicyError as e:
          self.rejected += 1
          _LOG.error("policy file rejected, %s stays in force: %s", self._policy.version, e)
        else:
          if policy.version != self._policy.version:
            _LOG.info("policy %s replaces %s", policy.version, self._policy.version)
          self._policy = policy
    return self._policy
