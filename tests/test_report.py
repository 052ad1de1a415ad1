"""The collapse-risk report: figures against a direct computation, trends and drift over snapshots, the HTML in
headless Chromium, and the report of real curated snapshots (one night, then an incremental second night)."""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess

import pytest

from tailguard.pipelines import report
from tailguard.pipelines.cli import main as cli_main
from tests.conftest import EXAMPLES
from tests.test_diversity import fixture_documents
from tailguard.transforms.diversity import (
    INPUT, ReportConfig, compression_ratio, distinct_n, in_sample, rare_vocabulary_coverage, sample_rate, tail_mass,
    top_words, unigram_entropy, window_text)
from tailguard.transforms.sink import SinkConfig, documents_table, shard_name, write_parquet
from tailguard.transforms.text import words

CORPUS = EXAMPLES / "corpus"
CONFIG = str(EXAMPLES / "curate.yaml")


def write_snapshot(root, run_id, docs, previous=None, weights=None):
    """A published snapshot as the sink and publish lay it out: split folders of Parquet, then the manifest."""
    run_dir = root / run_id
    files = []
    for split in ("train", "anchor_holdout", "rejected"):
        members = sorted((d for d in docs if d["split"] == split), key=lambda d: d["doc_id"])
        info = write_parquet(str(run_dir / split / shard_name(0, 1, "parquet")), split, members, documents_table,
                             documents_table([]).schema, SinkConfig())
        files.append(dict(info, path=f"{split}/{shard_name(0, 1, 'parquet')}"))
    manifest = {"run_id": run_id, "previous": str(previous) if previous else None, "weights": weights,
                "config": {"sink": {"write_rejected": True}}, "files": files}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def more_synthetic(docs, shift):
    """The same documents, each scored ``shift`` higher: a corpus drifting toward machine text."""
    return [dict(d, synthetic_score=min(1.0, d["synthetic_score"] + shift)) for d in docs]


CONFIG_SMALL = ReportConfig(sample_size=30, tail_rank=8, max_tokens_per_document=40,
                            max_rise={"synthetic_mean_score": 0.05}, max_fall={"tail_mass": 0.02})


@pytest.fixture(scope="module")
def fixture_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("snapshots")
    docs = fixture_documents()
    first = write_snapshot(root, "night1", docs)
    second = write_snapshot(root, "night2", more_synthetic(docs, 0.2), previous=first,
                            weights={"anchor_token_share": 0.31})
    single = report.write_report(str(first), config=CONFIG_SMALL)
    double = report.write_report(str(second), config=CONFIG_SMALL)
    return root, docs, single, double


def test_json_figures_match_a_direct_computation(fixture_reports):
    root, docs, single, _ = fixture_reports
    on_disk = json.loads((root / "night1" / "report" / "report.json").read_text())
    assert on_disk["trend_values"] == pytest.approx(single["trend_values"])
    train = [d for d in docs if d["split"] == "train"]
    counts = {INPUT: collections.Counter(w for d in docs for w in words(d["text"])),
              "train": collections.Counter(w for d in train for w in words(d["text"]))}
    head = top_words(counts[INPUT], CONFIG_SMALL.tail_rank)
    rate = sample_rate(len(train), CONFIG_SMALL.sample_size)
    sample = [d for d in train if in_sample(d["doc_id"], rate)]
    tokens = [words(d["text"])[:CONFIG_SMALL.max_tokens_per_document] for d in sample]
    values = on_disk["trend_values"]
    assert values["train_documents"] == len(train)
    assert values["holdout_documents"] == sum(d["split"] == "anchor_holdout" for d in docs)
    assert values["unigram_entropy"] == pytest.approx(unigram_entropy(counts["train"].values()))
    assert values["tail_mass"] == pytest.approx(tail_mass(counts["train"], head))
    assert values["rare_vocabulary_coverage"] == pytest.approx(
        rare_vocabulary_coverage(counts["train"], counts[INPUT], head))
    for n in (1, 2, 3, 4):
        assert values[f"distinct_{n}"] == pytest.approx(distinct_n(tokens, n))
    assert values["compression_ratio"] == pytest.approx(compression_ratio(window_text(t) for t in tokens))
    assert values["synthetic_share_above_p75"] == pytest.approx(
        sum(d["synthetic_score"] > 0.75 for d in train) / len(train))
    assert values["anchor_document_share"] == pytest.approx(sum(bool(d.get("is_anchor")) for d in train) / len(train))
    metrics = on_disk["metrics"]["documents"]
    assert metrics[INPUT]["documents"] == len(docs)  # input = train + anchor_holdout + rejected
    assert metrics[INPUT]["languages"] == dict(collections.Counter(d["lang"] for d in docs).most_common())
    assert on_disk["sampling"]["train"] == {"rate": rate, "documents": len(sample), "of_documents": len(train),
                                            "tokens": sum(map(len, tokens))}
    assert on_disk["history"][-1]["run_id"] == "night1" and len(on_disk["history"]) == 1
    assert on_disk["drift"] == []
    written = sorted(p.name for p in (root / "night1" / "report").iterdir())
    assert written == sorted(["report.json", "report.html"] + single["plots"])
    assert "trends.png" not in single["plots"] and "synthetic.png" in single["plots"]


