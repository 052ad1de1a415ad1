"""The model-collapse benchmark's machinery: the trigram LM, and two generations of all three policies.

Runs on a slice of the shipped demo corpus (examples/corpus/wikitext.jsonl.gz), so it needs no ../shared/data;
the full benchmark is benchmarks/collapse/run.py.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pytest

from benchmarks.collapse.lm import TrigramLM, Vocabulary
from benchmarks.collapse.run import (distinct_n, fresh_for, load_paragraphs, run_experiment,
                                     verdict)
from tests.conftest import EXAMPLES

FIXTURE = EXAMPLES / "corpus" / "wikitext.jsonl.gz"


def _tiny_model(weights=None):
    paragraphs = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["a", "cat", "ran"]]
    vocabulary = Vocabulary({t for p in paragraphs for t in p} | {"zebra"})
    return vocabulary, TrigramLM(vocabulary, [vocabulary.encode(p) for p in paragraphs], weights)


def test_distributions_sum_to_one_in_every_context():
    vocabulary, model = _tiny_model()
    words = np.arange(1, len(vocabulary))  # everything a model may predict: all but the paragraph start
    for u, v in [("<s>", "<s>"), ("<s>", "the"), ("the", "cat"), ("cat", "zebra"), ("zebra", "zebra")]:
        u_ids = np.full(len(words), vocabulary.index[u])
        v_ids = np.full(len(words), vocabulary.index[v])
        assert model.probabilities(u_ids, v_ids, words).sum() == pytest.approx(1.0)


def test_unseen_word_keeps_a_small_floor_and_weights_scale_counts():
    vocabulary, model = _tiny_model()
    zebra = vocabulary.index["zebra"]
    assert 0 < model.unigram[zebra] < 0.01
    _, heavy = _tiny_model(weights=[1.0, 10.0, 1.0])
    dog = vocabulary.index["dog"]
    assert heavy.unigram[dog] > 2 * model.unigram[dog]


def test_sampling_is_seeded_and_matches_the_model():
    vocabulary, model = _tiny_model()
    first = model.sample(2000, np.random.default_rng(7))
    again = model.sample(2000, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    assert sum(map(len, first)) >= 2000
    # "the" is followed by "cat" or "dog" in training; after <s> <s> the model starts with "the" 2/3 of the
    # time (less the backoff mass), and never with the paragraph start token.
    starts = Counter(int(p[0]) for p in first if len(p))
    assert starts[vocabulary.index["the"]] > starts[vocabulary.index["a"]]
    assert 0 not in {int(t) for p in first for t in p}


def test_distinct_n_counts_unique_ngrams_within_paragraphs():
    paragraphs = [np.array([1, 2, 1, 2]), np.array([1, 2])]
    assert distinct_n(paragraphs, 1) == pytest.approx(2 / 6)
    assert distinct_n(paragraphs, 2) == pytest.approx(2 / 4)  # (1,2), (2,1), (1,2) | (1,2)


def test_fresh_slices_are_disjoint_consecutive_and_sized():
    corpus = [[f"w{i}"] * 10 for i in range(100)]
    first, second = fresh_for(corpus, 1, 95), fresh_for(corpus, 2, 95)
    assert first == corpus[:10] and second == corpus[10:20]
    with pytest.raises(ValueError):
        fresh_for(corpus, 11, 95)


@pytest.fixture
def tiny_corpus(tmp_path):
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as stream:
        paragraphs = [line for record in stream for line in json.loads(record)["text"].splitlines()
                      if line.strip() and not line.startswith("= ")]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"text": "\n".join(paragraphs[:150])}) + "\n", encoding="utf-8")
    test.write_text(json.dumps({"text": "\n".join(paragraphs[150:220])}) + "\n", encoding="utf-8")
    return train, test


def test_two_generations_of_every_policy(tiny_corpus, tmp_path):
    train, test = tiny_corpus
    assert len(load_paragraphs(train)) == 150
    report = run_experiment(train, test, generations=2, workdir=tmp_path / "work", seed=3, log=lambda _: None)
    results = report["results"]
    assert set(results) == {"replace", "accumulate", "tailguard"}
    assert all(len(rows) == 3 for rows in results.values())
    assert len({rows[0]["perplexity"] for rows in results.values()}) == 1  # one shared generation 0
    for rows in results.values():
        assert all(np.isfinite(r["perplexity"]) and r["perplexity"] > 1 for r in rows)
    # Replace trains on samples only, so rare words drop out of its training data; accumulate keeps them all.
    assert results["replace"][2]["rare_in_training_data"] < 1.0
    assert results["accumulate"][2]["rare_in_training_data"] == 1.0
    assert results["accumulate"][2]["training_tokens"] > 2.5 * results["replace"][2]["training_tokens"]
    # Tailguard: the first run sees human text and samples; the second re-crawls the human text, which
    # dedup rejects against the previous snapshot it carries forward.
    first, second = (row["tailguard"] for row in results["tailguard"][1:])
    assert 0 < first["train_synthetic_documents"] < first["train_documents"]
    assert second["train_documents"] > first["train_documents"]
    assert second["rejected_by_reason"].get("wikitext_human:exact_duplicate", 0) > 0
    assert second["anchor_token_share"] >= 0.2 - 1e-6
    assert set(verdict(report)) == set(results)
