"""`tailguard run` on a directory of hostile files: exit 0, a reconciled manifest, and every input unit -- line,
row or file -- in exactly one of train, anchor_holdout, rejected or dead_letter, found by (source URI, offset).

The files cover every class of tests/test_hostile_ingest.py in one run, plus texts that pass ingest but are
hostile to the later stages (emoji only, RTL marks, one 900,000-character token, no letters, every script).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tailguard.pipelines.cli import main

GOOD = "A perfectly ordinary line of human prose that is long enough to pass the length filter"


def line(record) -> bytes:
    return (record if isinstance(record, bytes) else json.dumps(record).encode()) + b"\n"


def good(i: int, **extra) -> dict:
    return {"text": f"{GOOD}, number {i}, about {random.Random(i).choice(['rivers', 'bread', 'roads'])}.", **extra}


# Texts that ingest accepts and every later stage must take in its stride.
HOSTILE_TEXTS = [
    "😀🎉🔥💯" * 20,
    "\u200f\u202bשלום עולם, זהו טקסט בעברית עם סימני כיווניות\u202c\u200e " * 3,
    "x" * 900_000,
    "1234567890 !@#$%^&*() ---- ==== .... 0987654321 ++++ //// " * 3,
    "Ελληνικά και 中文 και हिन्दी και العربية και ქართული και ᐃᓄᒃᑎᑐᑦ και 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 " * 3,
    "e\u0301" * 60 + " combining marks only after this point " + "\u0301" * 40,
    "\u00a0\u2003 \u3000 spaced\u2028out\u2029text with every kind of space in it, and then some more text",
]


def parquet(table: pa.Table, **kwargs) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


def build(directory: Path) -> dict[str, object]:
    """Write the hostile files; return per file name its expected units: a set of offsets, or "prefix" (a
    stream cut somewhere: documents 0..k-1 then one dead letter at k)."""
    expect: dict[str, object] = {}

    def put(name: str, blob: bytes, units):
        (directory / name).write_bytes(blob)
        expect[name] = units

    records = [
        line(good(0, timestamp="2019-04-25T12:57:54Z", url="https://example.org/0")),
        b"",  # blank lines are not records
        b'{"text": "unterminated',
        b'{"text": "' + GOOD.encode() + b' \\ud800 lone surrogate"}\n',
        b"[" * 50_000 + b"]" * 50_000 + b"\n",
        b'{"text": 1' + b"0" * 5000 + b"}\n",
        b"\xef\xbb\xbf" + line(good(6)),
        line(good(7)).replace(b"\n", b"\r\n"),
        line({"text": good(8)["text"] + "\x00\x00 NUL"}),
        b'{"text": "' + GOOD.encode() + b'\x1b[31m raw escape"}\n',
        line([1, 2, 3]),
        line({"body": GOOD}),
        line({"text": 42}),
        line({"text": "short"}),
        line({"text": "y" * 2_100_000}),  # over ingest.max_record_bytes=2000000
        b"\xc3\x28 not utf-8\n",
        *[line({"text": t}) for t in HOSTILE_TEXTS],
        line(good(0, timestamp="2019-04-25T12:57:54Z", url="https://example.org/0")),  # exact duplicate
        line({"text": GOOD + " with timestamps", "timestamp": "2019-01-01", "date": "2022-06-01"}),
    ]
    blob = b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records)
    lines = blob.split(b"\n")[:-1]
    put("mixed.jsonl", blob, {i for i, raw in enumerate(lines) if raw.strip()})
    put("empty.jsonl", b"", {0})
    put("blank.jsonl", b"\n\n  \n", {0})
    put("random.jsonl", bytes(random.Random(3).randrange(256) for _ in range(3000)).replace(b"\x1f\x8b", b"xx"),
        None)  # lines of random bytes: counted below
    expect["random.jsonl"] = {i for i, raw in enumerate((directory / "random.jsonl").read_bytes().split(b"\n"))
                              if raw.strip()}

    body = b"".join(line(good(100 + i)) for i in range(40))
    gz, zst = gzip.compress(body, mtime=0), zstandard.ZstdCompressor().compress(body)
    put("whole.jsonl.gz", gz + gzip.compress(line(good(140)), mtime=0), set(range(41)))  # two members
    put("cut.jsonl.gz", gz[: len(gz) // 2], "prefix")
    put("garbage_after.jsonl.gz", gz + b"trailing garbage", set(range(41)))
    put("plain.jsonl.gz", body, {0})
    put("whole.jsonl.zst", zst + zstandard.ZstdCompressor().compress(line(good(141))), set(range(41)))
    put("cut.jsonl.zst", zst[: len(zst) // 2], "prefix")
    put("not_zstd.jsonl.zst", b"this is not zstd at all\n", {0})
    put("gzip.jsonl.zst", gz, {0})
    put("empty.jsonl.gz", b"", {0})

    texts = [good(200 + i)["text"] for i in range(9)]
    put("good.parquet", parquet(pa.table({"text": texts, "url": [f"https://p/{i}" for i in range(9)]}),
                                row_group_size=4), set(range(9)))
    put("int_text.parquet", parquet(pa.table({"text": [1, 2, 3]})), {0, 1, 2})
    put("nested_text.parquet", parquet(pa.table({"text": [{"inner": t} for t in texts[:2]]})), {0, 1})
    put("no_text.parquet", parquet(pa.table({"body": texts[:2]})), {0, 1})
    whole = parquet(pa.table({"text": texts}))
    put("cut_footer.parquet", whole[:-20], {0})
    put("empty.parquet", parquet(pa.table({"text": pa.array([], pa.string())})), {0})

    put("latin1.txt", ("Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e. " + GOOD).encode("cp1252"), {0})
    put("utf16.txt", ("UTF-16 with a byte-order mark. " + GOOD).encode("utf-16"), {0})
    put("bom_crlf.txt", b"\xef\xbb\xbf" + (GOOD + " in a Windows file.\r\n\r\nSecond.\r\n").encode(), {0})
    put("empty.txt", b"", {0})
    put("random.txt", bytes(random.Random(4).randrange(256) for _ in range(512)), {0})
    put("gzip.txt", gzip.compress(GOOD.encode()), {0})
    put("table.csv", b"a,b\n1,2\n", {0})
    # A file name that is not UTF-8 (it reaches Python with surrogate escapes); records name it with \xNN.
    (directory / os.fsdecode(b"name-\xff-latin1.jsonl")).write_bytes(line(good(300)))
    expect["name-\\xff-latin1.jsonl"] = {0}
    return expect


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("hostile")
    expect = build(corpus)
    output = tmp_path_factory.mktemp("out")
    code = main(["run", "--input", str(corpus / "*"), "--output", str(output), "--run-id", "h",
                 "--set", "ingest.max_record_bytes=2000000", "--set", "ingest.max_chars=1000000"])
    return corpus, output / "h", expect, code


def units_found(run_dir: Path) -> list[tuple[str, int, str]]:
    found = []
    for split in ("train", "anchor_holdout", "rejected"):
        table = pq.read_table(run_dir / split, columns=["source_uri", "source_offset"])
        found += [(r["source_uri"], r["source_offset"], split) for r in table.to_pylist()]
    for path in sorted((run_dir / "dead_letter").glob("*.jsonl")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(raw)
            found.append((record["source_uri"], record["source_offset"], "dead_letter:" + record["reason"]))
    return found


def test_a_run_over_hostile_files_publishes_and_reconciles(hostile_run):
    _, run_dir, _, code = hostile_run
    assert code == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"]["reconciled"] is True, manifest["counts"]["equation"]
    assert manifest["status"] == "complete"
    assert (run_dir / "report" / "report.json").is_file()  # the report's statistics took the hostile texts too


def test_every_hostile_unit_is_in_exactly_one_output_by_uri_and_offset(hostile_run):
    corpus, run_dir, expect, _ = hostile_run
    found = units_found(run_dir)
    counts = Counter((uri, offset) for uri, offset, _ in found)
    assert not [key for key, n in counts.items() if n > 1], "a unit is in more than one output"
    by_file: dict[str, dict[int, str]] = {}
    for uri, offset, where in found:
        by_file.setdefault(Path(uri).name, {})[offset] = where
    assert set(by_file) == set(expect)
    for name, units in expect.items():
        got = by_file[name]
        if units == "prefix":  # documents 0..k-1, then the dead letter marking the cut at k
            k = max(got)
            assert set(got) == set(range(k + 1)) and got[k] == "dead_letter:truncated_or_corrupt_stream", name
            assert all(not where.startswith("dead_letter") for offset, where in got.items() if offset < k), name
        else:
            assert set(got) == units, (name, sorted(set(got) ^ units))


def test_each_hostile_class_gets_its_reason(hostile_run):
    _, run_dir, _, _ = hostile_run
    where = {(Path(uri).name, offset): w for uri, offset, w in units_found(run_dir)}
    assert where[("not_zstd.jsonl.zst", 0)] == "dead_letter:not_compressed_as_named"
    assert where[("gzip.jsonl.zst", 0)] == "dead_letter:not_compressed_as_named"
    assert where[("plain.jsonl.gz", 0)] == "dead_letter:not_compressed_as_named"
    assert where[("mixed.jsonl", 4)] == "dead_letter:too_deep"
    assert where[("mixed.jsonl", 5)] == "dead_letter:malformed_json"
    assert where[("cut_footer.parquet", 0)] == "dead_letter:unreadable_file"
    assert where[("latin1.txt", 0)] == "dead_letter:invalid_utf8"
    assert where[("table.csv", 0)] == "dead_letter:unsupported_format"
    assert where[("mixed.jsonl", 14)] == "dead_letter:record_too_large"
    assert not where[("mixed.jsonl", 3)].startswith("dead_letter")  # the surrogate was repaired
    for offset in range(16, 16 + len(HOSTILE_TEXTS)):  # texts hostile to the later stages got through them
        assert where[("mixed.jsonl", offset)] in ("train", "anchor_holdout", "rejected"), offset
    assert not where[("utf16.txt", 0)].startswith("dead_letter")


def test_the_summary_lists_every_reason_and_the_manifest_warns(hostile_run):
    from tailguard.pipelines.publish import print_summary

    _, run_dir, _, _ = hostile_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    out = io.StringIO()
    print_summary(manifest, str(run_dir), out=out)
    summary = out.getvalue()
    for reason, n in {**manifest["dead_letter_by_reason"], **manifest["rejected_by_reason"]}.items():
        assert any(reason in row and f"{n:,}" in row for row in summary.splitlines()), reason
    assert any("most documents have no timestamp" in w for w in manifest["warnings"])
    assert any("disagree" in w for w in manifest["warnings"])
    assert "warning: most documents have no timestamp" in summary
