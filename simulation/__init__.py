"""Melody's offline world: a seeded, calibrated simulator of listeners, tracks and context
(the ground truth), policy rollouts, off-policy estimators, bandits and reports.

It reaches the model only through its exported signatures.
"""
import keras_guard as _keras_guard

_keras_guard.ensure_legacy_keras()
