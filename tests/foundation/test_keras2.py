"""The Keras 2 guard: tf.keras is tf_keras everywhere, and TFRS imports on top of it."""

import os
import subprocess
import sys

import keras_guard


def test_tf_keras_is_keras2():
  import tensorflow as tf
  assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
  assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
  import tf_keras
  assert tf_keras.__version__.startswith("2."), tf_keras.__version__
  assert tf.keras.layers.Dense is tf_keras.layers.Dense


def test_tfrs_imports_on_keras2():
  import tensorflow as tf
  import tensorflow_recommenders as tfrs
  model = tfrs.Model()
  assert isinstance(model, tf.keras.Model)


def test_guard_in_fresh_interpreter_without_env():
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  code = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None); import features; "
          "import tensorflow as tf; print(tf.keras.__name__)")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True, timeout=300).stdout
  assert out.strip().startswith("tf_keras")


def test_guard_refuses_when_tensorflow_came_first():
  code = ("import os; os.environ.pop('TF_USE_LEGACY_KERAS', None); import tensorflow; "
          "import keras_guard; keras_guard.ensure_legacy_keras()")
  proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                        timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
  assert proc.returncode != 0
  assert "TF_USE_LEGACY_KERAS" in proc.stderr
