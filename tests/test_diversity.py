"""Collapse-risk metrics: the pure definitions, and the Beam transform checked against them on a small fixture."""

from __future__ import annotations

import collections
import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that

from tailguard.pipelines.config import build
from tailguard.transforms.diversity import (
    INPUT, ReportConfig, SnapshotMetrics, assemble, compression_ratio, distinct_n, drift_flags, in_sample,
    ngram_hashes, rare_vocabulary_coverage, sample_rate, tail_mass, threshold_name, top_words, trend_values,
    unigram_entropy, window_text, word_hashes)
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.text import words

# --------------------------------------------------------------------------------------------------- pure logic


def test_distinct_n_counts_ngrams_inside_documents_only():
    docs = [["a", "b", "a", "b"], ["b", "a"]]
    assert distinct_n(docs, 1) == pytest.approx(2 / 6)
    # bigrams: (a,b) (b,a) (a,b) | (b,a) -> 2 distinct of 4; no bigram spans the document boundary
    assert distinct_n(docs, 2) == pytest.approx(2 / 4)
    assert distinct_n(docs, 3) == pytest.approx(2 / 2)
    assert distinct_n([["a"]], 2) == 0.0


def test_hashed_ngrams_match_exact_distinct_counts():
    tokens = words("the cat sat on the mat and the cat sat on the hat while the dog sat on the mat " * 3)
    unigrams = word_hashes(tokens)
    for n in (1, 2, 3, 4):
        hashes = ngram_hashes(unigrams, n)
        assert hashes.size == len(tokens) - n + 1
        assert np.unique(hashes).size == len({tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)})
    # order matters: "a b" and "b a" are different bigrams
    ab, ba = ngram_hashes(word_hashes(["a", "b"]), 2), ngram_hashes(word_hashes(["b", "a"]), 2)
    assert ab[0] != ba[0]


def test_entropy_tail_and_coverage():
    assert unigram_entropy([5, 5, 5, 5]) == pytest.approx(2.0)
    assert unigram_entropy([10]) == 0.0
    counts = {"the": 50, "of": 30, "cat": 10, "zebra": 5, "quokka": 5}
    head = top_words(counts, 2)
    assert head == {"the", "of"}
    assert tail_mass(counts, head) == pytest.approx(20 / 100)
    train = {"the": 10, "cat": 1, "zebra": 2}
    assert rare_vocabulary_coverage(train, counts, head) == pytest.approx(2 / 3)
    # ties go to the larger word, as Top.Of with key (count, word) does
    assert top_words({"a": 1, "b": 1, "c": 1}, 2) == {"b", "c"}


def test_compression_ratio_rises_with_repetition():
    varied = " ".join(f"word{i * 7919 % 10007}" for i in range(400))
    repetitive = "the same sentence again. " * 100
    assert compression_ratio([repetitive]) > 3 * compression_ratio([varied])


def test_hash_sampling_is_stable_and_near_the_rate():
    ids = [f"doc{i}" for i in range(4000)]
    rate = sample_rate(len(ids), 1000)
    chosen = [i for i in ids if in_sample(i, rate)]
    assert chosen == [i for i in ids if in_sample(i, rate)]
    assert 850 < len(chosen) < 1150
    assert sample_rate(10, 1000) == 1.0 and all(in_sample(i, 1.0) for i in ids)


def test_drift_flags_steps_and_slow_creep():
    series = [("n1", {"tail_mass": 0.30, "synthetic_mean_score": 0.40}),
              ("n2", {"tail_mass": 0.29, "synthetic_mean_score": 0.42}),
              ("n3", {"tail_mass": 0.28, "synthetic_mean_score": 0.50})]
    flags = drift_flags(series, max_rise={"synthetic_mean_score": 0.05}, max_fall={"tail_mass": 0.015})
    found = {(f["metric"], f["against"]) for f in flags}
    # synthetic share jumped 0.08 in one step (and 0.10 since n1); the tail lost 0.01 per night: only the creep
    assert found == {("synthetic_mean_score", "previous"), ("synthetic_mean_score", "oldest"), ("tail_mass", "oldest")}
    creep = next(f for f in flags if f["metric"] == "tail_mass")
    assert creep["against_run_id"] == "n1" and creep["change"] == pytest.approx(-0.02)
    assert drift_flags(series[:1], {"tail_mass": 0.0}, {}) == []
    assert drift_flags(series, {}, {"tail_mass": 0.5}) == []


def test_config_names_the_bad_key():
    assert threshold_name(0.75) == "p75" and threshold_name(0.925) == "p92_5"
    config = build(ReportConfig, {"synthetic_thresholds": [0.6], "max_rise": {"synthetic_share_above_p60": 0.1}},
                   "report")
    assert "synthetic_share_above_p60" in config.trend_metrics()
    with pytest.raises(ConfigError, match="report.max_fall.tail_mas"):
        build(ReportConfig, {"max_fall": {"tail_mas": 0.1}}, "report")
    with pytest.raises(ConfigError, match=r"report.synthetic_thresholds\[0\]"):
        build(ReportConfig, {"synthetic_thresholds": [1.5]}, "report")
    with pytest.raises(ConfigError, match="report.max_tokens_per_document"):
        build(ReportConfig, {"max_tokens_per_document": 2}, "report")


