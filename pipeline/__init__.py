"""Melody's TFX pipeline: ``create_pipeline()`` (pure wiring), the Trainer ``run_fn``s,
the TFMA evaluation config, and the runners (local LocalDagRunner with SQLite ML
Metadata, Kubeflow V2 spec) and scheduling.

It holds no model math: that lives in ``ranking``.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
