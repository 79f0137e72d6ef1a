"""Melody's online layer: the listener state store (SQLite or Redis), the nearline
updater that applies play events to it in micro-batches, and the recommendation gateway
that turns a listener id into a model request over the TF Serving API.

It holds no model math (the model server runs the exported signatures) and imports
nothing above ``serving`` in the layer order.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
