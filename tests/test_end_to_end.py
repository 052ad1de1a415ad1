"""`tailguard run` end to end on real files: the demo corpus, every kind of bad input, runners, re-runs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tailguard.pipelines.cli import main
from tests.conftest import EXAMPLES, ROOT, demo_inputs

DEMO_CONFIG = str(EXAMPLES / "curate.yaml")


def run(inputs: list[str], output: Path, *extra: str, run_id: str = "r1") -> int:
    argv = ["run", "--output", str(output), "--run-id", run_id]
    for pattern in inputs:
        argv += ["--input", pattern]
    return main(argv + list(extra))


def manifest_of(output: Path, run_id: str = "r1") -> dict:
    return json.loads((output / run_id / "manifest.json").read_text())


def rows(output: Path, split: str, run_id: str = "r1") -> list[dict]:
    return pq.read_table(output / run_id / split).to_pylist()


def dead_letters(output: Path, run_id: str = "r1") -> list[dict]:
    out = []
    for path in sorted((output / run_id / "dead_letter").glob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    assert run(demo_inputs(), output, "--config", DEMO_CONFIG) == 0
    return output


def test_demo_run_publishes_a_reconciled_snapshot_readable_by_pyarrow_and_duckdb(demo_run):
    manifest = manifest_of(demo_run)
    assert manifest["counts"]["reconciled"] is True
    assert (demo_run / "LATEST").read_text().strip() == "r1"
    train = pq.read_table(demo_run / "r1" / "train")
    assert train.num_rows > 100
    by_source = dict(duckdb.sql(
        f"select source, count(*) from '{demo_run}/r1/train/*.parquet' group by source").fetchall())
    assert {"inaugural", "gutenberg", "wikitext", "udhr", "web_crawl_2025"} <= set(by_source)
    assert sum(f["rows"] for f in manifest["files"] if f["split"] == "train") == train.num_rows
    assert manifest["versions"]["apache_beam"].startswith("2.77")
    assert manifest["config"]["ingest"]["sources"][0]["name"] == "inaugural"


def test_demo_provenance_is_carried_to_every_row(demo_run):
    for row in rows(demo_run, "train"):
        assert row["doc_id"] and row["source_uri"].startswith(str(EXAMPLES))
        assert row["source_offset"] is not None and row["split"] == "train"
    inaugural = [r for r in rows(demo_run, "train") if r["source"] == "inaugural"]
    assert all(r["source_timestamp"].year <= 2017 and "verified_human" in r["source_tags"] for r in inaugural)


def test_demo_dated_and_verified_human_text_becomes_anchors_and_machine_text_does_not(demo_run):
    docs = rows(demo_run, "train") + rows(demo_run, "anchor_holdout")
    by_source = {}
    for row in docs:
        by_source.setdefault(row["source"], []).append(row)
    assert all(r["is_anchor"] for r in by_source["inaugural"])
    assert all(r["is_anchor"] and r["anchor_reason"].startswith("verified_source") for r in by_source["gutenberg"])
    crawl = (EXAMPLES / "corpus" / "web_crawl_2025.jsonl.gz")
    machine_offsets = {i for i, line in enumerate(gzip.open(crawl, "rt")) if json.loads(line)["label"] == "machine"}
    machine = [r for r in by_source["web_crawl_2025"] if r["source_offset"] in machine_offsets]
    assert machine and not any(r["is_anchor"] for r in machine)
    train = rows(demo_run, "train")
    anchors = [r["sample_weight"] for r in train if r["is_anchor"]]
    assert abs(sum(anchors) / len(anchors) - 1.0) < 1e-6 and max(r["sample_weight"] for r in train) <= 4.0
    holdout_ids = {r["doc_id"] for r in rows(demo_run, "anchor_holdout")}
    assert holdout_ids and not holdout_ids & {r["doc_id"] for r in train}


def test_every_record_of_the_malformed_file_is_accounted_for_exactly_once(demo_run):
    uri = str(EXAMPLES / "corpus" / "malformed.jsonl")
    lines = (EXAMPLES / "corpus" / "malformed.jsonl").read_bytes().split(b"\n")
    expected = {i for i, line in enumerate(lines) if line.strip()}
    seen = []
    for split in ("train", "anchor_holdout", "rejected"):
        seen += [r["source_offset"] for r in rows(demo_run, split) if r["source_uri"] == uri]
    seen += [d["source_offset"] for d in dead_letters(demo_run) if d["source_uri"] == uri]
    assert sorted(seen) == sorted(expected)


def make_bad_inputs(directory: Path) -> dict[str, str]:
    """One file per kind of bad input; returns {file name: the dead-letter reason it must produce}."""
    good = json.dumps({"text": "An ordinary human sentence, long enough to be kept by the ingest stage."})
    directory.mkdir()
    (directory / "good.jsonl").write_text(good + "\n")
    (directory / "malformed.jsonl").write_text(good + "\n" + '{"text": "no end' + "\n")
    (directory / "invalid_utf8.jsonl").write_bytes(b'{"text": "\xff\xfe broken bytes in a long enough line"}\n')
    (directory / "missing_text.jsonl").write_text(json.dumps({"content": "x" * 80}) + "\n")
    (directory / "non_string.jsonl").write_text(json.dumps({"text": ["a", "list"]}) + "\n")
    blob = gzip.compress(b"".join((good + "\n").encode() for _ in range(500)), mtime=0)
    (directory / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (directory / "empty.jsonl").write_bytes(b"")
    (directory / "corrupt.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    (directory / "notes.csv").write_text("a,b\n")
    (directory / "bad.txt").write_bytes(b"\xc3\x28 invalid")
    return {"malformed.jsonl": "malformed_json", "invalid_utf8.jsonl": "invalid_utf8",
            "missing_text.jsonl": "missing_text_field", "non_string.jsonl": "text_not_string",
            "truncated.jsonl.gz": "truncated_or_corrupt_stream", "empty.jsonl": "empty_file",
            "corrupt.parquet": "unreadable_file", "notes.csv": "unsupported_format", "bad.txt": "invalid_utf8"}


def test_every_kind_of_bad_input_is_dead_lettered_and_the_run_still_reconciles(tmp_path):
    expected = make_bad_inputs(tmp_path / "in")
    output = tmp_path / "out"
    assert run([str(tmp_path / "in" / "*")], output, "--set", "langid.enabled=false") == 0
    manifest = manifest_of(output)
    assert manifest["counts"]["reconciled"]
    got = {}
    for d in dead_letters(output):
        got.setdefault(Path(d["source_uri"]).name, set()).add(d["reason"])
    assert got == {name: {reason} for name, reason in expected.items()}
    kept = rows(output, "train") + rows(output, "rejected")
    kept_from = {Path(r["source_uri"]).name for r in kept}
    assert {"good.jsonl", "malformed.jsonl", "truncated.jsonl.gz"} <= kept_from


def test_multi_processing_with_two_workers_gives_byte_identical_files(tmp_path, demo_run):
    output = tmp_path / "mp"
    code = run(demo_inputs(), output, "--config", DEMO_CONFIG, "--direct_running_mode", "multi_processing",
               "--direct_num_workers", "2")
    assert code == 0
    checksums = lambda m: {f["path"]: f["sha256"] for f in m["files"]}
    assert checksums(manifest_of(output)) == checksums(manifest_of(demo_run))


def test_rerunning_the_same_run_id_replaces_it_with_the_same_documents(tmp_path, demo_run):
    output = tmp_path / "again"
    assert run(demo_inputs(), output, "--config", DEMO_CONFIG, "--set", "sink.rows_per_shard=7") == 0
    stray = output / "r1" / "train" / "part-99999-of-99999.parquet"
    stray.write_bytes(b"left over from a crashed attempt")
    assert run(demo_inputs(), output, "--config", DEMO_CONFIG) == 0
    assert not stray.exists()
    ids = lambda out: sorted(r["doc_id"] for r in rows(out, "train"))
    assert ids(output) == ids(demo_run)


def test_previous_snapshot_documents_are_carried_forward_unchanged(tmp_path, demo_run):
    first = tmp_path / "first"
    extra = tmp_path / "day1"
    extra.mkdir()
    (extra / "a.jsonl").write_text(json.dumps({"text": "A brand new human sentence about the harvest festival "
                                                       "in the hills, written on the first day."}) + "\n")
    assert run([str(extra / "*.jsonl")], first, "--set", "langid.enabled=false", run_id="d1") == 0
    day2 = tmp_path / "day2"
    day2.mkdir()
    (day2 / "b.jsonl").write_text(json.dumps({"text": "Another unrelated human paragraph on river boats and "
                                                      "the merchants who used them in spring."}) + "\n")
    assert run([str(day2 / "*.jsonl")], first, "--set", "langid.enabled=false", "--previous", str(first),
               run_id="d2") == 0
    manifest = manifest_of(first, "d2")
    assert manifest["counts"]["carried_forward"] == 1 and manifest["counts"]["reconciled"]
    train = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(first, "train", "d2")}
    assert set(train) == {"a.jsonl", "b.jsonl"}
    assert train["a.jsonl"]["first_run_id"] == "d1" and train["b.jsonl"]["first_run_id"] == "d2"
    assert (first / "LATEST").read_text().strip() == "d2"


@pytest.mark.parametrize("args,message", [
    (["--input", "/nonexistent/*.jsonl"], "matches no file"),
    (["--set", "ingest.bogus=1"], "ingest.bogus"),
    (["--direct_running_mode", "multi_threading"], "multi_threading"),
    (["--run-id", "../escape"], "--run-id"),
    (["--previous", "/nonexistent/snapshot"], "--previous"),
])
def test_bad_arguments_fail_before_the_pipeline_starts(tmp_path, capsys, args, message):
    output = tmp_path / "out"
    argv = ["run", "--output", str(output)]
    if "--input" not in args:
        argv += ["--input", str(EXAMPLES / "corpus" / "inaugural.jsonl")]
    assert main(argv + args) == 2
    assert message in capsys.readouterr().err
    assert not list(output.glob("*/manifest.json"))


def test_unwritable_output_fails_at_once(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert run([str(EXAMPLES / "corpus" / "inaugural.jsonl")], blocker / "out") == 2
    assert "--output" in capsys.readouterr().err


def test_console_script_help_documents_every_option():
    result = subprocess.run([sys.executable, "-m", "tailguard.pipelines.cli", "run", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0
    for option in ("--input", "--output", "--config", "--set", "--run-id", "--previous", "--runner",
                   "--direct_running_mode", "multi_threading"):
        assert option in result.stdout
