"""Tests for request synthesis, tag canonicalisation, track text and retrieval metrics."""

import numpy as np
import pandas as pd
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
from features.datasets import jamendo_splits
from features.datasets import registry
from ranking.intent import catalog as catalog_lib
from ranking.intent import evaluation
from ranking.intent import intents
from ranking.intent import lexicon
from ranking.intent import synthesis
from simulation import world as world_lib
from simulation.world_config import WorldConfig


@pytest.fixture(scope="module")
def catalog():
  return world_lib.World(WorldConfig(n_tracks=400), seed=5).tracks


def test_tag_keys_merge_spellings_and_words_are_readable():
  assert catalog_lib.tag_key("genre---hiphop") == catalog_lib.tag_key("Hip-Hop") == "hiphop"
  assert catalog_lib.tag_category("mood/theme---relaxing") == "mood"
  assert catalog_lib.tag_category("instrument---piano") == "instrument"
  assert catalog_lib.tag_category("female vocalists") == "style"
  assert catalog_lib.tag_words("genre---drumnbass") == "drum and bass"
  assert catalog_lib.tag_words("instrument---acousticguitar") == "acoustic guitar"


def test_track_text_keeps_every_tag_and_leaves_the_title_to_its_own_field():
  tags = [f"genre---g{n}" for n in range(20)] + ["instrument---electricguitar", "genre---g0"]
  text = catalog_lib.track_text(tags, "Flamenco (Radio Edit) by Someone")
  assert text == ", ".join([f"g{n}" for n in range(20)] + ["electric guitar"])
  assert catalog_lib.track_text([], "Only Title") == "Only Title"
  frame = pd.DataFrame({"tags": [["jazz"], []], "title": ["A", None]})
  assert catalog_lib.catalog_texts(frame) == ["jazz", ""]
  assert catalog_lib.catalog_titles(frame) == ["A", ""]


def test_every_catalog_tag_is_a_request_target(catalog):
  syn = synthesis.RequestSynthesizer(catalog, seed=0)
  counts = {}
  for keys in syn.tag_keys:
    for k in keys:
      counts[k] = counts.get(k, 0) + 1
  frequent = {k for k, c in counts.items() if c >= syn.config.style_min_count}
  assert set(syn.target_tags) == frequent
  assert {"sad", "film", "relaxing"} <= set(syn.mood_tags)   # Jamendo mood/theme names
  assert all(p > 0 for p in np.concatenate([syn._style_p, syn._instr_p, syn._mood_p]))
  named = set()
  for r in syn.requests(4000, heldout=False):
    named |= {next(iter(c)) for c in r.clauses if len(c) == 1}
  assert len(frequent & named) >= 0.95 * len(frequent)


def test_heldout_phrasings_are_disjoint_from_training_phrasings():
  assert not set(lexicon.TRAIN_TEMPLATES) & set(lexicon.HELDOUT_TEMPLATES)


def test_requests_are_satisfiable_and_positives_match_their_intent(catalog):
  syn = synthesis.RequestSynthesizer(catalog, seed=0)
  train = syn.triplets(300, heldout=False, n_listeners=3)
  rel = intents.relevance(train.requests, syn.tag_keys)
  assert rel[np.arange(len(train)), train.track].all()
  assert set(train.track) <= set(syn.train_tracks)
  assert all(not r.heldout and lexicon.TRAIN_TEMPLATES[r.template] for r in train.requests)
  test = syn.triplets(100, heldout=True, n_listeners=3)
  assert set(test.track) <= set(syn.heldout_tracks)
  assert all(r.heldout for r in test.requests)
  assert not set(syn.train_tracks) & set(syn.heldout_tracks)


def test_negated_tags_exclude_tracks(catalog):
  syn = synthesis.RequestSynthesizer(catalog, seed=1)
  reqs = [r for r in syn.requests(400, heldout=False) if r.negated]
  assert reqs, "templates with {neg} must produce negated requests"
  rel = intents.relevance(reqs, syn.tag_keys)
  for r, row in zip(reqs, rel):
    for n in np.flatnonzero(row):
      assert not r.negated & syn.tag_keys[n]
      assert all(c & syn.tag_keys[n] for c in r.clauses)


