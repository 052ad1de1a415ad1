"""Rare-content weights, human anchors and weight balancing: pure functions, then the transforms."""

from __future__ import annotations

import statistics

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tailguard.transforms.stage import ANCHOR_HOLDOUT, WEIGHTS_REPORT
from tailguard.transforms.anchors import (AnchorEligibility, AnchorsConfig, ReserveHumanAnchors, anchor_eligibility,
                                cutoff_micros, in_holdout, reserve)
from tailguard.pipelines.config import load_config
from tailguard.transforms.rarity import (LanguageShareConfig, RarityConfig, RareContentWeights, cluster_size_weight,
                                         fit_content_model, fit_kmeans, hashed_bag_of_words, share_weight,
                                         smoothed_share, tail_share, tail_weight)
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.text import doc_id_for, words
from tailguard.transforms.weighting import (WEIGHT_MEANING, BalanceWeights, WeightHistogram, repeats_for,
                                            solve_weight_scale)

YEAR_2000 = cutoff_micros("2000-01-01")
YEAR_2025 = cutoff_micros("2025-01-01")


def test_rarer_groups_and_smaller_clusters_weigh_more():
    assert share_weight(0.01, 0.3) > share_weight(0.1, 0.3) > share_weight(0.9, 0.3)
    assert share_weight(0.5, 1.0) == 1.0  # alpha = 1: no reweighting
    assert cluster_size_weight(1, 0.5) == 1.0 > cluster_size_weight(4, 0.5) == 0.5
    assert tail_weight(0.4, 0.1, 0.5) > 1.0 > tail_weight(0.0, 0.1, 0.5)
    assert tail_share(["the", "quux"], frozenset({"the"})) == 0.5 and tail_share([], frozenset()) == 0.0


@pytest.mark.parametrize("total,m", [(1000, 100), (5000, 20), (60, 100)])
def test_small_groups_are_smoothed_so_their_total_weight_grows_with_their_size(total, m):
    alpha = 0.3
    group_total = [k * share_weight(smoothed_share(k, total, m), alpha) for k in range(1, min(total, 3 * m))]
    # Below m documents a group gets k/m of what m documents would get: linear, never a boost per document.
    for k in range(1, min(m, total)):
        assert group_total[k - 1] == pytest.approx(k / m * group_total[m - 1] if m <= total
                                                   else k * share_weight(1.0, alpha))
    # At and above m the plain temperature share applies; a per-document weight never rises as a group shrinks.
    per_document = [share_weight(smoothed_share(k, total, m), alpha) for k in range(1, total + 1)]
    assert all(a >= b - 1e-12 for a, b in zip(per_document, per_document[1:]))
    if m <= total:
        assert smoothed_share(m + 5, total, m) == (m + 5) / total
    assert smoothed_share(3, total, m) <= 1.0 and smoothed_share(0, 0, m) == 1.0


def test_hashed_bag_of_words_is_normalised_and_stable():
    vector = hashed_bag_of_words(["a", "b", "a"], 64)
    assert np.isclose(np.linalg.norm(vector), 1.0)
    assert np.array_equal(vector, hashed_bag_of_words(["b", "a", "a"], 64))
    assert not hashed_bag_of_words([], 64).any()


def test_kmeans_is_seeded_and_separates_clear_topics():
    cooking = [words(f"boil the pasta with salt and garlic then add basil {i}") for i in range(20)]
    ships = [words(f"the ship sailed across the harbour with anchor and sails {i}") for i in range(20)]
    matrix = np.stack([hashed_bag_of_words(t, 256) for t in cooking + ships])
    first, second = fit_kmeans(matrix, 2, 20, seed=3), fit_kmeans(matrix, 2, 20, seed=3)
    assert np.array_equal(first, second)
    labels = np.argmax(matrix @ first.T, axis=1)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]


def test_content_model_does_not_depend_on_arrival_order():
    sample = [(f"id{i}", words(f"word{i % 7} common text here number {i}")) for i in range(50)]
    config = RarityConfig()
    a, b = fit_content_model(sample, config), fit_content_model(list(reversed(sample)), config)
    assert a.vocabulary == b.vocabulary and np.array_equal(a.centroids, b.centroids)


