"""Changing a served model's version policy and labels while it serves.

This module owns :func:`reconfigure`, what a ``models.config`` reload does to one model
already served (TF Serving's ``HandleReloadConfigRequest``): the canary pushed beside
``stable``, the ``stable`` label moved to the canary's version, the ``canary`` label
dropped. The order keeps every label pointing to a loaded version: the versions the new
entry wants are loaded first (the old labels still in force), the new entry is swapped in
with one assignment (requests read it once), and only then are the versions it no longer
wants unloaded. Adding or removing models, or moving a model's base path, needs a restart.
"""

import dataclasses
import os
import threading

from serving import model_config
from serving import version_manager

_LOCK = threading.Lock()


def reconfigure(manager: version_manager.VersionManager,
                entry: model_config.ModelEntry) -> None:
  """Gives the served model ``entry.name`` the version policy and labels of ``entry``.

  Raises:
    ValueError: the model is not served, ``entry`` moves its base path, its policy selects
      no version present, or a label points to a version that is absent or failed to load
      (the old entry stays in force).
  """
  with _LOCK:
    model = manager.models.get(entry.name)
    if model is None:
      raise ValueError(f"model '{entry.name}' is not served; served models: "
                       f"{sorted(manager.models)} (adding a model needs a restart)")
    if os.path.abspath(entry.base_path) != model.base_path:
      raise ValueError(f"model '{entry.name}': the base path {entry.base_path} differs "
                       f"from {model.base_path} (moving it needs a restart)")
    old = model.entry
    wanted = set(entry.version_policy.select(model_config.list_versions(model.base_path)))
    if not wanted:
      raise ValueError(f"model '{entry.name}': the new version policy selects none of the "
                       f"versions under {model.base_path}")
    union = tuple(sorted(wanted | set(model.versions))) or (0,)
    model.entry = dataclasses.replace(
        old, version_policy=model_config.VersionPolicy("specific", versions=union))
    manager.poll()
    missing = sorted(set(entry.labels.values()) - set(model.versions))
    if missing:
      model.entry = old
      manager.poll()
      raise ValueError(f"model '{entry.name}': labelled versions {missing} did not load")
    model.entry = entry
    manager.poll()
