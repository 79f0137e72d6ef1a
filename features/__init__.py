"""Melody's data layer: the event schema, the feature spec (single source of truth for
names, dtypes, vocabulary sizes, sequence lengths and label keys), adapters for the real
public datasets, events -> training examples (windows, labels, splits, TFRecord I/O, the
Beam job), the dataset directory writer and the TFT ``preprocessing_fn``.

It is the bottom layer: it must not import TFX orchestration, serving or simulation code
(the simulator feeds its events in from above, ``simulation.datagen``).
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
