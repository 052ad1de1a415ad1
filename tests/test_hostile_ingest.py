"""Hostile input to ingest: every damaged container, record and field becomes a document or a dead letter.

Property-based tests run a bounded number of examples in the default suite; the campaign that generated
>= 100,000 records through the parser sets TAILGUARD_HYPOTHESIS_SCALE (see benchmarks/README.md,
"Fuzzing"). Inputs the atheris fuzzers (tests/fuzz/) found are replayed from tests/fuzz/regressions/.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailguard.transforms.ingest import (DEAD_LETTER_REASONS, IngestConfig, mislabelled, parse_timestamp, read_file,
                                         sniff)
from tailguard.transforms.text import normalize_text, printable_excerpt
from tests.fuzz.readers import FORMATS, check

GOOD = "A perfectly ordinary line of human prose that is long enough to pass the length filter."
SCALE = int(os.environ.get("TAILGUARD_HYPOTHESIS_SCALE", "1"))
# The campaign's record count: each generated file appends its number of lines here when set.
RECORD_LOG = os.environ.get("TAILGUARD_HYPOTHESIS_RECORD_LOG")
REGRESSIONS = Path(__file__).parent / "fuzz" / "regressions"


def read(name: str, blob: bytes, config: IngestConfig | None = None):
    items = list(read_file(name, config or IngestConfig(), opener=lambda _: io.BytesIO(blob)))
    for item in items:
        assert (item.document is None) != (item.dead is None)
        record = item.document or item.dead
        json.dumps(record, ensure_ascii=False).encode("utf-8")  # what Beam's coders and the sink need
        if item.dead is not None:
            assert item.dead["reason"] in DEAD_LETTER_REASONS
            assert all(v is None or v.isprintable() for v in (item.dead["error"], item.dead["excerpt"]))
    docs = [i.document for i in items if i.document is not None]
    dead = [i.dead for i in items if i.dead is not None]
    return docs, dead


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def reasons(dead) -> list[tuple[int, str]]:
    return [(d["source_offset"], d["reason"]) for d in dead]


# ----------------------------------------------------------------------------------------- the three crashers


def test_a_zst_file_that_is_not_zstd_is_one_dead_letter():
    docs, dead = read("x.jsonl.zst", jsonl({"text": GOOD}))
    assert not docs and reasons(dead) == [(0, "not_compressed_as_named")]
    assert "not zstd" in dead[0]["error"]


def test_an_unpaired_surrogate_is_replaced_and_counted():
    docs, dead = read("s.jsonl", b'{"text": "' + GOOD.encode() + b' \\ud800 end", "id": "a\\udfff", '
                                 b'"url": "http://x/\\ud83d"}\n')
    assert not dead
    assert docs[0]["text"].endswith(" \ufffd end")
    assert docs[0]["normalization"] == "surrogates_replaced=1"
    assert docs[0]["source_record_id"] == "a\ufffd" and docs[0]["source_url"] == "http://x/\ufffd"
    # A well-formed escaped pair is one character, not a repair.
    docs, _ = read("s.jsonl", b'{"text": "smile \\ud83d\\ude00"}\n')
    assert docs[0]["text"] == "smile \U0001F600" and docs[0]["normalization"] == "none"


def test_json_nested_tens_of_thousands_deep_is_too_deep_and_the_run_goes_on():
    deep = b"[" * 50_000 + b"]" * 50_000
    docs, dead = read("d.jsonl", jsonl(deep, b'{"text": {"a": ' * 30_000 + b"1" + b"}" * 30_000, {"text": GOOD}))
    assert reasons(dead) == [(0, "too_deep"), (1, "too_deep")]
    assert [d["source_offset"] for d in docs] == [2]


# --------------------------------------------------------------------------------------- records and fields


def test_records_that_are_repaired_rather_than_dead_lettered():
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"text": GOOD}).encode(),  # UTF-8 BOM before the JSON
        json.dumps({"text": GOOD + "\x00\x00"}).encode() + b"\r",  # NUL characters, CRLF line end
        b'{"text": "' + GOOD.encode() + b'\ttab and \x1b[31m escape"}',  # raw control characters in a string
        json.dumps({"text": "\u202e" + GOOD}).encode(),  # right-to-left override
    ]
    docs, dead = read("r.jsonl", b"\n".join(lines) + b"\n")
    assert not dead and len(docs) == 4
    assert [d["normalization"] for d in docs] == ["none", "control_removed=2", "control_removed=1;whitespace",
                                                  "control_removed=1"]
    assert docs[2]["text"].endswith("tab and [31m escape")


def test_records_that_are_dead_lettered_each_with_its_reason():
    lines = [
        b'{"text": 1' + b"0" * 5000 + b"}",  # a number Python will not convert
        b'{"text": NaN}',  # parses, but is not text
        b"\xc3\x28 not utf-8",
        b'"just a string"',
        json.dumps({"text": None}).encode(),
        json.dumps({"text": ["a", "list"]}).encode(),
        json.dumps({"body": GOOD}).encode(),
        b"{" + b'"k": 1, ' * 10 + b'"text": "x"',  # cut mid-record
    ]
    docs, dead = read("b.jsonl", b"\n".join(lines))
    assert not docs
    assert reasons(dead) == [(0, "malformed_json"), (1, "text_not_string"), (2, "invalid_utf8"),
                             (3, "not_an_object"), (4, "text_not_string"), (5, "text_not_string"),
                             (6, "missing_text_field"), (7, "malformed_json")]


@pytest.mark.parametrize("value", [[1, 2], {"y": 1}, 10**30, 1e308, -1e308, float("inf"), "99999-01-01",
                                   "2024-13-01", "\x00", "\ud800", "0001-01-01T00:00:00+05:00", 10_000, -5])
def test_an_unparseable_recognised_timestamp_is_counted_not_fatal(value):
    items = list(read_file("t.jsonl", IngestConfig(), opener=lambda _: io.BytesIO(
        json.dumps({"text": GOOD, "timestamp": value}).encode())))
    assert len(items) == 1 and items[0].document is not None
    assert "source_timestamp" not in items[0].document or value in (10_000, -5)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
                 st.lists(st.integers(), max_size=3), st.datetimes(), st.dates()),
       st.sampled_from(["auto", "iso", "year", "epoch_s", "epoch_ms", "cc_dump"]))
@settings(max_examples=300 * SCALE, deadline=None)
def test_parse_timestamp_returns_a_representable_instant_or_raises_value_error(value, fmt):
    try:
        micros = parse_timestamp(value, fmt)
    except ValueError:
        return
    assert -62_135_596_800 * 10**6 <= micros <= 253_402_300_799_999_999
    pa.array([micros], pa.timestamp("us", tz="UTC"))


# ------------------------------------------------------------------------------ containers, damaged every way


def compress(kind: str, payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0) if kind == "gz" else zstandard.ZstdCompressor().compress(payload)


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_a_stream_cut_at_every_byte_keeps_a_prefix_and_marks_the_cut(kind):
    records = [{"text": f"{GOOD} #{i}"} for i in range(8)]
    whole = compress(kind, jsonl(*records))
    for cut in range(len(whole) + 1):
        docs, dead = read(f"c.jsonl.{kind}", whole[:cut])
        offsets = [d["source_offset"] for d in docs]
        assert offsets == list(range(len(docs))), cut  # what was read is a prefix, in order
        if cut == len(whole):
            assert len(docs) == 8 and not dead
        elif cut == 0:
            assert reasons(dead) == [(0, "empty_file")]
        else:
            assert len(dead) == 1 and dead[0]["source_offset"] == len(docs), cut
            assert dead[0]["reason"] in ("truncated_or_corrupt_stream", "not_compressed_as_named")


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_concatenated_streams_are_read_whole_and_trailing_garbage_marks_a_cut(kind):
    first, second = jsonl({"text": GOOD + " 1"}), jsonl({"text": GOOD + " 2"}, {"text": GOOD + " 3"})
    docs, dead = read(f"m.jsonl.{kind}", compress(kind, first) + compress(kind, second))
    assert [d["source_offset"] for d in docs] == [0, 1, 2] and not dead
    docs, dead = read(f"m.jsonl.{kind}", compress(kind, first) + b"garbage after the stream")
    assert [d["source_offset"] for d in docs] == [0]
    assert reasons(dead) == [(1, "truncated_or_corrupt_stream")]


@pytest.mark.parametrize("name,blob,why", [
    ("plain.jsonl.gz", jsonl({"text": GOOD}), "is not gzip"),
    ("gzip.jsonl.zst", gzip.compress(jsonl({"text": GOOD})), "looks like gzip"),
    ("zstd.jsonl.gz", zstandard.ZstdCompressor().compress(jsonl({"text": GOOD})), "looks like zstd"),
    ("parquet.jsonl.gz", b"PAR1" + bytes(64), "looks like parquet"),
    ("random.jsonl.zst", bytes(random.Random(1).randrange(256) for _ in range(4096)), "is not zstd"),
    ("gzip.jsonl", gzip.compress(jsonl({"text": GOOD})), "rename it .jsonl.gz"),
    ("zstd.txt", zstandard.ZstdCompressor().compress(GOOD.encode()), "rename it .jsonl.zst"),
])
def test_mislabelled_files_are_one_dead_letter_saying_what_they_are(name, blob, why):
    docs, dead = read(name, blob)
    assert not docs and reasons(dead) == [(0, "not_compressed_as_named")]
    assert why in dead[0]["error"]


def test_sniffing_names_each_container():
    assert sniff(b"\x1f\x8b\x08\x00") == "gzip" and sniff(b"\x1f\x8b\x07") is None
    assert sniff(b"\x28\xb5\x2f\xfd") == "zstd"
    assert sniff(b"\x50\x2a\x4d\x18") == "zstd"  # a skippable frame
    assert sniff(b"PAR1") == "parquet" and sniff(b'{"text"') is None
    assert mislabelled("jsonl", b'{"te') is None and mislabelled("parquet", b"\x1f\x8b") is None


def test_random_bytes_in_every_format_never_raise():
    rng = random.Random(7)
    for size in (1, 2, 7, 64, 4096):
        blob = bytes(rng.randrange(256) for _ in range(size))
        for name in FORMATS.values():
            docs, dead = read(name, blob)
            assert docs or dead


def test_a_zstd_bomb_is_decoded_in_bounded_steps():
    # 64 MiB of one byte compresses to a few KiB; reading it as one over-long line must stay bounded.
    bomb = zstandard.ZstdCompressor(level=19).compress(b"a" * (64 << 20))
    docs, dead = read("bomb.jsonl.zst", bomb, IngestConfig(max_record_bytes=1 << 20))
    assert reasons(dead) == [(0, "record_too_large")] and not docs


def parquet_bytes(table: pa.Table, **kwargs) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


@pytest.mark.parametrize("column,reason", [
    (pa.array([1, 2, 3]), "text_not_string"),
    (pa.array([{"inner": GOOD}] * 3), "text_not_string"),
    (pa.array([GOOD.encode()] * 3, pa.binary()), "text_not_string"),
    (pa.array([[GOOD]] * 3), "text_not_string"),
])
def test_parquet_with_a_text_column_of_the_wrong_type_dead_letters_each_row(column, reason):
    docs, dead = read("w.parquet", parquet_bytes(pa.table({"text": column})))
    assert not docs and reasons(dead) == [(0, reason), (1, reason), (2, reason)]


def test_parquet_without_the_text_column_and_with_a_cut_footer():
    docs, dead = read("m.parquet", parquet_bytes(pa.table({"body": [GOOD, GOOD]})))
    assert reasons(dead) == [(0, "missing_text_field"), (1, "missing_text_field")]
    whole = parquet_bytes(pa.table({"text": [GOOD] * 10}), row_group_size=3)
    for cut in range(len(whole) - 64, len(whole)):  # every cut inside the footer
        docs, dead = read("f.parquet", whole[:cut])
        assert not docs and reasons(dead) == [(0, "unreadable_file")]


def test_txt_in_legacy_encodings_bom_and_crlf():
    docs, dead = read("latin.txt", ("Caf\xe9 au lait. " + GOOD).encode("cp1252"))
    assert not docs and reasons(dead) == [(0, "invalid_utf8")] and "iconv" in dead[0]["error"]
    items = list(read_file("u.txt", IngestConfig(), opener=lambda _: io.BytesIO(GOOD.encode())))
    assert items[0].events == ("no_timestamp",)
    docs, _ = read("utf16.txt", ("Caf\xe9 au lait. " + GOOD).encode("utf-16"))
    assert docs[0]["text"].startswith("Café au lait.")
    docs, _ = read("bom.txt", b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n\r\nSecond paragraph.\r\n")
    assert docs[0]["text"] == GOOD + "\n\nSecond paragraph."


@pytest.mark.parametrize("error", [FileNotFoundError("gone"), PermissionError("denied"), IsADirectoryError("dir")])
def test_a_file_that_vanishes_or_becomes_unreadable_after_listing(error):
    def opener(_):
        raise error

    items = list(read_file("gone.jsonl", IngestConfig(), opener=opener))
    assert [(i.dead["source_offset"], i.dead["reason"]) for i in items] == [(0, "unreadable_file")]


def test_a_read_error_mid_file_keeps_what_was_read():
    class Failing(io.RawIOBase):
        def __init__(self):
            self.data = io.BytesIO(jsonl(*[{"text": f"{GOOD} {i}"} for i in range(2000)]))

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.data.tell() > 50_000:
                raise OSError("Input/output error")
            return self.data.readinto(buffer)

    items = list(read_file("io.jsonl", IngestConfig(), opener=lambda _: io.BufferedReader(Failing())))
    assert items[-1].dead["reason"] == "truncated_or_corrupt_stream"
    assert items[-1].dead["source_offset"] == len(items) - 1


def test_a_real_file_deleted_after_listing(tmp_path):
    path = tmp_path / "vanished.jsonl"
    path.write_text(json.dumps({"text": GOOD}) + "\n")
    path.unlink()
    items = list(read_file(str(path), IngestConfig()))
    assert [i.dead["reason"] for i in items] == ["unreadable_file"]


# -------------------------------------------------------------------------------------------------- excerpts


def test_excerpts_are_printable_and_bounded():
    hostile = b"\x1b]0;pwned\x07\x1b[2J\xe2\x80\xae\xed\xa0\x80\x00\xff" + "日本".encode()
    excerpt = printable_excerpt(hostile, 64)
    assert excerpt.isprintable() and "\x1b" not in excerpt and "\u202e" not in excerpt and "日本" in excerpt
    assert printable_excerpt("a\ud800b", 64) == "a\\xed\\xa0\\x80b"


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)), st.integers(0, 200))
@settings(max_examples=300 * SCALE, deadline=None)
def test_printable_excerpt_is_total(raw, limit):
    excerpt = printable_excerpt(raw, limit)
    assert excerpt.isprintable()
    excerpt.encode("utf-8")
    assert len(excerpt) <= 4 * limit * 3  # at most one \xNN or \uNNNN escape per input byte


# ------------------------------------------------------------------------------------ normalisation, any text


@given(st.text(alphabet=st.characters(), max_size=400))  # every code point, surrogates included
@settings(max_examples=500 * SCALE, deadline=None)
def test_normalize_text_is_total_and_its_output_is_encodable(raw):
    text, how = normalize_text(raw)
    text.encode("utf-8")
    assert all(ch in "\t\n" or ch.isprintable() or not ch.isascii() for ch in text)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    assert how == "none" or all(step.split("=")[0] in ("surrogates_replaced", "nfc", "control_removed",
                                                       "whitespace") for step in how.split(";"))


# ------------------------------------------------------------------------------ the record parser, generated

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text())
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4)), max_leaves=12)
FIELD_NAMES = st.sampled_from(["text", "raw_content", "id", "doc_id", "url", "timestamp", "created", "added",
                               "date", "dump", "date_download", "meta", "metadata", "source"])


def _escaped_surrogate(draw_text: str) -> bytes:
    return b'{"text": "' + json.dumps(draw_text)[1:-1].encode() + b'\\udc80"}'


LINES = st.one_of(
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6).map(lambda r: json.dumps(r).encode()),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6).map(
        lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(lambda t, extra: json.dumps({"text": t, **extra}).encode(), st.text(),
              st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=3)),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=50).map(_escaped_surrogate),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
)


# Campaign runs (SCALE > 1) generate longer files: more records per example for the same generation overhead.
@given(st.lists(LINES, min_size=1 if SCALE == 1 else 20, max_size=30 if SCALE == 1 else 60),
       st.sampled_from(["auto", "c4", "dolma", "fineweb", "redpajama", "pile"]))
@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.data_too_large])
def test_every_generated_line_is_exactly_one_document_or_dead_letter(lines, corpus_format):
    blob = b"\n".join(lines) + b"\n"
    if RECORD_LOG:
        with open(RECORD_LOG, "a") as log:
            log.write(f"{len(lines)}\n")
    docs, dead = read("g.jsonl", blob, IngestConfig(format=corpus_format))
    records = [i for i, line in enumerate(lines) if line.strip()]
    if sniff(blob[:8]) in ("gzip", "zstd"):  # a plain file that starts like a compressed one
        assert not docs and reasons(dead) == [(0, "not_compressed_as_named")]
        return
    if not records:
        assert reasons(dead) == [(0, "empty_file")]
        return
    offsets = sorted([d["source_offset"] for d in docs] + [d["source_offset"] for d in dead])
    assert offsets == records


# ----------------------------------------------------------------------------------- atheris findings, replayed


def regression_inputs():
    return sorted((p.parent.name, p) for p in REGRESSIONS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("fmt,path", regression_inputs(), ids=lambda v: getattr(v, "name", v))
def test_fuzzer_findings_stay_fixed(fmt, path):
    assert check(fmt, path.read_bytes()) >= 1


def test_the_readme_lists_every_dead_letter_reason():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Dead letters and repairs"):readme.index("### Common corpus formats")]
    assert [r for r in DEAD_LETTER_REASONS if f"| `{r}` |" not in section] == []


def test_a_file_name_that_is_not_utf8_is_read_and_named_printably(tmp_path):
    path = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"caf\xe9.jsonl"))
    with open(path, "w") as f:
        f.write(json.dumps({"text": GOOD}) + "\n")
    items = list(read_file(path, IngestConfig()))
    assert items[0].document["source_uri"].endswith("/caf\\xe9.jsonl")
    assert items[0].document["source"] == "caf\\xe9"
    json.dumps(items[0].document, ensure_ascii=False).encode("utf-8")
