"""Near-dedup: the pure pieces directly, then the whole stage on small synthetic corpora in Beam.

The corpora are generated here (seeded pseudo-words), so the tests need no data files: distinct documents
share no 5-word shingle by construction, and near copies are made by editing a known share of words.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import sys
import tempfile

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from datasketch import MinHashLSH

from tailguard.transforms.stage import INDEX
from tailguard.transforms.components import ConnectedComponents, star_label
from tailguard.transforms.dedup import (
    INDEX_SCHEMA,
    DedupConfig,
    NearDedup,
    candidate_pairs,
    decode_prefix,
    load_lean_minhashes,
    lsh_parameters,
    rank_key,
    rank_prefix,
)
from tailguard.transforms.minhash import (
    MinHasher,
    bottom_k,
    datasketch_minhash,
    estimated_jaccard,
    shingle_hashes,
    shingles,
    sketch_jaccard,
)
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.text import doc_id_for, normalize_text

# Worker processes of the multi_processing runner cannot import this test module; ship its helpers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "pe", "du", "zan", "qui", "bor", "fel", "gat", "hun"]


def vocabulary(size: int = 3000) -> list[str]:
    rng = random.Random(7)
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


VOCAB = vocabulary()


def base_text(seed: int, n_words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n_words))


def edited(text: str, fraction: float, seed: int) -> str:
    """``fraction`` of the words replaced by fresh ones (at least one)."""
    rng = random.Random(seed)
    tokens = text.split()
    for i in rng.sample(range(len(tokens)), max(1, round(len(tokens) * fraction))):
        tokens[i] = f"edit{seed}x{i}"
    return " ".join(tokens)


def make_doc(text: str, **fields) -> dict:
    normalised, _ = normalize_text(text)
    doc = {"doc_id": doc_id_for(normalised), "text": normalised, "source": "test", "source_uri": "mem://test",
           "source_offset": 0}
    doc.update(fields)
    return doc


def verified_human(doc: dict) -> bool:
    return "verified_human" in (doc.get("source_tags") or [])


# --- pure functions ------------------------------------------------------------------------------------------

def test_signatures_are_datasketch_signatures():
    hasher = MinHasher(num_perm=64, seed=3, ngram=5)
    texts = [base_text(1), edited(base_text(1), 0.05, 2), "one", "two words", "Ünïcödé wörds ñ 漢字 テキスト here"]
    for text, signature in zip(texts, hasher.signatures(texts)):
        expected = datasketch_minhash(text, num_perm=64, seed=3, ngram=5)
        assert expected.scheme == "affine32"
        np.testing.assert_array_equal(signature, expected.hashvalues)


def test_text_without_words_has_no_signature_and_short_text_is_one_shingle():
    hasher = MinHasher(num_perm=16, seed=1, ngram=5)
    assert hasher.signatures(["", "!!! ???"]) == [None, None]
    assert shingles("Hello", 5) == ["hello"]
    assert shingles("a b c d e f", 5) == ["a b c d e", "b c d e f"]


def test_sketch_jaccard_is_exact_for_short_documents_and_close_for_long_ones():
    def exact(a, b):
        sa, sb = set(shingles(a, 5)), set(shingles(b, 5))
        return len(sa & sb) / len(sa | sb)

    def sketched(a, b, k):
        ha, hb = (shingle_hashes(shingles(t, 5)) for t in (a, b))
        return sketch_jaccard(bottom_k(ha, k), k, bottom_k(hb, k), k)

    short = base_text(50, 150)
    for fraction in (0.01, 0.03, 0.1):
        other = edited(short, fraction, 51)
        assert sketched(short, other, 512) == pytest.approx(exact(short, other), abs=1e-12)
    long_text = base_text(52, 3000)
    other = edited(long_text, 0.03, 53)
    assert abs(sketched(long_text, other, 512) - exact(long_text, other)) < 0.05
    # Sketches of different sizes still compare (a later run may change verify_sketch_size).
    ha, hb = (shingle_hashes(shingles(t, 5)) for t in (long_text, other))
    assert abs(sketch_jaccard(bottom_k(ha, 256), 256, bottom_k(hb, 1024), 1024) - exact(long_text, other)) < 0.07


def test_lsh_parameters_are_datasketchs():
    config = DedupConfig(threshold=0.8, num_perm=128)
    lsh = MinHashLSH(threshold=0.8, num_perm=128, weights=(config.false_positive_weight, config.false_negative_weight))
    assert lsh_parameters(config) == (lsh.b, lsh.r)


def test_rank_key_orders_by_survivor_priority():
    def key(published=False, anchor=False, score=None, ts=None, doc_id="b"):
        return rank_key(published, rank_prefix(anchor, score, ts, 0.5), doc_id)

    ordered = [
        key(published=True, score=0.99, doc_id="z"),
        key(anchor=True, score=0.9),
        key(score=0.01, ts=5),
        key(score=0.2, ts=1),
        key(score=0.5, ts=1),
        key(score=None, ts=1),        # unknown ranks as 0.5, after a known 0.5
        key(score=None, ts=None, doc_id="a"),   # unknown time after any known time
        key(score=None, ts=None, doc_id="b"),
        key(score=0.7, ts=-10),
    ]
    assert sorted(ordered) == ordered
    # Last-bit noise in an upstream score is a tie, decided by the next criterion.
    assert key(score=0.7891520029490441, ts=2) > key(score=0.7891520029490439, ts=1)
    assert decode_prefix(rank_prefix(True, 0.25, -123, 0.5)) == (True, 0.25, -123)
    assert decode_prefix(rank_prefix(False, None, None, 0.5)) == (False, None, None)


def test_candidate_pairs_small_large_and_published_only_buckets():
    members = [(b"c", True), (b"a", True), (b"b", False)]
    pairs, large = candidate_pairs(members, max_bucket_pairs=10)
    assert pairs == [(b"a", b"b"), (b"a", b"c"), (b"b", b"c")] and not large
    assert candidate_pairs([(b"a", False), (b"b", False)], 10) == ([], False)
    assert candidate_pairs([(b"a", True)], 10) == ([], False)
    many = [(bytes([i]), True) for i in range(30)]
    pairs, large = candidate_pairs(many, max_bucket_pairs=5)
    assert large and len(pairs) == 29 + 28  # star from the best + consecutive, without the shared first pair
    assert all(a < b for a, b in pairs)


def test_star_label_detects_non_star_nodes():
    assert star_label(5, [1]) == (1, True)
    assert star_label(1, [3, 4]) == (1, True)
    assert star_label(3, [1, 2]) == (3, False)


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError) as error:
        DedupConfig(threshold=1.5).validate()
    assert error.value.key == "threshold"
    with pytest.raises(ConfigError) as error:
        NearDedup(DedupConfig(num_perm=1))
    assert error.value.key == "dedup.num_perm"


# --- connected components in Beam ----------------------------------------------------------------------------

def test_components_of_a_long_chain_and_two_stars():
    chain = [(i, i + 1) for i in range(40)]
    stars = [(100, 100 + k) for k in range(1, 30)] + [(200 + k, 200) for k in range(1, 5)]
    expected = [(i, 0) for i in range(41)] + [(100 + k, 100) for k in range(30)] + [(200 + k, 200) for k in range(5)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        labels = p | beam.Create(chain + stars) | ConnectedComponents(10)
        assert_that(labels, equal_to(expected))


@pytest.mark.parametrize("check_after, passes_on", [(1, True), (3, True), (10, False)])
def test_components_checkpoint_sends_edges_on_only_when_needed(check_after, passes_on):
    chain = [(i, i + 1) for i in range(40)]  # a 41-node path needs more than 3 rounds
    stars = [(100, 100 + k) for k in range(1, 30)] + [(200 + k, 200) for k in range(1, 5)]
    expected = [(i, 0) for i in range(41)] + [(100 + k, 100) for k in range(30)] + [(200 + k, 200) for k in range(5)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        labels = p | beam.Create(chain + stars) | ConnectedComponents(10, check_after=check_after)
        assert_that(labels, equal_to(expected))
    counters = _gate_counters(chain + stars, 10, check_after)
    assert counters.get("cc_unconverged_nodes", 0) == 0
    assert counters["cc_nodes"] == len(expected)
    assert (counters.get("cc_edges_after_check", 0) > 0) == passes_on


def test_components_checkpoint_skips_further_rounds_for_converged_stars():
    stars = [(100, 100 + k) for k in range(1, 30)] + [(200 + k, 200) for k in range(1, 5)] + [(7, 3), (3, 5)]
    expected = [(100 + k, 100) for k in range(30)] + [(200 + k, 200) for k in range(5)] + [(3, 3), (5, 3), (7, 3)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        labels = p | beam.Create(stars) | ConnectedComponents(10, check_after=1)
        assert_that(labels, equal_to(expected))
    counters = _gate_counters(stars, 10, 1)
    assert counters.get("cc_edges_after_check", 0) == 0 and counters["cc_nodes"] == len(expected)


def test_components_bound_hit_after_the_checkpoint_is_reported():
    chain = [(i, i + 1) for i in range(40)]
    counters = _gate_counters(chain, 2, 1)
    assert counters["cc_edges_after_check"] > 0 and counters["cc_unconverged_nodes"] > 0
    assert counters["cc_nodes"] == 41


def _gate_counters(edges, max_rounds, check_after):
    p = beam.Pipeline(runner="FnApiRunner")
    _ = p | beam.Create(edges) | ConnectedComponents(max_rounds, namespace="cc_test", check_after=check_after)
    result = p.run()
    result.wait_until_finish()
    return {r.key.metric.name: r.committed for r in result.metrics().query()["counters"]
            if r.key.metric.namespace == "cc_test"}


# --- the stage -----------------------------------------------------------------------------------------------

def scenario_corpus() -> tuple[list[dict], dict]:
    """Every scenario of the issue in one corpus (distinct base texts never interact)."""
    docs, ids = [], {}
    # Chain: sliding windows over one long word sequence, each shifted by 5 % of its length.
    long_words = base_text(10, 400).split()
    chain = [make_doc(" ".join(long_words[i * 10:i * 10 + 200]), source_offset=i, synthetic_score=0.1 + i / 100)
             for i in range(6)]
    docs += chain
    ids["chain"] = [d["doc_id"] for d in chain]
    # Big cluster: an original and 60 copies each with 1 % of words edited (bucket > max_bucket_pairs).
    original = make_doc(base_text(20, 300), source_timestamp=1_000, synthetic_score=0.3)
    copies = [make_doc(edited(original["text"], 0.01, 1000 + k), source_timestamp=2_000 + k, synthetic_score=0.3)
              for k in range(60)]
    docs += [original] + copies
    ids["big"] = [original["doc_id"]] + [d["doc_id"] for d in copies]
    # A human original (anchor-eligible) and synthetic near copies, all older than it; one copy fooled the
    # detector and scores lower than the original.
    human = make_doc(base_text(30), synthetic_score=0.4, source_tags=["verified_human"], source_timestamp=5_000)
    synthetic = [make_doc(edited(human["text"], 0.01, 3000 + k), synthetic_score=score, source_timestamp=1_000 + k)
                 for k, score in enumerate([0.2, 0.95, 0.96, 0.97])]
    docs += [human] + synthetic
    ids["human"], ids["synthetic"] = human["doc_id"], [d["doc_id"] for d in synthetic]
    # Identical text from three sources; the earliest source wins.
    same = base_text(40)
    docs += [make_doc(same, source="feed_a", source_uri="mem://a", source_timestamp=300),
             make_doc(same, source="feed_b", source_uri="mem://b", source_timestamp=100),
             make_doc(same, source="feed_c", source_uri="mem://c")]
    ids["identical"] = doc_id_for(same)
    # Empty and one-word documents.
    tiny = [make_doc(""), make_doc("", source_offset=1), make_doc("!!!"), make_doc("hello"), make_doc("Hello"),
            make_doc("world")]
    docs += tiny
    ids["tiny"] = {d["text"]: d["doc_id"] for d in tiny}
    # Distinct documents: never merged.
    distinct = [make_doc(base_text(100 + k)) for k in range(20)]
    docs += distinct
    ids["distinct"] = [d["doc_id"] for d in distinct]
    return docs, ids


def _dump(records, path):
    with open(path, "wb") as f:
        pickle.dump(records, f)


# Small enough that the big cluster's buckets take the star + chain path too.
SCENARIO_CONFIG = DedupConfig(max_bucket_pairs=20)


def run_stage(docs, config=SCENARIO_CONFIG, options=None, previous_index=None, anchor_eligible=verified_human):
    """Run the stage; outputs go through files because with multi_processing the DoFns run in other processes."""
    out_dir = tempfile.mkdtemp(prefix="dedup-test-")
    with beam.Pipeline(runner="FnApiRunner", options=options) as p:
        result = p | beam.Create(docs) | NearDedup(config, previous_index=previous_index,
                                                   anchor_eligible=anchor_eligible)
        named = {"kept": result.kept, "rejected": result.rejected, "index": result.extra[INDEX]}
        for name in ("kept", "rejected", "index"):
            (named[name] | f"All{name}" >> beam.combiners.ToList()
             | f"Dump{name}" >> beam.Map(_dump, os.path.join(out_dir, name)))
    outputs = []
    for name in ("kept", "rejected", "index"):
        with open(os.path.join(out_dir, name), "rb") as f:
            outputs.append(pickle.load(f))
    shutil.rmtree(out_dir)
    counters = {r.key.metric.name: r.committed
                for r in p.result.metrics().query(MetricsFilter().with_namespace("dedup"))["counters"]}
    return (*outputs, counters)


def decisions(kept, rejected):
    return sorted(
        [("kept", d["doc_id"], d.get("source"), d["dup_cluster_id"], d["dup_cluster_size"]) for d in kept]
        + [("rejected", d["doc_id"], d.get("source"), d["reject_reason"], d["duplicate_of"], d["dup_cluster_size"])
           for d in rejected])


@pytest.fixture(scope="module")
def scenario():
    docs, ids = scenario_corpus()
    kept, rejected, index, counters = run_stage(docs)
    return docs, ids, kept, rejected, index, counters


def test_every_document_is_kept_or_rejected_and_counted(scenario):
    docs, _, kept, rejected, _, counters = scenario
    assert len(kept) + len(rejected) == len(docs)
    assert counters["in"] == len(docs)
    assert counters["kept"] == len(kept)
    assert sum(v for k, v in counters.items() if k.startswith("rejected.")) == len(rejected)
    kept_ids = {d["doc_id"] for d in kept}
    assert all(d["duplicate_of"] in kept_ids for d in rejected)
    assert all(d["rejected_by"] == "dedup" and d["reject_detail"] for d in rejected)
    assert counters.get("cc_unconverged_nodes", 0) == 0


def test_chain_is_one_cluster_even_though_its_ends_differ(scenario):
    docs, ids, kept, rejected, _, _ = scenario
    by_id = {d["doc_id"]: d for d in docs}
    hasher = MinHasher(128, 1, 5)
    signatures = hasher.signatures([by_id[i]["text"] for i in ids["chain"]])
    assert all(estimated_jaccard(a, b) >= 0.8 for a, b in zip(signatures, signatures[1:]))
    assert estimated_jaccard(signatures[0], signatures[-1]) < 0.8
    survivor = ids["chain"][0]  # lowest synthetic_score
    assert [d["doc_id"] for d in kept if d["doc_id"] in ids["chain"]] == [survivor]
    chain_rejected = [d for d in rejected if d["doc_id"] in ids["chain"]]
    assert len(chain_rejected) == 5
    assert all(d["reject_reason"] == "near_duplicate" and d["duplicate_of"] == survivor for d in chain_rejected)
    assert all(d["dup_cluster_size"] == 6 for d in chain_rejected)


def test_big_cluster_keeps_the_earliest_copy(scenario):
    _, ids, kept, rejected, _, counters = scenario
    big = set(ids["big"])
    survivors = [d for d in kept if d["doc_id"] in big]
    assert [d["doc_id"] for d in survivors] == [ids["big"][0]]
    assert survivors[0]["dup_cluster_size"] == 61 and survivors[0]["dup_cluster_id"] == ids["big"][0]
    assert sorted(d["doc_id"] for d in rejected if d["duplicate_of"] == ids["big"][0]) == sorted(ids["big"][1:])
    assert counters.get("lsh_large_buckets", 0) > 0


def test_human_original_beats_older_lower_scored_synthetic_copies(scenario):
    _, ids, kept, rejected, _, _ = scenario
    assert ids["human"] in {d["doc_id"] for d in kept}
    for doc_id in ids["synthetic"]:
        [doc] = [d for d in rejected if d["doc_id"] == doc_id]
        assert doc["duplicate_of"] == ids["human"] and doc["reject_reason"] == "near_duplicate"
        assert "human-anchor eligible" in doc["reject_detail"]


def test_human_original_wins_on_synthetic_score_without_anchor_function():
    docs, ids = scenario_corpus()
    mix = [d for d in docs if d["doc_id"] == ids["human"]
           or (d["doc_id"] in ids["synthetic"] and d["synthetic_score"] > 0.4)]
    kept, rejected, _, _ = run_stage(mix, anchor_eligible=None)
    assert len(mix) == 4
    assert [d["doc_id"] for d in kept] == [ids["human"]]
    assert all("lower synthetic_score" in d["reject_detail"] for d in rejected)


def test_identical_texts_from_different_sources(scenario):
    _, ids, kept, rejected, _, _ = scenario
    [survivor] = [d for d in kept if d["doc_id"] == ids["identical"]]
    assert survivor["source"] == "feed_b" and survivor["dup_cluster_size"] == 3
    copies = [d for d in rejected if d["doc_id"] == ids["identical"]]
    assert sorted(d["source"] for d in copies) == ["feed_a", "feed_c"]
    assert all(d["reject_reason"] == "exact_duplicate" and d["duplicate_of"] == ids["identical"] for d in copies)


def test_empty_and_one_word_documents(scenario):
    _, ids, kept, rejected, _, counters = scenario
    tiny = ids["tiny"]
    kept_tiny = {d["text"] for d in kept if d["doc_id"] in tiny.values()}
    # Two different texts without words are not near-duplicates of each other; one of two empty docs goes.
    assert {"", "!!!", "world"} <= kept_tiny
    assert [d["reject_reason"] for d in rejected if d["doc_id"] == tiny[""]] == ["exact_duplicate"]
    # "hello" and "Hello" have the same single shingle: one survives, the other is its near-duplicate.
    assert len({"hello", "Hello"} & kept_tiny) == 1
    assert counters["no_shingles"] >= 2


def test_distinct_documents_are_never_merged(scenario):
    _, ids, kept, _, _, _ = scenario
    kept_by_id = {d["doc_id"]: d for d in kept}
    for doc_id in ids["distinct"]:
        assert kept_by_id[doc_id]["dup_cluster_id"] == doc_id and kept_by_id[doc_id]["dup_cluster_size"] == 1


def test_index_rows_are_the_survivors_and_datasketch_lsh_finds_the_duplicates(scenario, tmp_path):
    docs, _, kept, rejected, index, _ = scenario
    assert sorted(r["doc_id"] for r in index) == sorted(d["doc_id"] for d in kept)
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), path)
    sketches = load_lean_minhashes(str(tmp_path))
    config = DedupConfig()
    lsh = MinHashLSH(threshold=0.8, num_perm=128, weights=(config.false_positive_weight, config.false_negative_weight))
    for doc_id, sketch in sketches.items():
        assert sketch.scheme == "affine32" and sketch.seed == 1
        lsh.insert(doc_id, sketch)
    near = [d for d in rejected if d["reject_reason"] == "near_duplicate"]
    found = sum(d["duplicate_of"] in lsh.query(datasketch_minhash(d["text"])) for d in near)
    # Chain members far from the survivor are only linked through others; everything else is a direct hit.
    assert found >= len(near) - 4


def test_same_decisions_across_runs_and_runners(scenario):
    docs, _, kept, rejected, index, _ = scenario
    expected = decisions(kept, rejected)
    shuffled = list(docs)
    random.Random(5).shuffle(shuffled)
    again = run_stage(shuffled)
    assert decisions(again[0], again[1]) == expected
    multi = run_stage(docs, options=PipelineOptions(["--direct_running_mode=multi_processing",
                                                     "--direct_num_workers=2"]))
    assert decisions(multi[0], multi[1]) == expected
    assert sorted((r["doc_id"], tuple(r["hashvalues"])) for r in multi[2]) == \
        sorted((r["doc_id"], tuple(r["hashvalues"])) for r in index)


def test_unconverged_components_are_reported_and_stay_consistent():
    docs, ids = scenario_corpus()
    chain = [d for d in docs if d["doc_id"] in ids["chain"]]
    kept, rejected, _, counters = run_stage(chain, config=DedupConfig(max_cc_rounds=0))
    assert counters["cc_unconverged_nodes"] > 0
    kept_ids = {d["doc_id"] for d in kept}
    assert len(kept) + len(rejected) == 6 and len(kept) > 1
    assert all(d["duplicate_of"] in kept_ids for d in rejected)


def test_incremental_run_dedups_against_the_published_index(tmp_path):
    first_docs = [make_doc(base_text(500 + k), synthetic_score=0.6) for k in range(5)]
    kept1, rejected1, index1, _ = run_stage(first_docs)
    assert len(kept1) == 5 and not rejected1
    index_dir = tmp_path / "index" / "dedup"
    index_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(index1, schema=INDEX_SCHEMA), index_dir / "part-00000.parquet")

    published = first_docs[0]
    better_copy = make_doc(edited(published["text"], 0.01, 9), synthetic_score=0.01,
                           source_tags=["verified_human"], source_timestamp=1)
    exact_copy = make_doc(first_docs[1]["text"], source="tomorrow")
    carried = dict(first_docs[2], first_run_id="run-1")
    fresh = make_doc(base_text(600))
    fresh_copy = make_doc(edited(fresh["text"], 0.01, 10), synthetic_score=0.9)
    second_docs = [better_copy, exact_copy, carried, fresh, fresh_copy]
    kept2, rejected2, index2, counters = run_stage(second_docs, previous_index=str(index_dir / "*.parquet"))

    rejected_by_id = {d["doc_id"]: d for d in rejected2}
    assert rejected_by_id[better_copy["doc_id"]]["duplicate_of"] == published["doc_id"]
    assert rejected_by_id[better_copy["doc_id"]]["reject_reason"] == "near_duplicate"
    assert "already published" in rejected_by_id[better_copy["doc_id"]]["reject_detail"]
    assert rejected_by_id[exact_copy["doc_id"]]["duplicate_of"] == first_docs[1]["doc_id"]
    assert rejected_by_id[exact_copy["doc_id"]]["reject_reason"] == "exact_duplicate"
    assert rejected_by_id[fresh_copy["doc_id"]]["duplicate_of"] == fresh["doc_id"]
    assert sorted(d["doc_id"] for d in kept2) == sorted([carried["doc_id"], fresh["doc_id"]])
    assert counters["matched_published"] == 2
    # Cumulative: yesterday's rows plus tonight's one new survivor, each once.
    assert sorted(r["doc_id"] for r in index2) == sorted([r["doc_id"] for r in index1] + [fresh["doc_id"]])


def test_previous_index_with_other_parameters_fails_loudly(tmp_path):
    docs = [make_doc(base_text(700))]
    _, _, index, _ = run_stage(docs, config=DedupConfig(num_perm=64))
    pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), tmp_path / "part-0.parquet")
    with pytest.raises(Exception, match="num_perm"):
        run_stage(docs, previous_index=str(tmp_path / "*.parquet"))


def test_minhash_verification_mode_and_an_index_without_sketches(tmp_path):
    original = make_doc(base_text(900), synthetic_score=0.2)
    copy = make_doc(edited(original["text"], 0.01, 901), synthetic_score=0.3)
    other = make_doc(base_text(902))
    minhash_mode = DedupConfig(verify_sketch_size=0)
    kept, rejected, index, _ = run_stage([original, copy, other], config=minhash_mode)
    assert sorted(d["doc_id"] for d in kept) == sorted([original["doc_id"], other["doc_id"]])
    assert [d["duplicate_of"] for d in rejected] == [original["doc_id"]]
    assert all(r["shingle_sketch"] is None for r in index)
    pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), tmp_path / "part-0.parquet")
    # The sketch-verifying default cannot verify against sketch-less rows: it says so instead of guessing.
    with pytest.raises(Exception, match="verify_sketch_size"):
        run_stage([copy], previous_index=str(tmp_path / "*.parquet"))
    _, rejected, _, _ = run_stage([copy], config=minhash_mode, previous_index=str(tmp_path / "*.parquet"))
    assert [d["duplicate_of"] for d in rejected] == [original["doc_id"]]


def test_disabled_stage_keeps_everything_and_passes_the_index_through():
    docs = [make_doc(base_text(800)), make_doc(base_text(800), source="again")]
    kept, rejected, index, _ = run_stage(docs, config=DedupConfig(enabled=False))
    assert len(kept) == 2 and not rejected and not index
