"""Sink and publishing: deterministic shards, checksums, reconciliation, LATEST only after the manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from tailguard.pipelines import publish
from tailguard.transforms.document import ARROW_SCHEMA, from_arrow_table, to_arrow_table
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.sink import SinkConfig, WriteShards, WriteSnapshot, shard_name, shard_of, shards_for


def doc(i: int, **extra) -> dict:
    base = {"doc_id": f"{i:032x}", "text": f"document number {i}", "source": "s", "source_uri": "u",
            "source_offset": i, "source_tags": ["t"], "normalization": "none", "n_chars": 18,
            "source_timestamp": 1_600_000_000_000_000 + i, "lang_alternatives": {"fr": 0.1}}
    base.update(extra)
    return base


def test_shard_naming_and_assignment_are_stable():
    assert shard_name(3, 12, "parquet") == "part-00003-of-00012.parquet"
    assert shard_of("abc", 7) == shard_of("abc", 7)
    assert len({shard_of(f"{i:032x}", 8) for i in range(200)}) == 8
    assert shards_for(0, SinkConfig()) == 1
    assert shards_for(120, SinkConfig(rows_per_shard=50)) == 3
    assert shards_for(120, SinkConfig(num_shards=4)) == 4


def test_records_round_trip_through_the_declared_arrow_schema():
    records = [doc(1), doc(2, lang="en", lang_score=0.9)]
    table = to_arrow_table(records)
    assert table.schema.equals(ARROW_SCHEMA)
    back = from_arrow_table(table)
    assert back == records


def test_sink_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="rows_per_shard"):
        SinkConfig(rows_per_shard=0).validate()


def write_and_read(tmp_path, beam_pipeline, records, config):
    out = tmp_path / "train"
    with beam_pipeline() as p:
        _ = p | beam.Create(records) | WriteShards(str(out), "train", config)
    files = sorted(out.glob("*.parquet"))
    return files, [pq.read_table(f) for f in files]


def test_write_shards_is_deterministic_and_sorted(tmp_path, beam_pipeline):
    records = [doc(i) for i in range(57)]
    config = SinkConfig(rows_per_shard=20, row_group_rows=7)
    files, tables = write_and_read(tmp_path / "a", beam_pipeline, records, config)
    assert [f.name for f in files] == [shard_name(i, 3, "parquet") for i in range(3)]
    assert sum(t.num_rows for t in tables) == 57
    for t in tables:
        ids = t.column("doc_id").to_pylist()
        assert ids == sorted(ids)
    again, _ = write_and_read(tmp_path / "b", beam_pipeline, list(reversed(records)), config)
    digest = lambda fs: [hashlib.sha256(f.read_bytes()).hexdigest() for f in fs]
    assert digest(files) == digest(again)
    assert not list((tmp_path / "a" / "train").glob("*.tmp-*"))


def run_snapshot(tmp_path, beam_pipeline, train, rejected, dead, read_total, config=SinkConfig()):
    run_dir = str(tmp_path / "out" / "r1")
    with beam_pipeline() as p:
        make = lambda label, items: p | label >> beam.Create(items)
        inputs = {"train": make("T", train), "anchor_holdout": make("H", []), "rejected": make("R", rejected),
                  "dead_letter": make("D", dead), "read/all": make("Read", list(range(read_total)))}
        _ = inputs | WriteSnapshot(run_dir, config)
    return run_dir


def publish_run(tmp_path, run_dir, config=SinkConfig()):
    now = dt.datetime.now(dt.timezone.utc)
    return publish.publish(output=str(tmp_path / "out"), run_dir=run_dir, run_id="r1", sink=config,
                           resolved_config={}, config_digest="0", inputs={}, previous=None, counters={},
                           started=now, finished=now, runner="test")


def test_publish_writes_manifest_then_latest_when_counts_reconcile(tmp_path, beam_pipeline):
    rejected = [doc(100, rejected_by="ingest", reject_reason="too_short")]
    dead = [{"source_uri": "u", "source_offset": 9, "reason": "malformed_json", "error": "x"}]
    run_dir = run_snapshot(tmp_path, beam_pipeline, [doc(i) for i in range(5)], rejected, dead, read_total=7)
    manifest = publish_run(tmp_path, run_dir)
    assert manifest["counts"]["reconciled"] is True
    assert manifest["rejected_by_reason"] == {"ingest.too_short": 1}
    assert manifest["dead_letter_by_reason"] == {"malformed_json": 1}
    assert (tmp_path / "out" / "LATEST").read_text().strip() == "r1"
    on_disk = json.loads((tmp_path / "out" / "r1" / "manifest.json").read_text())
    for f in on_disk["files"]:
        data = (tmp_path / "out" / "r1" / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    # An empty split still has a readable file with the schema.
    holdout = pq.read_table(tmp_path / "out" / "r1" / "anchor_holdout")
    assert holdout.num_rows == 0 and holdout.schema.names == ARROW_SCHEMA.names


def test_a_run_that_lost_a_record_is_not_published(tmp_path, beam_pipeline):
    run_dir = run_snapshot(tmp_path, beam_pipeline, [doc(i) for i in range(5)], [], [], read_total=6)
    with pytest.raises(publish.RunFailed, match="DOES NOT HOLD"):
        publish_run(tmp_path, run_dir)
    assert not (tmp_path / "out" / "r1" / "manifest.json").exists()
    assert not (tmp_path / "out" / "LATEST").exists()
    assert (tmp_path / "out" / "r1" / "_stats" / "manifest.unpublished.json").exists()


def test_rejected_can_be_counted_without_being_written(tmp_path, beam_pipeline):
    config = SinkConfig(write_rejected=False)
    rejected = [doc(100, rejected_by="langid", reject_reason="language_not_allowed")]
    run_dir = run_snapshot(tmp_path, beam_pipeline, [doc(1)], rejected, [], read_total=2, config=config)
    manifest = publish_run(tmp_path, run_dir, config)
    assert manifest["counts"]["reconciled"] and manifest["counts"]["out"]["rejected"] == 1
    assert not (tmp_path / "out" / "r1" / "rejected").exists()


def test_rerunning_a_run_id_unpublishes_it_first(tmp_path):
    run_dir = tmp_path / "out" / "r1"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "part-00000-of-00001.parquet").write_bytes(b"old")
    (run_dir / "manifest.json").write_text("{}")
    publish.prepare_run_dir(str(run_dir))
    assert not (run_dir / "manifest.json").exists()
    assert not list(run_dir.rglob("*.parquet"))


def test_run_ids_and_output_checks(tmp_path):
    assert publish.check_run_id("2026-11-20_nightly") == "2026-11-20_nightly"
    for bad in ("", "../x", "a/b", "x" * 200):
        with pytest.raises(ConfigError, match="--run-id"):
            publish.check_run_id(bad)
    publish.check_output_writable(str(tmp_path / "new" / "dir"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="--output"):
        publish.check_output_writable(str(blocker / "sub"))
