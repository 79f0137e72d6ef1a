"""Keras layers of the ranking model, one idea per module.

``embeddings`` (shared id tables), ``sequence_encoder`` (Transformer over the long-term
history), ``session_encoder`` (short-term session), ``target_attention`` (candidate-aware
attention over the encoded history), ``experts`` (a batched bank of MLP experts),
``mmoe`` / ``ple`` / ``shared_bottom`` (the multi-task mixtures, chosen by config),
``towers`` (one tower per task) and ``mixing`` (the list rules after fusion). Score
fusion has its own package, ``ranking.fusion``.
"""
