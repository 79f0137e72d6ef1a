"""Text intent: requests in the listener's own words -> catalog candidates.

``tokenizer`` (in-graph WordPiece), ``checkpoint`` (pretrained BERT-family weights),
``text_encoder`` (tf_keras BERT + mean pooling), ``data`` (request/track triplets
synthesized from real tags), ``dual_encoder`` (request and track towers, contrastive
fine-tuning), ``preference`` (GRPO-style hybrid-reward optimization) and ``serving``
(``IntentCandidates``: the module the serving export embeds).
"""
