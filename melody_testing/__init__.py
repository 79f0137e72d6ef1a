"""Test support: synthetic transformed batches, toy event tables, a toy SavedModel for the
model server, and the plain-Python reference of the mixing rules.

Tests, benchmarks and development scripts use it; no production package imports it
(``.importlinter`` forbids that). It may import any production package below ``online``.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
