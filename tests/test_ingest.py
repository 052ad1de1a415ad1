"""Ingest: every record of every format becomes exactly one document, rejection or dead letter."""

from __future__ import annotations

import gzip
import io
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.testing.util import assert_that, equal_to

from tailguard.transforms.ingest import (IngestConfig, SourceConfig, check_inputs, document_from_record, format_of,
                               Ingest, length_verdict, parse_timestamp, read_file, source_for)
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.stage import DEAD_LETTERS
from tailguard.transforms.text import doc_id_for, normalize_text

GOOD = "A perfectly ordinary line of human prose that is long enough to pass the length filter."


def items_of(name: str, blob: bytes, config: IngestConfig | None = None):
    items = list(read_file(name, config or IngestConfig(), opener=lambda _: io.BytesIO(blob)))
    docs = [i.document for i in items if i.document is not None]
    dead = [i.dead for i in items if i.dead is not None]
    assert len(docs) + len(dead) == len(items)
    return docs, dead


def test_normalisation_is_recorded_and_ids_follow_normalised_text():
    text, how = normalize_text("Cafe\u0301\u200b  bar\r\n\r\n\r\nbaz\x07")
    assert text == "Café bar\n\nbaz"
    assert how == "nfc;control_removed=2;whitespace"
    assert normalize_text("plain text")[1] == "none"
    assert doc_id_for(text) == doc_id_for(normalize_text("Café bar\n\nbaz")[0])
    assert len(doc_id_for("x")) == 32


@pytest.mark.parametrize("value,fmt,expected", [
    (1789, "auto", "1789-01-01"),
    ("1789", "year", "1789-01-01"),
    ("2024-06-01T12:00:00Z", "auto", "2024-06-01T12:00:00"),
    ("2024-06-01", "iso", "2024-06-01T00:00:00"),
    (1_700_000_000, "epoch_s", "2023-11-14T22:13:20"),
    (1_700_000_000_000, "epoch_ms", "2023-11-14T22:13:20"),
])
def test_timestamps_parse_to_utc_micros(value, fmt, expected):
    import datetime as dt

    micros = parse_timestamp(value, fmt)
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)
    assert moment.isoformat().startswith(expected)


@pytest.mark.parametrize("bad", ["the day after tomorrow", True, float("nan")])
def test_bad_timestamps_raise(bad):
    with pytest.raises(ValueError):
        parse_timestamp(bad, "epoch_s" if isinstance(bad, float) else "auto")


def test_format_and_source_resolution():
    assert format_of("gs://b/x/part-1.jsonl.gz") == "jsonl.gz"
    assert format_of("/d/a.JSONL.ZST") == "jsonl.zst"
    assert format_of("/d/a.csv") is None
    sources = [SourceConfig(name="wiki", match="*/wiki/*.jsonl", tags=["cc"])]
    assert source_for("/data/wiki/a.jsonl", sources).name == "wiki"
    assert source_for("/data/other/b.jsonl.gz", sources).name == "b"


def test_record_mapping_with_nested_fields_ids_and_tags():
    source = SourceConfig(name="s", match="*", text_field="body.text", id_field="meta.id",
                          timestamp_field="meta.year", timestamp_format="year", tags=["verified_human"])
    doc = document_from_record({"body": {"text": GOOD}, "meta": {"id": 7, "year": 1901}}, source, "f.jsonl", 3,
                               None)
    assert doc["text"] == GOOD and doc["source_record_id"] == "7" and doc["source_offset"] == 3
    assert doc["source_tags"] == ["verified_human"] and doc["source"] == "s"
    assert doc["source_timestamp"] == parse_timestamp(1901, "year")


def test_length_limits_reject_with_reason():
    config = IngestConfig(min_chars=10, max_chars=20)
    assert length_verdict({"n_chars": 0}, config)[0] == "empty"
    assert length_verdict({"n_chars": 5}, config)[0] == "too_short"
    assert length_verdict({"n_chars": 21}, config)[0] == "too_long"
    assert length_verdict({"n_chars": 15}, config) is None


