"""The ``melody`` console script: dispatches to the packages' own command modules."""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
