"""Melody's benchmarks (`make bench`): each module measures against a baseline run in the
same process and writes ``bench/results/<name>.json``."""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
