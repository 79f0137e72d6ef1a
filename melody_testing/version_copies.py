"""A SavedModel version copied under a base path of its own, with server configs.

Tests that serve or extend an exported version the session already built copy it here
instead of exporting again: the copy is the only version under its base path, and the
``models.config`` (with ``batching_parameters.txt`` and ``monitoring.config``) beside the
base path points at it, as ``serving.export.export_serving_model`` leaves a first version.
"""

import os
import shutil
from typing import Dict, Optional

FIRST_VERSION_LABELS = {"stable": 1, "canary": 1}


def copy_as_first_version(version_dir: str, base_dir: str, model_name: str = "",
                          labels: Optional[Dict[str, int]] = None) -> str:
  """Copies ``version_dir`` to ``base_dir/1`` and writes the server configs beside it.

  Args:
    version_dir: an exported SavedModel version (left untouched).
    base_dir: the new base path (must not hold a version 1 yet).
    model_name: the served name; default ``basename(base_dir)``.
    labels: version labels; default both ``stable`` and ``canary`` on version 1.

  Returns:
    The copied version directory ``base_dir/1``.
  """
  from serving import export  # pylint: disable=g-import-not-at-top
  base_dir = os.path.abspath(base_dir)
  copied = shutil.copytree(version_dir, os.path.join(base_dir, "1"))
  export.write_configs(base_dir, model_name or os.path.basename(base_dir),
                       dict(labels or FIRST_VERSION_LABELS))
  return copied