# --------------------------------------------------------------------------------------------------- the transform

_VOCABULARY = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
               "upsilon phi chi psi omega river stone cloud field").split()


def fixture_documents() -> list[dict]:
    """Deterministic documents of every split: repeated phrasing, a Zipf-ish vocabulary, scores, weights."""
    docs = []
    for i in range(60):
        length = 20 + (i * 37) % 50
        common = (_VOCABULARY[(i * j * j + j) % (3 + i % (len(_VOCABULARY) - 3))] for j in range(length))
        text = " ".join(common) + f" rare{i} rare{i % 7}"  # a word of its own: the tail train can lose
        split = "train" if i % 5 else ("anchor_holdout" if i % 10 == 0 else "rejected")
        doc = {"doc_id": f"{i:032x}", "text": text, "split": split, "lang": ("en", "fr", "de")[i % 3],
               "synthetic_score": (i * 0.173) % 1.0, "dup_cluster_size": 1 + i % 4 if split == "train" else None,
               "is_anchor": i % 4 == 0}
        if split == "train":
            doc["sample_weight"] = 0.1 * (1 + i % 13)
        docs.append({k: v for k, v in doc.items() if v is not None})
    return docs


def direct_metrics(docs: list[dict], config: ReportConfig) -> dict:
    """The figures computed the plain way, straight from their definitions."""
    train = [d for d in docs if d["split"] == "train"]
    counts = {view: collections.Counter(w for d in members for w in words(d["text"]))
              for view, members in ((INPUT, docs), ("train", train))}
    head = top_words(counts[INPUT], config.tail_rank)
    out = {}
    for view, members in ((INPUT, docs), ("train", train)):
        rate = sample_rate(len(members), config.sample_size)
        sample = [d for d in members if in_sample(d["doc_id"], rate)]
        tokens = [words(d["text"])[: config.max_tokens_per_document] for d in sample]
        scores = [d["synthetic_score"] for d in members]
        out[view] = {
            "documents": len(members),
            "unigram_entropy": unigram_entropy(counts[view].values()),
            "tail_mass": tail_mass(counts[view], head),
            "rare_vocabulary_coverage": rare_vocabulary_coverage(counts[view], counts[INPUT], head),
            "sample_documents": len(sample),
            "compression_ratio": compression_ratio(window_text(t) for t in tokens),
            **{f"distinct_{n}": distinct_n(tokens, n) for n in (1, 2, 3, 4)},
            "share_above_p50": sum(s > 0.5 for s in scores) / len(scores),
            "mean_score": sum(scores) / len(scores),
            "anchors": sum(bool(d.get("is_anchor")) for d in members),
        }
    return out


def test_snapshot_metrics_match_direct_computation(beam_pipeline):
    docs = fixture_documents()
    config = ReportConfig(sample_size=30, tail_rank=8, max_tokens_per_document=40)
    expected = direct_metrics(docs, config)
    assert expected["train"]["sample_documents"] < expected["train"]["documents"]  # the sample is a real subset
    assert 0 < expected["train"]["rare_vocabulary_coverage"] < 1  # train lost part of the input's tail

    def check(items):
        metrics = assemble(items)
        for view in (INPUT, "train"):
            stats, vocab, sample = (metrics["documents"][view], metrics["vocabulary"][view],
                                    metrics["sample"][view])
            want = expected[view]
            assert stats["documents"] == want["documents"]
            assert stats["anchors"]["documents"] == want["anchors"]
            assert stats["synthetic"]["share_above"]["p50"] == pytest.approx(want["share_above_p50"])
            assert stats["synthetic"]["mean_score"] == pytest.approx(want["mean_score"])
            assert sum(stats["synthetic"]["histogram"]["counts"]) == want["documents"]
            for key in ("unigram_entropy", "tail_mass", "rare_vocabulary_coverage"):
                assert vocab[key] == pytest.approx(want[key]), (view, key)
            assert sample["documents"] == want["sample_documents"]
            for key in ("compression_ratio", "distinct_1", "distinct_2", "distinct_3", "distinct_4"):
                assert sample[key] == pytest.approx(want[key]), (view, key)
        train = metrics["documents"]["train"]
        assert train["cluster_sizes"] == {"1": 12, "2": 12, "3": 12, "4": 12}
        assert train["sample_weight"]["documents"] == 48 and train["sample_weight"]["min"] == pytest.approx(0.1)
        assert sum(train["languages"].values()) == 48
        assert metrics["documents"]["rejected"]["documents"] == 6
        values = trend_values(metrics, config.synthetic_thresholds)
        assert values["holdout_documents"] == 6 and values["train_documents"] == 48
        assert math.isclose(values["tail_mass"], expected["train"]["tail_mass"])

    with beam_pipeline() as p:
        items = p | beam.Create(docs) | SnapshotMetrics(config)
        assert_that(items, check)