def test_every_kind_of_bad_jsonl_record_is_dead_lettered_with_its_offset():
    lines = [
        json.dumps({"text": GOOD}).encode(),
        b'{"text": "unterminated',
        b'{"text": "caf\xe9 not utf-8"}',
        json.dumps({"body": "elsewhere"}).encode(),
        json.dumps({"text": 5}).encode(),
        json.dumps([1, 2]).encode(),
        b"   ",
        json.dumps({"text": GOOD, "when": "soon"}).encode(),
    ]
    config = IngestConfig(sources=[SourceConfig(name="u", match="*", timestamp_field="when")])
    docs, dead = items_of("u.jsonl", b"\n".join(lines) + b"\n", config)
    assert [d["source_offset"] for d in docs] == [0]
    reasons = {d["source_offset"]: d["reason"] for d in dead}
    assert reasons == {1: "malformed_json", 2: "invalid_utf8", 3: "missing_text_field", 4: "text_not_string",
                       5: "not_an_object", 7: "bad_timestamp"}
    assert all(d["source_uri"] == "u.jsonl" and d["error"] for d in dead)
    assert dead[0]["excerpt"].startswith('{"text": "unterminated')


def test_oversized_line_is_dead_lettered_without_reading_it_whole():
    config = IngestConfig(max_record_bytes=1024)
    blob = json.dumps({"text": "x" * 5000}).encode() + b"\n" + json.dumps({"text": GOOD}).encode() + b"\n"
    docs, dead = items_of("big.jsonl", blob, config)
    assert [d["reason"] for d in dead] == ["record_too_large"]
    assert len(dead[0]["excerpt"].encode()) <= 512 + 16
    assert [d["source_offset"] for d in docs] == [1]


