"""The ranking benchmark's learning curves: held-out quality of a few variants as training
goes on, to tell a model that has converged from one stopped early.

The curves never look at the eval split. Listeners of the training split are held out by
id (``holdout_listeners``) and their ids sent to the OOV buckets, as a listener unseen in
training would be at serving time (``ModelConfig.user_id_dropout`` trains those rows);
every variant trains on the rest and is scored on them after each checkpoint.
"""

from typing import Dict, List, Sequence

import numpy as np

from bench import common
from bench import ranking_models
from features import feature_spec

USER_KEY = feature_spec.xf("user_id")


def holdout_listeners(train: Dict[str, np.ndarray], percent: int = 15,
                      seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
  """Splits a training split by listener into ``fit`` and ``holdout`` arrays.

  The held-out listeners' ids go to the OOV bucket ``top_k + 1 + (id mod num_oov)``,
  where a listener unseen in training lands.

  Args:
    train: the training split's transformed arrays.
    percent: share of listeners held out.
    seed: which listeners (a hash of id and seed).

  Returns:
    ``{"train": arrays, "eval": arrays}`` (the held-out listeners under ``eval``).
  """
  if not 0 < percent < 100:
    raise ValueError(f"percent must be in (0, 100), got {percent}")
  users = np.asarray(train[USER_KEY]).reshape(-1).astype(np.int64)
  held = ((users * 2654435761 + seed * 97) % 100) < percent
  top_k, num_oov = feature_spec.VOCABS["user"]
  fit = {k: np.asarray(v)[~held] for k, v in train.items()}
  hold = {k: np.asarray(v)[held] for k, v in train.items()}
  ids = hold[USER_KEY].astype(np.int64)
  known = (ids >= 1) & (ids <= top_k)
  hold[USER_KEY] = np.where(known, top_k + 1 + ids % num_oov, ids).astype(
      train[USER_KEY].dtype)
  return {"train": fit, "eval": hold}


def learning_curves(data, models: Sequence[str], checkpoints: Sequence[int],
                    batch_size: int, seed: int,
                    covered: Dict[str, bool]) -> List[Dict[str, object]]:
  """Held-out metrics of every variant at every checkpoint (steps trained so far).

  Args:
    data: ``{"train": arrays, "eval": arrays}`` from :func:`holdout_listeners`.
    models: trainable variants of ``ranking_models.MODELS``.
    checkpoints: increasing step counts.
    batch_size, seed: the training batch and seed.
    covered: per head, whether it is measured.

  Returns:
    One row per (model, checkpoint): ``model``, ``steps`` and the covered heads' metrics.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  if list(checkpoints) != sorted(set(checkpoints)) or checkpoints[0] <= 0:
    raise ValueError(f"checkpoints must be increasing positive steps, got {checkpoints}")
  ev = tf.data.Dataset.from_tensor_slices(data["eval"]).batch(4096).with_options(
      ranking_models.fixed_options())
  rows = []
  for name in models:
    tf.keras.utils.set_random_seed(seed)
    model, labels = ranking_models.build(name, batch_size, seed)
    ds = ranking_models.dataset(data["train"], batch_size, seed)
    done = 0
    for steps in checkpoints:
      model.fit(ds, steps_per_epoch=steps - done, verbose=0)
      done = steps
      metrics = model.evaluate(ev, return_dict=True, verbose=0)
      row = {"model": name, "steps": steps}
      row.update({tasks.metric_name(h): float(metrics[tasks.metric_name(h)])
                  for h in labels if covered.get(h)})
      rows.append(row)
      common.log("ranking", f"curve {name} @ {steps}: " + ", ".join(
          f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
  return rows