def test_second_snapshot_trends_and_flags_the_synthetic_rise(fixture_reports):
    root, _, single, double = fixture_reports
    assert [h["run_id"] for h in double["history"]] == ["night1", "night2"]
    assert double["history"][0]["values"] == pytest.approx(single["trend_values"])
    assert "trends.png" in double["plots"]
    flags = {(f["metric"], f["direction"]) for f in double["drift"]}
    assert flags == {("synthetic_mean_score", "rise")}  # the text did not change, so the tail did not move
    flag = double["drift"][0]
    assert flag["change"] == pytest.approx(double["trend_values"]["synthetic_mean_score"]
                                           - single["trend_values"]["synthetic_mean_score"])
    assert double["trend_values"]["anchor_weighted_token_share"] == 0.31
    risk = double["collapse_risk"]  # the verdict line: anchors 31 % of sampled tokens is below the watch bound
    assert risk["level"] == "watch" and risk["line"].startswith("collapse risk WATCH") and risk["thresholds"]
    page = (root / "night2" / "report" / "report.html").read_text()
    assert "Drift beyond bounds" in page and "synthetic_mean_score" in page
    assert 'src="http' not in page and "<link" not in page  # self-contained


def test_history_of_an_unreported_snapshot_is_computed_and_cached_not_written_into_it(tmp_path):
    docs = fixture_documents()
    first = write_snapshot(tmp_path, "a", docs)
    second = write_snapshot(tmp_path, "b", docs, previous=first)
    result = report.write_report(str(second), config=CONFIG_SMALL)
    assert [h["run_id"] for h in result["history"]] == ["a", "b"]
    assert not (first / "report").exists()
    cached = json.loads((second / "report" / "history" / "a.json").read_text())
    assert cached["trend_values"] == pytest.approx(result["history"][0]["values"])
    assert report.snapshot_history(str(second), 0) == []
    assert [m["run_id"] for _, m in report.snapshot_history(str(second), 5)] == ["a"]


def test_materialized_copies_count_once_and_rejected_duplicates_each(tmp_path):
    base = {"text": "a document", "lang": "en"}
    train = [dict(base, doc_id="b" * 32, split="train", repeats=3)] * 3 + [dict(base, doc_id="c" * 32, split="train")]
    rejected = [dict(base, doc_id="b" * 32, split="rejected", reject_reason="exact_duplicate")] * 2
    for split, rows in (("train", train), ("rejected", rejected)):
        write_parquet(str(tmp_path / f"{split}.parquet"), split, rows, documents_table, documents_table([]).schema,
                      SinkConfig())
    read = {split: list(report.ReadSplitFileFn().process((str(tmp_path / f"{split}.parquet"), split)))
            for split in ("train", "rejected")}
    assert [d["doc_id"][0] for d in read["train"]] == ["b", "c"]
    assert len(read["rejected"]) == 2 and all(d["split"] == "rejected" for d in read["rejected"])
    assert "repeats" not in read["train"][0] and "source_uri" not in read["train"][0]


def test_command_line_reads_the_snapshot_config_and_rejects_bad_keys(tmp_path, capsys):
    snapshot = write_snapshot(tmp_path, "only", fixture_documents())
    (tmp_path / "LATEST").write_text("only\n")  # an output root names its snapshot through LATEST
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args([str(tmp_path), "--set", "report.sample_size=10", "--set", "report.tail_rank=5"])
    assert report.main(args) == 0
    assert "report:" in capsys.readouterr().out
    written = json.loads((snapshot / "report" / "report.json").read_text())
    assert written["config"]["sample_size"] == 10 and written["sampling"][INPUT]["rate"] == pytest.approx(10 / 60)
    from tailguard.transforms.settings import ConfigError

    with pytest.raises(ConfigError, match="report.max_rise.nonsense"):
        report.main(parser.parse_args([str(snapshot), "--set", "report.max_rise.nonsense=1"]))


