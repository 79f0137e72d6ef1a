"""Score fusion: one ranking score per candidate from the task heads.

This package owns how Melody trades listener interest against subscription conversion
and promotion exposure, once, for every caller (the serving graph, the simulator's
policies, the tests). The score of candidate ``n`` for listener ``b`` is

    S = alpha * S_int + beta * S_sub + gamma * S_exp + ctx + eps
    ctx = kappa[activity] * (2 * familiar - 1)
    eps = epsilon * novelty * u(seed, candidate_id)     (0 when seed < 0)

with ``(alpha, beta, gamma)`` looked up by segment (or by segment and activity, where
the config has a row for the pair) and overridable per request. The
default weight rows sum to 1, so when the heads live in [0, 1] the weighted part does
too and ``ctx`` and ``eps`` (a few hundredths) mean the same thing in every segment:
enough to reorder near-ties, never enough to bury a clearly better track.

Modules:

* ``spec``: :class:`~ranking.fusion.spec.FusionConfig` (weight table, kappa, epsilon,
  zero-beta segments), its validation, and the tables as arrays;
* ``policy``: :class:`~ranking.fusion.policy.Policy`, the versioned ``policy.json``
  artifact (weights per segment and context, epsilon, mixing rules, provenance), its
  strict loader, and its round trip to a ``FusionConfig`` and ``MixingConfig``;
* ``exploration``: the (seed, candidate id) hash, its constants, and the seeded bonus
  with its mask (TF and numpy side by side);
* ``kernel_tf``: the :class:`~ranking.fusion.kernel_tf.ScoreFusion` Keras layer;
* ``kernel_np``: :func:`~ranking.fusion.kernel_np.fuse`, the same contract in numpy;
* ``reasons``: the reason codes, the exploration threshold, and their string encoding;
* ``ordering``: the one order scores give a list (score desc, NaN as -inf, ties to the
  lower index, padding last), TF and numpy side by side.
"""
