"""What the fuzzers check, importable without atheris: the regression tests replay findings through it.

``check(fmt, data)`` turns fuzzer bytes into one input file of the given reader -- either the bytes as they
are, or (chosen by the first byte) a valid container built around them and then damaged: compressed and cut
at a fuzzer-chosen point, compressed with a byte flipped, a concatenation of streams, a Parquet file built
from fuzzer values with its bytes cut or flipped -- and reads it with ``read_file``. It fails (raises) when:
reading raises; an item is not exactly one of document / dead letter; a string in an item cannot be encoded
as UTF-8 (Beam's coder would fail the run at the next stage boundary); an excerpt or error is not printable;
offsets go backwards.
"""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from tailguard.transforms.ingest import IngestConfig, read_file

FORMATS = {"jsonl": "f.jsonl", "gz": "f.jsonl.gz", "zst": "f.jsonl.zst", "parquet": "f.parquet", "txt": "f.txt"}
# A small limit so that the record_too_large paths are reachable by small fuzz inputs.
CONFIG = IngestConfig(max_record_bytes=4096, dead_letter_excerpt_bytes=64)


def _compress(fmt: str, payload: bytes) -> bytes:
    if fmt == "gz":
        return gzip.compress(payload, mtime=0)
    return zstandard.ZstdCompressor(level=1).compress(payload)


def _parquet(payload: bytes, variant: int) -> bytes:
    """A Parquet file whose text column is fuzzer text, or of a wrong type, nested, or missing."""
    lines = payload.decode("utf-8", errors="replace").split("\n")[:64] or [""]
    columns = {
        0: {"text": pa.array(lines)},
        1: {"text": pa.array([len(x) for x in lines])},
        2: {"text": pa.array([{"inner": x} for x in lines])},
        3: {"body": pa.array(lines)},
        4: {"text": pa.array([x.encode() for x in lines], pa.binary())},
        5: {"text": pa.array(lines), "timestamp": pa.array(lines), "url": pa.array(lines), "id": pa.array(lines)},
        6: {"meta": pa.array([{"timestamp": x, "url": x} for x in lines]), "text": pa.array(lines)},
        7: {"text": pa.array([[x] for x in lines])},
    }[variant % 8]
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=max(1, len(lines) // 3))
    return sink.getvalue()


def build_input(fmt: str, data: bytes) -> bytes:
    """The file the reader gets: raw bytes (mode 0) or a damaged container (modes 1-3)."""
    if len(data) < 3 or fmt in ("jsonl", "txt"):
        return data
    mode, where, payload = data[0] % 4, int.from_bytes(data[1:3], "big"), data[3:]
    if mode == 0:
        return payload
    whole = _parquet(payload, where) if fmt == "parquet" else _compress(fmt, payload)
    if mode == 1:  # cut short at any boundary
        return whole[: where % (len(whole) + 1)]
    if mode == 2:  # one byte flipped
        i = where % len(whole)
        return whole[:i] + bytes([whole[i] ^ 0xFF]) + whole[i + 1:]
    # concatenated streams, then trailing bytes
    return whole + (_compress(fmt, payload[::-1]) if fmt != "parquet" else b"") + payload[: where % 8]


def check(fmt: str, data: bytes) -> int:
    """Read one fuzzed file; raise AssertionError (or the reader's own error) on any broken promise."""
    blob = build_input(fmt, data)
    items = list(read_file(FORMATS[fmt], CONFIG, opener=lambda _: io.BytesIO(blob)))
    assert items, "a file must yield at least one document or dead letter"
    last = -1
    for item in items:
        assert (item.document is None) != (item.dead is None), item
        record = item.document if item.document is not None else item.dead
        json.dumps(record, ensure_ascii=False).encode("utf-8")  # what any coder or writer needs
        assert record["source_offset"] >= last, (record["source_offset"], last)
        last = record["source_offset"]
        if item.dead is not None:
            for key in ("error", "excerpt"):
                value = item.dead.get(key)
                assert value is None or value.isprintable(), (key, value)
    return len(items)


def seeds(fmt: str) -> list[bytes]:
    """Valid starting points for the fuzzer (a mode byte and a cut position first for container formats)."""
    lines = [json.dumps({"text": "A perfectly ordinary line of human prose.", "timestamp": "2019-04-25T12:57:54Z",
                         "url": "https://example.org/a", "id": 1}).encode(),
             json.dumps({"text": "Dolma", "id": "x", "created": "2020-01-01", "added": "2023-01-01",
                         "metadata": {"url": "https://e.org"}}).encode(),
             b'{"text": "caf\\u00e9 \\ud800", "meta": {"timestamp": 1600000000}}', b'{"text": [1]}', b"[[[]]]"]
    body = b"\n".join(lines) + b"\n"
    if fmt in ("jsonl", "txt"):
        return [body, b"\xef\xbb\xbf" + body.replace(b"\n", b"\r\n")]
    return [bytes([mode, 0, 40]) + body for mode in range(4)]
