"""Snapshots over time: anchors accumulate across runs, the anchor share is enforced, repeats materialise."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tailguard.pipelines.cli import main
from tests.conftest import EXAMPLES

CORPUS = EXAMPLES / "corpus"
CONFIG = str(EXAMPLES / "curate.yaml")


def run(output, run_id, inputs, *extra):
    argv = ["run", "--output", str(output), "--run-id", run_id, "--config", CONFIG]
    for pattern in inputs:
        argv += ["--input", str(pattern)]
    return main(argv + list(extra))


def table(output, run_id, split):
    return {r["doc_id"]: r for r in pq.read_table(output / run_id / split).to_pylist()}


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    output = tmp_path_factory.mktemp("nightly")
    night1 = [CORPUS / "inaugural.jsonl", CORPUS / "udhr.jsonl.zst", CORPUS / "web_crawl_2025.jsonl.gz"]
    night2 = [CORPUS / "wikitext.jsonl.gz", CORPUS / "recrawl_2024.parquet", CORPUS / "gutenberg" / "*.txt"]
    assert run(output, "n1", night1) == 0
    assert run(output, "n2", night2, "--previous", str(output)) == 0
    return output


def test_every_earlier_anchor_is_kept_with_its_split(two_nights):
    before = {**table(two_nights, "n1", "train"), **table(two_nights, "n1", "anchor_holdout")}
    after = {**table(two_nights, "n2", "train"), **table(two_nights, "n2", "anchor_holdout")}
    anchors = {doc_id: row for doc_id, row in before.items() if row["is_anchor"]}
    assert anchors
    for doc_id, row in anchors.items():
        assert doc_id in after
        for field in ("text", "source_uri", "source_offset", "split", "is_anchor", "anchor_reason", "first_run_id"):
            assert after[doc_id][field] == row[field], field
    assert set(before) <= set(after)  # accumulate, never replace


def test_holdout_stays_disjoint_from_train_and_new_documents_join(two_nights):
    train, holdout = table(two_nights, "n2", "train"), table(two_nights, "n2", "anchor_holdout")
    assert not set(train) & set(holdout)
    assert {r["first_run_id"] for r in train.values()} == {"n1", "n2"}
    manifest = json.loads((two_nights / "n2" / "manifest.json").read_text())
    assert manifest["counts"]["reconciled"] and manifest["counts"]["carried_forward"] > 0
    weights = manifest["weights"]
    assert abs(weights["anchor_mean_weight"] - 1.0) < 1e-6 and weights["anchor_share_met"]
    assert weights["weight_quantiles"] and weights["top_sources_by_weight"]


def test_recrawled_copies_of_published_documents_are_rejected_as_duplicates(two_nights):
    rejected = pq.read_table(two_nights / "n2" / "rejected").to_pylist()
    published = set(table(two_nights, "n1", "train")) | set(table(two_nights, "n1", "anchor_holdout"))
    recrawled = [r for r in rejected if r["source"] == "recrawl_2024" and r["duplicate_of"] in published]
    assert recrawled  # the re-crawl holds exact copies of night-1 inaugural addresses


def test_an_enforced_anchor_share_that_cannot_be_met_fails_without_publishing(tmp_path, capsys):
    inputs = [CORPUS / "web_crawl_2025.jsonl.gz", CORPUS / "inaugural.jsonl"]
    code = run(tmp_path, "strict", inputs, "--set", "anchors.enforce=true", "--set", "anchors.min_share=0.95",
               "--set", "rarity.max_weight=2", "--set", "rarity.normalize=split_mean")
    assert code == 1
    assert "anchors.min_share" in capsys.readouterr().err
    assert not (tmp_path / "strict" / "manifest.json").exists() and not (tmp_path / "LATEST").exists()


def test_anchor_mean_publishes_anchors_at_mean_one_and_names_min_weight_when_short(tmp_path, capsys):
    inputs = [CORPUS / "web_crawl_2025.jsonl.gz", CORPUS / "inaugural.jsonl"]
    assert run(tmp_path, "am", inputs, "--set", "rarity.normalize=anchor_mean", "--set", "anchors.min_share=0.9",
               "--set", "rarity.min_weight=0.01") == 0
    weights = json.loads((tmp_path / "am" / "manifest.json").read_text())["weights"]
    assert weights["normalize"] == "anchor_mean" and abs(weights["anchor_mean_weight"] - 1.0) < 1e-6
    assert weights["anchor_share_met"] and weights["anchor_token_share"] >= 0.9 - 1e-6
    assert weights["mean_weight"] < 1.0  # the rest was weighted down, not the anchors up
    rows = pq.read_table(tmp_path / "am" / "train").to_pylist()
    anchors = [r["sample_weight"] for r in rows if r["is_anchor"]]
    assert abs(sum(anchors) / len(anchors) - 1.0) < 1e-6
    capsys.readouterr()

    code = run(tmp_path, "am-strict", inputs, "--set", "rarity.normalize=anchor_mean", "--set",
               "anchors.min_share=0.99", "--set", "rarity.min_weight=0.5", "--set", "anchors.enforce=true")
    assert code == 1 and "rarity.min_weight" in capsys.readouterr().err
    assert not (tmp_path / "am-strict" / "manifest.json").exists()


def test_materialized_repeats_are_written_and_reconciled(tmp_path):
    assert run(tmp_path, "m", [CORPUS / "udhr.jsonl.zst", CORPUS / "inaugural.jsonl"],
               "--set", "rarity.materialize=true", "--set", "rarity.normalize=split_mean") == 0
    rows = pq.read_table(tmp_path / "m" / "train").to_pylist()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    documents = manifest["counts"]["out"]["train"]
    assert manifest["counts"]["reconciled"]
    assert len(rows) == sum(r["repeats"] for r in {r["doc_id"]: r for r in rows}.values()) >= documents
    assert len({r["doc_id"] for r in rows}) == documents
