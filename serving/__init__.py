"""Melody's serving side: the exported signatures (an explicit ``tf.Module``), export with
warmup records and model-server configs, the TF Serving-compatible local gRPC server, and
the client.

It neither retrains nor re-implements model math; it calls ``ranking``.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
