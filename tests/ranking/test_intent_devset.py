"""The HetRec phrase development set: phrases real users wrote, mapped onto tags that exist
in MTG-Jamendo, split by phrase into a tune half and a reported dev half, judged on
test-split tracks only."""

import numpy as np

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
from bench import intent_eval
from features.datasets import hetrec_phrases
from features.datasets import jamendo_splits
from features.datasets import registry
from ranking.intent import catalog as catalog_lib
from ranking.intent import lexicon


def test_split_is_by_phrase_and_stable():
  splits = {p: hetrec_phrases.split_of(p) for p in hetrec_phrases.PHRASES}
  assert set(splits.values()) == set(hetrec_phrases.SPLITS)
  assert splits == {p: hetrec_phrases.split_of(p) for p in hetrec_phrases.PHRASES}
  assert min(list(splits.values()).count(s) for s in hetrec_phrases.SPLITS) >= 40


def test_query_types_follow_the_mapped_tag_categories():
  cats = {"sad": "mood", "melancholic": "mood", "piano": "instrument", "rock": "genre"}
  assert intent_eval.query_type([("sad", "melancholic")], cats) == "mood-only"
  assert intent_eval.query_type([("piano",)], cats) == "instrument"
  assert intent_eval.query_type([("rock",)], cats) == "genre"
  assert intent_eval.query_type([("rock",), ("piano",)], cats) == "multi-tag"
  top = np.array([[0, 1, 2], [2, 1, 0]])
  rel = np.array([[True, False, True], [False, False, False]])
  np.testing.assert_allclose(intent_eval.precision_at(top, rel, k=2), [0.5, 0.0])


def test_phrases_are_written_by_users_and_map_onto_jamendo_tags(shared_data):
  phrases = hetrec_phrases.load(shared_data)
  users = hetrec_phrases.phrase_users(shared_data)
  assert len(phrases) >= 120 and (phrases["users"] >= 2).all()
  assert all(users[p] == n for p, n in zip(phrases["phrase"], phrases["users"]))
  _, jam, _ = registry.load("jamendo", shared_data)
  vocab = {catalog_lib.tag_key(t) for tags in jam["tags"] for t in tags}
  mapped = {t for clauses in phrases["clauses"] for c in clauses for t in c}
  assert mapped <= vocab, sorted(mapped - vocab)
  # Colloquial phrases are in, and most share no word with the tags they map to.
  assert {"rainy day", "makes me wanna dance", "drum n bass", "melancholy"} <= set(
      phrases["phrase"])
  assert len(set(lexicon.MOOD_THEME_TAGS) & vocab) >= 50


def test_dev_sets_are_judged_on_test_split_tracks(shared_data):
  _, jam, _ = registry.load("jamendo", shared_data)
  jam = jamendo_splits.with_splits(jam, shared_data)
  test = catalog_lib.mixed_catalog(jam, n_jamendo=2000, seed=0, splits=("test",))
  assert set(test["split"]) == {"test"}
  sets = intent_eval.phrase_sets(shared_data, test)
  assert set(sets) == {"tune", "dev"}
  assert not set(sets["tune"].texts) & set(sets["dev"].texts)
  for s in sets.values():
    assert s.relevant.shape == (len(s.texts), len(test)) and s.relevant.any(axis=1).all()
    assert set(s.types) <= set(intent_eval.QUERY_TYPES)
