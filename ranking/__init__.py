"""Melody's model code: Keras layers (embeddings, Transformer sequence encoder, MMoE/PLE,
towers, fusion, mixing), tasks and loss weighting, the multi-task ranking model, and
``ranking/intent`` (text encoder, tokenizer, dual encoder).

It reads no files and knows nothing of TFX; inputs come from ``features.feature_spec``.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
