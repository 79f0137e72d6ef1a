"""Melody's serving side: the exported signatures (an explicit ``tf.Module``), export with
warmup records and model-server configs, the TF Serving-compatible local gRPC server, and
the client.

It neither retrains nor re-implements model math; it calls ``ranking``. Importing it
changes no process-wide setting beyond the Keras 2 guard; the gRPC I/O setting
(``serving.grpc_env``) is applied by the server's entry point and the client.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