@pytest.mark.parametrize("name,compress", [
    ("t.jsonl.gz", lambda b: gzip.compress(b, mtime=0)),
    ("t.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_truncated_compressed_streams_keep_what_was_readable(name, compress):
    blob = b"".join(json.dumps({"text": f"{GOOD} #{i}"}).encode() + b"\n" for i in range(3000))
    whole = compress(blob)
    docs, dead = items_of(name, whole)
    assert len(docs) == 3000 and not dead
    docs, dead = items_of(name, whole[: len(whole) // 2])
    assert 0 < len(docs) < 3000
    assert [d["reason"] for d in dead] == ["truncated_or_corrupt_stream"]
    assert dead[0]["source_offset"] == len(docs)


def test_empty_files_and_unknown_formats_are_dead_letters():
    for name in ("e.jsonl", "e.txt"):
        docs, dead = items_of(name, b"")
        assert not docs and [d["reason"] for d in dead] == ["empty_file"]
    docs, dead = items_of("e.csv", b"a,b\n")
    assert [d["reason"] for d in dead] == ["unsupported_format"]


def test_txt_is_one_document_and_bad_bytes_are_dead_lettered():
    docs, dead = items_of("book.txt", ("\ufeff" + GOOD + "\n\nMore.").encode())
    assert len(docs) == 1 and docs[0]["text"].startswith("A perfectly") and docs[0]["source_offset"] == 0
    docs, dead = items_of("book.txt", b"\xff\xfe\x00")
    assert [d["reason"] for d in dead] == ["invalid_utf8"]


def parquet_bytes(table: pa.Table, **kwargs) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


def test_parquet_rows_map_fields_and_bad_rows_go_to_dead_letters():
    table = pa.table({"doc": [GOOD, None, "x" * 80], "page": ["a", "b", "c"],
                      "fetched": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03"]})
    config = IngestConfig(sources=[SourceConfig(name="p", match="*", text_field="doc", id_field="page",
                                                timestamp_field="fetched")])
    docs, dead = items_of("r.parquet", parquet_bytes(table, row_group_size=2), config)
    assert [d["source_offset"] for d in docs] == [0, 2]
    assert [d["source_record_id"] for d in docs] == ["a", "c"]
    assert [(d["source_offset"], d["reason"]) for d in dead] == [(1, "text_not_string")]


def test_corrupt_and_empty_parquet_files():
    docs, dead = items_of("c.parquet", b"PAR1 this is not parquet")
    assert [d["reason"] for d in dead] == ["unreadable_file"]
    empty = parquet_bytes(pa.table({"text": pa.array([], pa.string())}))
    docs, dead = items_of("z.parquet", empty)
    assert [d["reason"] for d in dead] == ["empty_file"]


def test_config_rejects_bad_values_naming_the_key():
    with pytest.raises(ConfigError, match="max_chars"):
        IngestConfig(min_chars=100, max_chars=10).validate()
    with pytest.raises(ConfigError, match="timestamp"):
        SourceConfig(name="a", match="*", timestamp="not a date").validate()


def test_check_inputs_fails_on_a_pattern_matching_nothing(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": GOOD}) + "\n")
    assert check_inputs([str(tmp_path / "*.jsonl")]) == {str(tmp_path / "*.jsonl"): 1}
    with pytest.raises(ConfigError, match="matches no file"):
        check_inputs([str(tmp_path / "*.parquet")])


def test_ingest_transform_reads_files_once_and_routes_every_record(tmp_path, beam_pipeline):
    (tmp_path / "a.jsonl").write_text("\n".join([json.dumps({"text": GOOD}), "{bad", json.dumps({"text": "short"})]))
    (tmp_path / "b.txt").write_text(GOOD + " (b)")
    with beam_pipeline() as p:
        out = p | Ingest(IngestConfig(), [str(tmp_path / "*"), str(tmp_path / "a.*")])
        assert_that(out.kept | beam.Map(lambda d: (d["source"], d["source_offset"])),
                    equal_to([("a", 0), ("b", 0)]), label="documents")
        assert_that(out.rejected | beam.Map(lambda d: (d["rejected_by"], d["reject_reason"])),
                    equal_to([("ingest", "too_short")]), label="rejected")
        assert_that(out.extra[DEAD_LETTERS] | beam.Map(lambda d: (d["source_offset"], d["reason"])),
                    equal_to([(1, "malformed_json")]), label="dead")


# ---------------------------------------------------------------------- common corpus formats (ingest.format)
# Records shaped as each corpus publishes them (field names, nesting and value formats), with made-up text.

C4 = {"text": "Beginners BBQ Class Taking Place in Missoula!\nDo you want to get better at making delicious BBQ?",
      "timestamp": "2019-04-25T12:57:54Z", "url": "https://klyq.com/beginners-bbq-class-taking-place-in-missoula/"}
DOLMA = {"id": "b2e5a6a3-5d1c-4f0e-9d5c-0c7e0f5a1e11", "text": "The Town Council met on Tuesday to discuss roads.",
         "source": "common-crawl", "added": "2023-08-09T18:06:37.870Z", "created": "2020-02-14T08:31:02.000Z",
         "metadata": {"url": "https://example.org/council/roads", "language": "en", "warc_date": "2020-02-14"},
         "version": "v1.7"}
FINEWEB = {"text": "How to plant tomatoes in a small garden. Start with a sunny spot.",
           "id": "<urn:uuid:d2c2aa6c-7f71-4d3c-9bbf-2a0f6b8f8c11>", "dump": "CC-MAIN-2013-20",
           "url": "http://garden.example.com/tomatoes", "date": "2013-05-18T05:48:54Z",
           "file_path": "s3://commoncrawl/crawl-data/CC-MAIN-2013-20/segments/1368696381249/warc/"
                        "CC-MAIN-20130516092621-00000-ip-10-60-113-184.ec2.internal.warc.gz",
           "language": "en", "language_score": 0.9185, "token_count": 594}
REDPAJAMA = {"text": "\\section{Introduction} We study the spectral gap of random regular graphs.",
             "meta": {"timestamp": "2023-03-10T02:03:15", "yymm": "2303", "arxiv_id": "2303.05567",
                      "language": "en", "url": "https://arxiv.org/abs/2303.05567"}}
REDPAJAMA_V2 = {"url": "https://news.example.net/a/1", "date_download": "2023-06-04T11:24:51Z",
                "digest": "sha1:4TGDNJUWNB2KFGSZ6B2SJXOP2MYUNJC7", "length": 63, "nlines": 1,
                "source_domain": "news.example.net", "title": "A headline",
                "raw_content": "A headline and the first paragraph of a news story, long enough.",
                "cc_segment": "crawl-data/CC-MAIN-2023-14/segments/1679296943471.24/warc/x.warc.gz",
                "original_nlines": 12, "original_length": 980, "line_ids": [0], "language": "en",
                "language_score": 0.97}
PILE = {"text": "It is done, and submitted. You can play Survival of the Tastiest on Android.",
        "meta": {"pile_set_name": "Pile-CC"}}


def iso_micros(text: str) -> int:
    return parse_timestamp(text, "iso")


@pytest.mark.parametrize("corpus_format,record,text,record_id,url,timestamp", [
    ("c4", C4, C4["text"], None, C4["url"], "2019-04-25T12:57:54Z"),
    ("dolma", DOLMA, DOLMA["text"], DOLMA["id"], DOLMA["metadata"]["url"], "2020-02-14T08:31:02Z"),
    ("fineweb", FINEWEB, FINEWEB["text"], FINEWEB["id"], FINEWEB["url"], "2013-05-18T05:48:54Z"),
    ("redpajama", REDPAJAMA, REDPAJAMA["text"], None, REDPAJAMA["meta"]["url"], "2023-03-10T02:03:15Z"),
    ("redpajama", REDPAJAMA_V2, REDPAJAMA_V2["raw_content"], None, REDPAJAMA_V2["url"], "2023-06-04T11:24:51Z"),
    ("pile", PILE, PILE["text"], None, None, None),
])
def test_common_corpus_formats_are_read_without_a_source_mapping(corpus_format, record, text, record_id, url,
                                                                  timestamp):
    for pinned in ("auto", corpus_format):
        docs, dead = items_of("corpus.jsonl", json.dumps(record).encode() + b"\n", IngestConfig(format=pinned))
        assert not dead, (pinned, dead)
        doc = docs[0]
        assert doc["text"] == text and doc.get("source_record_id") == record_id and doc.get("source_url") == url
        assert doc.get("source_timestamp") == (iso_micros(timestamp) if timestamp else None)


def test_fallback_timestamps_are_upper_bounds_used_only_alone():
    only_dump = {k: v for k, v in FINEWEB.items() if k != "date"}
    docs, _ = items_of("f.jsonl", json.dumps(only_dump).encode(), IngestConfig(format="fineweb"))
    assert docs[0]["source_timestamp"] == iso_micros("2013-05-13")  # Monday of ISO week 20 of 2013
    only_added = {k: v for k, v in DOLMA.items() if k != "created"}
    docs, _ = items_of("d.jsonl", json.dumps(only_added).encode(), IngestConfig(format="dolma"))
    assert docs[0]["source_timestamp"] == iso_micros("2023-08-09T18:06:37.870Z")


def test_a_pinned_format_reads_only_its_own_names():
    docs, _ = items_of("f.jsonl", json.dumps(FINEWEB).encode(), IngestConfig(format="c4"))
    assert "source_timestamp" not in docs[0] and "source_record_id" not in docs[0]
    docs, dead = items_of("r.jsonl", json.dumps(REDPAJAMA_V2).encode(), IngestConfig(format="c4"))
    assert [d["reason"] for d in dead] == ["missing_text_field"]


def test_disagreeing_timestamps_use_the_first_documented_and_are_counted():
    record = {"text": GOOD, "timestamp": "2019-04-25T12:57:54Z", "date": "2021-01-01T00:00:00Z"}
    items = list(read_file("x.jsonl", IngestConfig(), opener=lambda _: io.BytesIO(json.dumps(record).encode())))
    assert items[0].document["source_timestamp"] == iso_micros("2019-04-25T12:57:54Z")
    assert items[0].events == ("timestamp_fields_disagree",)
    same_day = {"text": GOOD, "timestamp": "2019-04-25T12:57:54Z", "date": "2019-04-25"}
    items = list(read_file("x.jsonl", IngestConfig(), opener=lambda _: io.BytesIO(json.dumps(same_day).encode())))
    assert items[0].events == ()
    items = list(read_file("x.jsonl", IngestConfig(), opener=lambda _: io.BytesIO(json.dumps({"text": GOOD}).encode())))
    assert items[0].events == ("no_timestamp",)


def test_an_explicit_source_mapping_wins_over_recognised_names():
    source = SourceConfig(name="c4", match="*", text_field="text", timestamp_field="url")
    docs, dead = items_of("c.jsonl", json.dumps(C4).encode(), IngestConfig(sources=[source]))
    assert [d["reason"] for d in dead] == ["bad_timestamp"]  # mapped fields must parse; recognised ones need not
    source = SourceConfig(name="fixed", match="*", timestamp="1990-01-01")
    docs, _ = items_of("c.jsonl", json.dumps(C4).encode(), IngestConfig(sources=[source]))
    assert docs[0]["source_timestamp"] == iso_micros("1990-01-01") and docs[0]["source_url"] == C4["url"]


def test_an_unknown_ingest_format_is_a_config_error_naming_the_key():
    from tailguard.pipelines.config import load_config

    with pytest.raises(ConfigError, match="ingest.format"):
        load_config(None, ["ingest.format=c5"])
    assert load_config(None, ["ingest.format=dolma"]).ingest.format == "dolma"


def test_ingest_counts_documents_without_timestamps_and_disagreements(tmp_path, beam_pipeline):
    from apache_beam.metrics.metric import MetricsFilter

    records = [C4, {"text": GOOD}, {"text": GOOD + " 2"}, {**C4, "date": "2001-01-01"}]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records)
                                          + '{"text": "lone \\ud800 and NUL \\u0000"}\n')
    pipeline = beam_pipeline()
    _ = pipeline | Ingest(IngestConfig(min_chars=1), [str(tmp_path / "*.jsonl")])
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("ingest"))["counters"]}
    assert counters["no_timestamp"] == 3 and counters["timestamp_fields_disagree"] == 1
    assert counters["surrogates_replaced"] == 1 and counters["control_removed"] == 1