# --------------------------------------------------------------------------------------------------- Chromium


def chromium_binary():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_in_chromium(page, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium, as root)")
    flags = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1300,3000"]
    url = page.resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", url],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run(flags + [f"--user-data-dir={tmp_path / 'profile-dom'}", "--enable-logging=stderr", "--v=0",
                                  "--dump-dom", url], check=True, capture_output=True, timeout=120, text=True)
    # Chromium logs page errors as CONSOLE lines ("Uncaught ReferenceError: ..."); failed loads as net errors.
    page_errors = [line for line in dom.stderr.splitlines()
                   if ":CONSOLE" in line or "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line]
    assert not page_errors, page_errors
    return shot, dom.stdout


def test_report_renders_in_headless_chromium_with_its_plots(fixture_reports, tmp_path):
    from PIL import Image
    import numpy as np

    root, _, _, double = fixture_reports
    shot, dom = render_in_chromium(root / "night2" / "report" / "report.html", tmp_path)
    n = len(double["plots"])
    # The page's own script counts images that decoded: every plot, none broken.
    assert f'data-images-loaded="{n}/{n}"' in dom
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank page
    non_white_rows = (pixels < 200).any(axis=1).mean()
    assert non_white_rows > 0.3  # plots fill the page, not just a heading


# --------------------------------------------------------------------------------------------------- real runs


def curate(output, run_id, inputs, *extra):
    argv = ["run", "--output", str(output), "--run-id", run_id, "--config", CONFIG]
    for pattern in inputs:
        argv += ["--input", str(pattern)]
    assert cli_main(argv + list(extra)) == 0


def test_report_of_a_curated_run_and_an_incremental_second_run(tmp_path):
    curate(tmp_path, "n1", [CORPUS / "inaugural.jsonl", CORPUS / "udhr.jsonl.zst"])
    curate(tmp_path, "n2", [CORPUS / "web_crawl_2025.jsonl.gz", CORPUS / "malformed.jsonl"],
           "--previous", str(tmp_path))
    second = report.write_report(str(tmp_path / "n2"))  # n1's figures are computed for the history
    assert [h["run_id"] for h in second["history"]] == ["n1", "n2"]
    first = second["history"][0]["values"]
    n1_counts = json.loads((tmp_path / "n1" / "manifest.json").read_text())["counts"]["out"]
    assert first["train_documents"] == n1_counts["train"]
    manifest = json.loads((tmp_path / "n2" / "manifest.json").read_text())
    counts = manifest["counts"]["out"]
    documents = second["metrics"]["documents"]
    assert documents["train"]["documents"] == counts["train"]
    assert documents[INPUT]["documents"] == counts["train"] + counts["anchor_holdout"] + counts["rejected"]
    assert second["trend_values"]["train_documents"] > first["train_documents"]  # accumulated
    assert "trends.png" in second["plots"]
    for name in second["plots"] + ["report.html", "report.json"]:
        assert (tmp_path / "n2" / "report" / name).stat().st_size > 1000
    if chromium_binary():
        shot, dom = render_in_chromium(tmp_path / "n2" / "report" / "report.html", tmp_path)
        n = len(second["plots"])
        assert f'data-images-loaded="{n}/{n}"' in dom


def test_the_html_template_shows_warnings_and_the_verdict_escaped(fixture_reports):
    _, _, single, _ = fixture_reports
    page = report.render_html(dict(single, warnings=["no anchors: set <anchors.cutoff>"],
                                   collapse_risk={"level": "high", "line": "anchor share 0.01 < 0.2"}), {})
    assert "no anchors: set &lt;anchors.cutoff&gt;" in page and "<anchors.cutoff>" not in page
    assert 'class="flag" id="verdict"' in page and "anchor share 0.01 &lt; 0.2" in page
    quiet = report.render_html(dict(single, warnings=[], collapse_risk=None), {})
    assert 'id="verdict"' not in quiet and "Warning:" not in quiet
