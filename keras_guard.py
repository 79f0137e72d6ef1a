"""Makes TensorFlow load Keras 2 (tf-keras) everywhere in Melody.

TFRS 0.7.7, TensorFlow Transform and TFMA need ``tf.keras`` to be tf-keras (Keras 2).
TensorFlow picks the Keras flavour once, when it is first imported, from the
``TF_USE_LEGACY_KERAS`` environment variable. Every Melody package, the CLI and the
tests call :func:`ensure_legacy_keras` before anything imports TensorFlow; the venv
also carries a ``.pth`` file that sets the variable for every interpreter (Beam and
TFX subprocesses included), see ``scripts/setup_env.sh``.
"""

import os
import sys

_VAR = "TF_USE_LEGACY_KERAS"


def ensure_legacy_keras() -> None:
  """Sets ``TF_USE_LEGACY_KERAS=1``; fails loudly if it is already too late.

  Raises:
    RuntimeError: TensorFlow was imported before with Keras 3 selected, so Keras 2
      can no longer take effect in this process.
  """
  if os.environ.get(_VAR) != "1":
    if "tensorflow" in sys.modules:
      raise RuntimeError(
          f"TensorFlow was imported before {_VAR}=1 was set, so tf.keras is Keras 3. "
          "Import a melody package (or keras_guard) before tensorflow, or export "
          f"{_VAR}=1.")
    os.environ[_VAR] = "1"
