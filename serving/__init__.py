"""Melody's serving side: the exported signatures (an explicit ``tf.Module``), export with
warmup records and model-server configs, the TF Serving-compatible local gRPC server, and
the client.

It neither retrains nor re-implements model math; it calls ``ranking``.
"""
import keras_guard as _keras_guard

from serving import grpc_env as _grpc_env

_keras_guard.ensure_legacy_keras()
_grpc_env.prefer_polling_io()   # before anything imports grpc: see serving/grpc_env.py
