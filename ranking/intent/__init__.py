"""Text intent: requests in the listener's own words -> catalog candidates.

``tokenizer`` (in-graph WordPiece), ``checkpoint`` (pretrained BERT-family weights),
``text_encoder`` (tf_keras BERT + mean pooling), ``catalog`` (tag keys and track texts),
``lexicon`` (mood words, situations, phrasing templates), ``intents`` (a request's
intent and which tracks satisfy it), ``synthesis`` (request/track triplets synthesized
from real tags), ``dual_encoder`` (request and track towers, contrastive fine-tuning),
``preference`` (GRPO-style hybrid-reward optimization), ``evaluation`` (retrieval
metrics) and ``retrieval`` (``IntentCandidates``: the in-graph top-k retrieval the
serving export embeds).
"""
