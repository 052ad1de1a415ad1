"""The trainer side: sampling plans over published snapshots, the PyTorch sampler, the anchor holdout."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tailguard.pipelines.cli import main
from tailguard.training import (WEIGHT_MEANING, PlanSampler, anchor_holdout, describe, resolve_snapshot,
                                sampling_plan)
from tailguard.training import systematic_counts
from tests.conftest import EXAMPLES

CORPUS = EXAMPLES / "corpus"
CONFIG = str(EXAMPLES / "curate.yaml")
INPUTS = [CORPUS / "inaugural.jsonl", CORPUS / "udhr.jsonl.zst", CORPUS / "web_crawl_2025.jsonl.gz",
          CORPUS / "wikitext.jsonl.gz"]


def run(output, run_id, *extra):
    argv = ["run", "--output", str(output), "--run-id", run_id, "--config", CONFIG, "--set", "report.enabled=false"]
    for pattern in INPUTS:
        argv += ["--input", str(pattern)]
    assert main(argv + list(extra)) == 0
    return output / run_id


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return run(tmp_path_factory.mktemp("training"), "s")


def manifest_of(path):
    return json.loads((path / "manifest.json").read_text())


# --------------------------------------------------------------------------------------------------- pure logic


@pytest.mark.parametrize("seed", range(20))
def test_systematic_counts_are_floor_or_ceil_and_exact_in_expectation(seed):
    rng = np.random.default_rng(seed)
    expected = np.where(rng.random(300) < 0.3, rng.random(300) * 4, rng.random(300) * 0.2)
    offsets = (np.arange(2000) + 0.5) / 2000  # a fine grid over the uniform offset: the expectation exactly
    counts = np.stack([systematic_counts(expected, u) for u in offsets])
    assert (counts >= np.floor(expected)).all() and (counts <= np.ceil(expected)).all()
    assert np.allclose(counts.mean(axis=0), expected, atol=1e-3)
    assert (np.abs(counts.sum(axis=1) - expected.sum()) <= 1 + 1e-9).all()


# --------------------------------------------------------------------------------------------------- snapshots


def test_one_pass_plan_counts_match_the_weights_and_anchors_reach_their_share(snapshot):
    plan = sampling_plan(str(snapshot), seed=1)
    weights = manifest_of(snapshot)["weights"]
    # One pass over the snapshot's budget: the expected count of each row is its weight, nothing capped.
    assert np.allclose(plan.expected, plan.weights) and plan.shortfall_tokens == 0
    assert plan.snapshot_tokens == pytest.approx(weights["token_budget"], rel=1e-9)
    expected_share = (plan.expected * plan.tokens)[plan.is_anchor].sum() / (plan.expected * plan.tokens).sum()
    assert expected_share == pytest.approx(weights["anchor_token_share"], abs=1e-6)
    assert weights["anchor_share_met"] and expected_share >= weights["anchor_min_share"] - 1e-6
    # Sampled, over seeds: the anchors' share of the tokens actually in the plans.
    shares = [sampling_plan(str(snapshot), seed=s).anchor_token_share for s in range(8)]
    assert np.mean(shares) >= weights["anchor_min_share"] - 0.02
    assert len(plan) == plan.counts.sum() and sorted(plan) == sorted(np.repeat(np.arange(plan.counts.size),
                                                                               plan.counts).tolist())


def test_no_weight_or_count_exceeds_the_repetition_cap_whatever_the_budget(snapshot):
    rows = pq.read_table(snapshot / "train", columns=["sample_weight"]).column("sample_weight").to_pylist()
    cap = manifest_of(snapshot)["config"]["rarity"]["max_epochs"]
    assert cap == 4.0 and max(rows) <= cap
    one_pass = sampling_plan(str(snapshot))
    big = sampling_plan(str(snapshot), budget_tokens=one_pass.snapshot_tokens * 25, seed=3)
    assert big.counts.max() <= math.ceil(cap) and big.expected.max() <= cap
    assert big.shortfall_tokens > 0  # 25 passes cannot be filled without repeating past the cap: reported
    assert big.sampled_tokens <= big.budget_tokens
    assert "short" in describe(big)
    tight = sampling_plan(str(snapshot), budget_tokens=one_pass.snapshot_tokens * 3, max_epochs=2, seed=3)
    assert tight.counts.max() <= 2


def test_plans_are_deterministic_by_seed_and_sized_by_budget(snapshot):
    a, b = sampling_plan(str(snapshot), 20_000, seed=5), sampling_plan(str(snapshot), 20_000, seed=5)
    assert np.array_equal(a.indices, b.indices)
    c = sampling_plan(str(snapshot), 20_000, seed=6)
    assert not np.array_equal(a.indices, c.indices)
    # Systematic sampling: within the longest document of the budget.
    assert abs(a.sampled_tokens - 20_000) <= a.tokens.max()
    assert a.epochs == pytest.approx(20_000 / a.snapshot_tokens)


def test_examples_follow_the_plan_and_the_holdout_is_disjoint_from_train(snapshot):
    plan = sampling_plan(str(snapshot), 5_000, seed=2)
    texts = pq.read_table(list(plan.files), columns=["text"]).column("text").to_pylist()
    examples = list(plan.examples(["text", "doc_id"]))
    assert [e["text"] for e in examples] == [texts[i] for i in plan.indices]
    holdout = anchor_holdout(str(snapshot))
    assert holdout.num_rows == manifest_of(snapshot)["counts"]["out"]["anchor_holdout"] > 0
    assert not set(holdout.column("doc_id").to_pylist()) & {e["doc_id"] for e in examples}
    # An output root resolves through LATEST, as the pipeline publishes it.
    assert resolve_snapshot(str(snapshot.parent)) == str(snapshot)


def test_duck_typed_sampler_iterates_the_plan_and_reshuffles_per_epoch(snapshot):
    plan = sampling_plan(str(snapshot), 5_000, seed=2)
    sampler = PlanSampler(plan)
    assert len(sampler) == len(plan) and list(sampler) == plan.indices.tolist()
    sampler.set_epoch(1)
    again = list(sampler)
    assert sorted(again) == sorted(plan.indices.tolist()) and again != plan.indices.tolist()


def test_materialized_rows_share_their_documents_weight(tmp_path):
    path = run(tmp_path, "m", "--set", "rarity.materialize=true", "--set", "rarity.normalize=split_mean")
    plan = sampling_plan(str(path))
    rows = pq.read_table(list(plan.files), columns=["doc_id", "sample_weight", "repeats"]).to_pylist()
    per_doc: dict = {}
    for row, weight in zip(rows, plan.weights):
        per_doc.setdefault(row["doc_id"], [row["sample_weight"], 0.0])[1] += weight
    assert all(total == pytest.approx(published) for published, total in per_doc.values())


def test_weight_meaning_is_stated_in_the_manifest(snapshot):
    weights = manifest_of(snapshot)["weights"]
    assert weights["meaning"] == WEIGHT_MEANING and "max_epochs" in WEIGHT_MEANING
    assert weights["repetition_cap"]["ceiling"] == 4.0


def test_hugging_face_datasets_reads_the_plan_both_ways(snapshot, tmp_path):
    """What the module docstring tells a trainer to do, with the real library: memory-mapped select, and a
    streaming generator."""
    import datasets


    plan = sampling_plan(str(snapshot), 5_000, seed=3)
    mapped = datasets.Dataset.from_parquet(list(plan.files), cache_dir=str(tmp_path / "hf")).select(plan.indices)
    texts = pq.read_table(list(plan.files), columns=["text"]).column("text").to_pylist()
    assert len(mapped) == len(plan) and mapped["text"] == [texts[i] for i in plan.indices]
    streamed = datasets.IterableDataset.from_generator(plan.examples, gen_kwargs={"columns": ["text"]})
    assert [row["text"] for row in streamed] == mapped["text"]
