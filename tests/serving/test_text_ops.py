"""Exports with in-graph text tokenization load in a fresh process through
``serving.tensors.load_saved_model`` (which registers the tensorflow_text kernels)."""

import subprocess
import sys

import serving  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tensorflow_text as text


class _Normalizer(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def normalize(self, texts):
    return {"normalized": text.normalize_utf8(texts, "NFKC")}


def _loads_in_fresh_process(path, loader):
  code = (f"import serving\n{loader}\n"
          f"m = load({path!r})\n"
          "import tensorflow as tf\n"
          "print(m.signatures['serving_default'](text=tf.constant(['Caf\\u00e9']))"
          "['normalized'].numpy()[0].decode())")
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)


def test_text_op_exports_load_through_the_serving_loader(tmp_path):
  module = _Normalizer()
  path = str(tmp_path / "m")
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.normalize.get_concrete_function()})
  ok = _loads_in_fresh_process(path, "from serving.tensors import load_saved_model as load")
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert ok.stdout.strip().endswith("Café")
  bare = _loads_in_fresh_process(path, "import tensorflow as tf; load = tf.saved_model.load")
  assert bare.returncode != 0 and "not registered" in bare.stderr
