"""The input of sequence-level training: transformed TFRecords as batches of chunks.

``TrainConfig.sequence_level`` trains on sequence examples
(``features.sequence_examples``), which need every impression of a listener at once to
rebuild their order. This module reads a split's transformed examples into memory,
builds the chunks (``HISTORY_LEN`` impressions each) and serves them as a shuffled,
repeated ``tf.data`` dataset; the per-impression input stays ``trainer.input_fn``.
"""

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from features import feature_spec
from features import sequence_examples


def read_arrays(files: List[str], spec: Dict[str, object],
                batch: int = 4096) -> Dict[str, np.ndarray]:
  """Every transformed example of gzip TFRecord ``files`` as numpy arrays by name."""
  parts = []
  for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch):
    parts.append({k: v.numpy() for k, v in tf.io.parse_example(raw, spec).items()})
  if not parts:
    raise ValueError(f"no examples in {files}")
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sequence_dataset(files: List[str], spec: Dict[str, object], batch_size: int,
                     context: int, seed: int = 7) -> Tuple[tf.data.Dataset, float]:
  """Batches of sequence examples of the transformed examples in ``files``.

  Args:
    files: gzip TFRecord files of transformed examples.
    spec: ``TFTransformOutput.transformed_feature_spec()``.
    batch_size: impression rows a step is sized for; a batch holds
      ``max(1, batch_size // HISTORY_LEN)`` chunks.
    context: ``TrainConfig.sequence_context``.
    seed: shuffle seed.

  Returns:
    ``(dataset, impressions trained per step on average)``.
  """
  sequences = sequence_examples.build(read_arrays(files, spec), feature_spec.HISTORY_LEN,
                                      context)
  chunks = max(1, batch_size // feature_spec.HISTORY_LEN)
  chunks = min(chunks, len(sequences[sequence_examples.STEP_VALID]))
  per_chunk = float(np.mean(sequences[sequence_examples.STEP_WEIGHT].sum(axis=1)))
  return (sequence_examples.sequence_dataset(sequences, chunks, seed=seed),
          chunks * per_chunk)
