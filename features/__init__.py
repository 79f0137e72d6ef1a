"""Melody's data layer: the event schema, the feature spec (single source of truth for
names, dtypes, vocabulary sizes, sequence lengths and label keys), adapters for the real
public datasets, training-example writing and the TFT ``preprocessing_fn``.

It must not import TFX orchestration or serving code.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