def test_synthesis_is_deterministic_per_seed(catalog):
  a = synthesis.RequestSynthesizer(catalog, seed=4).triplets(50, n_listeners=2)
  b = synthesis.RequestSynthesizer(catalog, seed=4).triplets(50, n_listeners=2)
  c = synthesis.RequestSynthesizer(catalog, seed=5).triplets(50, n_listeners=2)
  assert a.texts == b.texts and np.array_equal(a.track, b.track)
  assert a.texts != c.texts


def test_interest_steers_the_positive_draw(catalog):
  syn = synthesis.RequestSynthesizer(catalog, seed=2)
  interest = np.zeros((2, len(catalog)))
  interest[0, ::2] = 3.0       # listener 0 loves even rows
  interest[1, 1::2] = 3.0      # listener 1 loves odd rows
  t = syn.triplets(400, interest=interest)
  even = (t.track % 2 == 0)
  assert even[t.listener == 0].mean() > 0.8
  assert even[t.listener == 1].mean() < 0.2
  with pytest.raises(ValueError, match="interest"):
    syn.triplets(5, interest=np.zeros((2, 3)))


def test_intent_match_grades_clauses_and_zeroes_negations():
  keys = [frozenset({"rock", "piano"}), frozenset({"rock"}), frozenset({"jazz", "sad"})]
  req = intents.Request("x", (frozenset({"rock"}), frozenset({"piano"})), frozenset({"sad"}),
                        0, False)
  got = intents.intent_match([req], keys, np.array([[0, 1, 2, -1]]))
  np.testing.assert_allclose(got, [[1.0, 0.5, 0.0, 0.0]])


def test_config_validation_names_bad_values():
  with pytest.raises(ValueError, match="heldout_track_fraction"):
    synthesis.SynthConfig(heldout_track_fraction=1.0)
  with pytest.raises(ValueError, match="min_relevant"):
    synthesis.SynthConfig(min_relevant=0)


def test_capped_recall_and_ndcg_against_hand_computed_values():
  relevant = np.zeros((2, 6), bool)
  relevant[0, [0, 3]] = True        # 2 relevant
  relevant[1, [1, 2, 4, 5]] = True  # 4 relevant
  top = np.array([[3, 1, 0], [0, 1, 2]])
  m = evaluation.retrieval_metrics(top, relevant, ks=(2, 3), ndcg_k=2)
  assert m["recall@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
  assert m["recall@3"] == pytest.approx((2 / 2 + 2 / 3) / 2)
  ideal = 1 + 1 / np.log2(3)
  assert m["ndcg@2"] == pytest.approx((1 / ideal + (1 / np.log2(3)) / ideal) / 2)


def test_exact_top_k_orders_best_first():
  rng = np.random.default_rng(0)
  q, items = rng.normal(size=(3, 4)), rng.normal(size=(20, 4))
  top = evaluation.exact_top_k(q, items, 5)
  np.testing.assert_array_equal(top, np.argsort(-(q @ items.T), axis=1)[:, :5])


def test_real_jamendo_and_hetrec_catalog_yields_requests(shared_data):
  _, jam, _ = registry.load("jamendo", shared_data)
  _, het, _ = registry.load("hetrec", shared_data)
  jam = jamendo_splits.with_splits(jam, shared_data)
  cat = catalog_lib.mixed_catalog(jam, het, n_jamendo=500, n_hetrec=100, seed=0)
  assert len(cat) == 600
  assert set(cat["split"].iloc[:500]) <= {"train", "validation"}
  syn = synthesis.RequestSynthesizer(cat, seed=0)
  assert len(syn.instruments) > 5 and len(syn.mood_tags) > 5
  t = syn.triplets(100, heldout=True)
  assert intents.relevance(t.requests, syn.index).sum(1).min() >= syn.config.min_relevant


def test_fixture_catalog_from_a_fresh_clone(fixtures_dir):
  _, jam, _ = registry.load("jamendo", fixtures_dir + "/jamendo")
  texts = catalog_lib.catalog_texts(jam)
  assert len(texts) == len(jam) and all(isinstance(t, str) for t in texts)
  assert any("," in t for t in texts)