def histogram_of(raw, tokens, anchors):
    combine = WeightHistogram()
    acc = combine.create_accumulator()
    for item in zip(raw, tokens, anchors):
        acc = combine.add_input(acc, (float(item[0]), float(item[1]), bool(item[2])))
    return combine.extract_output(acc)


def random_split(seed, n, sigma, anchor_fraction):
    """Log-normal raw weights, 20-400 tokens per document, a random share of anchors."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0, sigma, n)), rng.integers(20, 400, n).astype(float), rng.random(n) < anchor_fraction


def solved_weights(solved, raw, anchors, lo, hi):
    return np.clip(solved.scale * np.where(anchors, solved.anchor_multiplier, 1.0) * raw, lo, hi)


@pytest.mark.parametrize("anchor_fraction,min_share", [(0.3, 0.1), (0.03, 0.2), (0.06, 0.4)])
def test_solved_weights_have_mean_one_within_bounds_and_meet_the_anchor_share(anchor_fraction, min_share):
    raw, tokens, anchors = random_split(7, 5000, 1.2, anchor_fraction)
    solved = solve_weight_scale(histogram_of(raw, tokens, anchors), 0.1, 10.0, min_share)
    w = solved_weights(solved, raw, anchors, 0.1, 10.0)
    assert abs(w.mean() - 1.0) < 1e-3
    share = (w * tokens)[anchors].sum() / (w * tokens).sum()
    assert solved.reachable and share >= min_share - 1e-3
    if anchor_fraction == 0.3:
        assert solved.anchor_multiplier == 1.0  # already above the share: anchors are not touched


@pytest.mark.parametrize("anchor_fraction,min_share", [(0.3, 0.1), (0.1, 0.5), (0.05, 0.8)])
def test_anchor_mean_keeps_anchors_at_one_and_weights_the_rest_down(anchor_fraction, min_share):
    raw, tokens, anchors = random_split(11, 6000, 1.0, anchor_fraction)
    lo, hi = 0.01, 10.0
    solved = solve_weight_scale(histogram_of(raw, tokens, anchors), lo, hi, min_share, "anchor_mean")
    assert solved.normalize == "anchor_mean" and solved.reachable
    w = solved_weights(solved, raw, anchors, lo, hi)
    assert abs(w[anchors].mean() - 1.0) < 1e-3
    share = (w * tokens)[anchors].sum() / (w * tokens).sum()
    assert share >= min_share - 1e-3
    if anchor_fraction == 0.3:
        assert solved.anchor_multiplier == 1.0 and share > min_share  # already there: nothing moves
    else:
        # Reached by weighting the rest down, not the anchors up -- and no further down than needed.
        assert solved.anchor_multiplier > 1.0 and w[~anchors].mean() < 1.0
        assert share < min_share + 5e-3
        split_mean = solve_weight_scale(histogram_of(raw, tokens, anchors), lo, hi, min_share)
        w_split = solved_weights(split_mean, raw, anchors, lo, hi)
        assert w_split[anchors].mean() > 1.5  # what split_mean does instead: repeat the anchors


def test_anchor_mean_falls_back_to_split_mean_without_anchors_and_reports_a_floor_it_cannot_pass():
    raw = np.ones(1000)
    none = solve_weight_scale(histogram_of(raw, np.full(1000, 100.0), np.zeros(1000, bool)), 0.1, 10.0, 0.2,
                              "anchor_mean")
    assert none.normalize == "split_mean" and abs(none.scale - 1.0) < 1e-6
    # 10 anchors in 1000 at weight 1; the other 990 cannot go below min_weight 0.1: share 10 / (10 + 99).
    few = np.arange(1000) < 10
    floor = solve_weight_scale(histogram_of(raw, np.full(1000, 100.0), few), 0.1, 10.0, 0.5, "anchor_mean")
    assert not floor.reachable and abs(floor.predicted_share - 10 / 109) < 1e-3


def test_an_unreachable_anchor_share_is_reported_not_faked():
    raw = np.ones(1000)
    anchors = np.arange(1000) < 2  # 2 anchors in 1000: even at max_weight they cannot make 20 %
    solved = solve_weight_scale(histogram_of(raw, np.full(1000, 100.0), anchors), 0.1, 10.0, 0.2)
    assert not solved.reachable and solved.predicted_share < 0.2


def test_materialized_repeats_are_deterministic_and_unbiased():
    ids = [doc_id_for(str(i)) for i in range(4000)]
    assert [repeats_for(i, 2.3) for i in ids[:50]] == [repeats_for(i, 2.3) for i in ids[:50]]
    assert all(repeats_for(i, 0.1) == 1 for i in ids[:50])  # a kept document never vanishes
    assert abs(statistics.mean(repeats_for(i, 2.3) for i in ids) - 2.3) < 0.05


def doc(i, **extra):
    text = extra.pop("text", f"document {i} about a subject")
    base = {"doc_id": doc_id_for(f"{text}#{i}"), "text": text, "source": "s", "source_tags": [],
            "n_chars": len(text)}
    base.update(extra)
    return base


def test_anchor_eligibility_rules():
    config = AnchorsConfig(max_synthetic_score=0.94)
    assert anchor_eligibility(doc(1, source_tags=["verified_human"]), config) == (True,
                                                                                  "verified_source:verified_human")
    assert anchor_eligibility(doc(2, source_timestamp=YEAR_2000), config)[1].startswith("before_cutoff")
    assert anchor_eligibility(doc(3, source_timestamp=YEAR_2025), config) == (False, "no_human_provenance")
    too_synthetic = doc(4, source_timestamp=YEAR_2000, synthetic_score=0.97, synthetic_reliable=True)
    assert anchor_eligibility(too_synthetic, config)[0] is False
    unreliable = doc(5, source_tags=["verified_human"], synthetic_score=0.97, synthetic_reliable=False)
    assert anchor_eligibility(unreliable, config)[0] is True
    assert AnchorEligibility(config)(doc(6, source_tags=["verified_human"]))
    assert not AnchorEligibility(AnchorsConfig(enabled=False))(doc(6, source_tags=["verified_human"]))
    # Unresolved (a config built in code, not loaded): provenance is never overruled.
    assert anchor_eligibility(too_synthetic, AnchorsConfig())[0] is True
    with pytest.raises(ConfigError, match="cutoff"):
        AnchorsConfig(cutoff="yesterday").validate()


def test_holdout_is_a_stable_hash_fraction_and_carried_documents_keep_their_split():
    ids = [doc_id_for(str(i)) for i in range(10_000)]
    chosen = [i for i in ids if in_holdout(i, 0.05)]
    assert 0.04 < len(chosen) / len(ids) < 0.06
    assert chosen == [i for i in ids if in_holdout(i, 0.05)]
    carried = doc(1, split="anchor_holdout", is_anchor=True, anchor_reason="verified_source:verified_human")
    assert reserve(carried, AnchorsConfig(holdout_fraction=0.0)) == carried


def test_reserve_human_anchors_transform_keeps_holdout_out_of_train(beam_pipeline):
    docs = [doc(i, source_tags=["verified_human"]) for i in range(300)]
    expected_holdout = sorted(d["doc_id"] for d in docs if in_holdout(d["doc_id"], 0.2))
    with beam_pipeline() as p:
        out = p | beam.Create(docs) | ReserveHumanAnchors(AnchorsConfig(holdout_fraction=0.2))
        assert_that(out.extra[ANCHOR_HOLDOUT] | "HoldoutIds" >> beam.Map(lambda d: d["doc_id"]), equal_to(expected_holdout),
                    label="holdout")
        assert_that(out.kept | "TrainSplit" >> beam.Map(lambda d: (d["split"], d["is_anchor"])),
                    equal_to([("train", True)] * (300 - len(expected_holdout))), label="train")


def weighted_corpus():
    english = [doc(i, lang="en", dup_cluster_size=1, text=f"the quick brown fox {i} jumps over the lazy dog")
               for i in range(60)]
    welsh = [doc(100 + i, lang="cy", dup_cluster_size=1, text=f"mae'r llwynog brown cyflym {i} yn neidio")
             for i in range(4)]
    copied = [doc(200 + i, lang="en", dup_cluster_size=9, text=f"the quick brown fox {i} jumps over the lazy dog")
              for i in range(6)]
    anchors = [doc(300 + i, lang="en", dup_cluster_size=1, is_anchor=True,
                   text=f"the quick brown fox {i} jumps over the lazy dog") for i in range(3)]
    return english + welsh + copied + anchors


def _dump(items, path):
    import json

    with open(path, "w") as f:
        json.dump(items, f)


def run_weights(beam_pipeline, tmp_path, docs, rarity=RarityConfig(), anchors=AnchorsConfig()):
    import json

    docs_path, report_path = tmp_path / "docs.json", tmp_path / "report.json"
    with beam_pipeline() as p:
        features = p | beam.Create(docs) | RareContentWeights(rarity)
        balanced = features.kept | BalanceWeights(rarity, anchors)
        weighted, report = balanced.kept, balanced.extra[WEIGHTS_REPORT]
        _ = weighted | "All" >> beam.combiners.ToList() | "Keep" >> beam.Map(_dump, str(docs_path))
        _ = report | "KeepReport" >> beam.Map(_dump, str(report_path))
    return ({d["doc_id"]: d for d in json.loads(docs_path.read_text())}, json.loads(report_path.read_text()))


# split_mean with the old anchor floor and no small-group smoothing: the mechanics of each component.
SPLIT_MEAN = RarityConfig(normalize="split_mean", min_weight=0.1, max_epochs=10.0, weight_anchors=True,
                          language=LanguageShareConfig(min_documents=1))
LOW_SHARE = AnchorsConfig(min_share=0.2)


def test_weights_are_mean_one_bounded_and_favour_rare_languages_and_singletons(beam_pipeline, tmp_path):
    docs, report = run_weights(beam_pipeline, tmp_path, weighted_corpus(), rarity=SPLIT_MEAN, anchors=LOW_SHARE)
    weights = [d["sample_weight"] for d in docs.values()]
    assert abs(statistics.mean(weights) - 1.0) < 1e-6 and abs(report["mean_weight"] - 1.0) < 1e-6
    assert all(0.1 <= w <= 10.0 for w in weights)
    by_lang = lambda lang, size: [d["sample_weight"] for d in docs.values()
                                  if d["lang"] == lang and d["dup_cluster_size"] == size and not d.get("is_anchor")]
    assert min(by_lang("cy", 1)) > max(by_lang("en", 1))
    assert statistics.mean(by_lang("en", 1)) > statistics.mean(by_lang("en", 9))
    assert report["anchor_share_met"] and report["anchor_token_share"] >= 0.2 - 1e-6
    assert report["anchor_multiplier"] > 1.0  # 3 anchors in 73 documents had to be upweighted
    assert set(docs[next(iter(docs))]["rarity_signals"]) >= {"language", "cluster", "topic", "tail", "raw"}


def test_anchor_mean_weights_in_the_pipeline(beam_pipeline, tmp_path):
    rarity = RarityConfig(normalize="anchor_mean", min_weight=0.01)
    docs, report = run_weights(beam_pipeline, tmp_path, weighted_corpus(), rarity=rarity,
                               anchors=AnchorsConfig(min_share=0.5))
    anchor_weights = [d["sample_weight"] for d in docs.values() if d.get("is_anchor")]
    others = [d["sample_weight"] for d in docs.values() if not d.get("is_anchor")]
    assert abs(statistics.mean(anchor_weights) - 1.0) < 1e-6 and abs(report["anchor_mean_weight"] - 1.0) < 1e-6
    assert report["normalize"] == "anchor_mean" and report["anchor_share_met"]
    assert report["anchor_token_share"] >= 0.5 - 1e-6 and statistics.mean(others) < 0.2
    assert all(0.01 <= w <= 10.0 for w in anchor_weights + others)


def test_default_weights_keep_anchors_at_one_and_every_weight_under_the_repetition_cap(beam_pipeline, tmp_path):
    docs, report = run_weights(beam_pipeline, tmp_path, weighted_corpus())
    anchors = [d["sample_weight"] for d in docs.values() if d.get("is_anchor")]
    assert abs(statistics.mean(anchors) - 1.0) < 1e-6 and report["normalize"] == "anchor_mean"
    # 3 anchors among 73 documents of equal length: even with the 70 others at min_weight 0.01 the anchors hold
    # 3 / 3.7 of the tokens, short of 0.9 -- reported, not met by repeating them.
    others = [d["sample_weight"] for d in docs.values() if not d.get("is_anchor")]
    assert others == pytest.approx([0.01] * 70)
    assert not report["anchor_share_met"] and report["anchor_share_shortfall"] == pytest.approx(
        0.9 - report["anchor_token_share"]) and report["anchor_token_share"] < 0.9
    assert max(d["sample_weight"] for d in docs.values()) <= 4.0 and report["max_epochs"] == 4.0
    assert report["meaning"] == WEIGHT_MEANING and report["repetition_cap"]["binds"] is False
    # Anchors are the human reference, seen once per pass: raw weight 1 whatever their components say.
    assert {d["rarity_signals"]["raw"] for d in docs.values() if d.get("is_anchor")} == {1.0}
    assert all(a == pytest.approx(1.0) for a in anchors)
    # 4 Welsh documents in 73 are smoothed to a group of min(100, 73): no language boost at all.
    welsh = {round(d["rarity_signals"]["language"], 9) for d in docs.values() if d["lang"] == "cy"}
    assert welsh == {1.0}


def test_weight_anchors_applies_the_components_to_anchors_too(beam_pipeline, tmp_path):
    corpus = weighted_corpus() + [doc(400 + i, lang="cy", dup_cluster_size=1, is_anchor=True,
                                      text=f"mae'r llwynog brown cyflym {i} yn neidio") for i in range(2)]
    rarity = RarityConfig(weight_anchors=True, language=LanguageShareConfig(min_documents=1))
    docs, report = run_weights(beam_pipeline, tmp_path, corpus, rarity=rarity)
    anchors = {d["lang"]: d["sample_weight"] for d in docs.values() if d.get("is_anchor")}
    assert anchors["cy"] > anchors["en"]  # the rare-language anchors are weighted up among the anchors
    assert abs(report["anchor_mean_weight"] - 1.0) < 1e-6


def test_the_repetition_cap_binds_and_reports_what_it_refused(beam_pipeline, tmp_path):
    rarity = RarityConfig(normalize="split_mean", min_weight=0.1, max_epochs=2.0,
                          language=LanguageShareConfig(min_documents=1))
    docs, report = run_weights(beam_pipeline, tmp_path, weighted_corpus(), rarity=rarity, anchors=LOW_SHARE)
    weights = [d["sample_weight"] for d in docs.values()]
    assert max(weights) <= 2.0 and max(weights) == pytest.approx(2.0)
    cap = report["repetition_cap"]
    assert cap["binds"] and cap["ceiling"] == 2.0 and cap["capped_documents"] >= 4  # the Welsh ones at least
    assert 0 < cap["capped_token_mass_share"] < 1
    capped_ids = [d for d in docs.values() if d["sample_weight"] == pytest.approx(2.0)]
    assert len(capped_ids) == cap["capped_documents"]
    # The cap bounds the anchor multiplier too: 3 anchors in 73 documents cannot reach 20 % at 2 epochs each,
    # and the shortfall is reported rather than met by repeating them.
    anchors = [d["sample_weight"] for d in docs.values() if d.get("is_anchor")]
    assert max(anchors) <= 2.0 and not report["anchor_share_met"] and report["anchor_share_shortfall"] > 0


@pytest.mark.parametrize("override,key", [
    ("rarity.max_epochs=0.5", "rarity.max_epochs"),
    ("rarity.max_epochs=two", "rarity.max_epochs"),
    ("rarity.language.min_documents=0", "rarity.language.min_documents"),
    ("rarity.topic.min_documents=-3", "rarity.topic.min_documents"),
])
def test_repetition_and_smoothing_settings_are_validated_naming_the_key(override, key):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert error.value.key == key


def test_defaults_are_the_collapse_safe_ones():
    config = load_config(None, [])
    assert (config.anchors.min_share, config.rarity.normalize, config.rarity.min_weight,
            config.rarity.max_epochs) == (0.9, "anchor_mean", 0.01, 4.0)
    assert config.rarity.ceiling == 4.0


def test_weights_are_deterministic_across_runs(beam_pipeline, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = run_weights(beam_pipeline, tmp_path / "a", weighted_corpus())
    second, _ = run_weights(beam_pipeline, tmp_path / "b", list(reversed(weighted_corpus())))
    assert {k: v["sample_weight"] for k, v in first.items()} == {k: v["sample_weight"] for k, v in second.items()}


def test_materialize_sets_repeats(beam_pipeline, tmp_path):
    docs, _ = run_weights(beam_pipeline, tmp_path, weighted_corpus(),
                          rarity=RarityConfig(materialize=True, normalize="split_mean"))
    assert all(d["repeats"] >= 1 for d in docs.values())
    assert sum(d["repeats"] for d in docs.values()) >= len(docs)
