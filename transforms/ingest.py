"""Ingest: read every input file into documents, and every unreadable record into a dead letter.

Formats by extension: ``.jsonl`` (also ``.ndjson``), ``.jsonl.gz``, ``.jsonl.zst``, ``.parquet``, and ``.txt``
(one document per file). Files are opened through Beam's ``FileSystems``, so local paths and ``gs://`` behave
alike. A file is read by one worker (JSONL streams are not splittable once compressed); the documents are
then reshuffled so the following stages spread across workers.

Each record becomes exactly one of: a document (main output), a rejected document (``rejected`` output:
readable but empty, too short or too long), or a dead letter (``dead_letter`` output: not readable as a
document -- malformed JSON, invalid UTF-8, missing or non-string text, bad timestamp, truncated stream,
empty or unreadable file). Memory per record is bounded by ``ingest.max_record_bytes``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import gzip
import io
import json
import math
import posixpath
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Literal, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tailguard.transforms.document import dead_letter
from tailguard.transforms.settings import ConfigError, require
from tailguard.transforms.stage import KEPT, REJECTED, StageMetrics, mark_rejected
from tailguard.transforms.text import doc_id_for, normalize_text

STAGE = "ingest"
DEAD_LETTER = "dead_letter"

TimestampFormat = Literal["auto", "iso", "year", "epoch_s", "epoch_ms"]
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl.gz", ".ndjson.gz": "jsonl.gz",
           ".jsonl.zst": "jsonl.zst", ".ndjson.zst": "jsonl.zst", ".parquet": "parquet", ".txt": "txt"}


@dataclass
class SourceConfig:
    """How to read one kind of input file; the first source whose ``match`` glob fits the file's URI wins."""

    name: str = ""
    match: str = ""
    text_field: str = "text"
    id_field: Optional[str] = None
    timestamp_field: Optional[str] = None
    timestamp_format: TimestampFormat = "auto"
    timestamp: Optional[str] = None
    tags: list[str] = field(default_factory=list)

    def validate(self) -> None:
        require(bool(self.name), "name", "every source needs a name")
        require(bool(self.match), "match", "every source needs a glob to match its files, e.g. '*/wiki/*.jsonl'")
        require(bool(self.text_field), "text_field", "must name the field that holds the text")
        require(not (self.timestamp and self.timestamp_field), "timestamp",
                "give either a fixed `timestamp` or a `timestamp_field`, not both")
        if self.timestamp is not None:
            try:
                parse_timestamp(self.timestamp, "iso")
            except ValueError as e:
                raise ConfigError("timestamp", str(e)) from None
        for i, tag in enumerate(self.tags):
            require(bool(tag) and tag.strip() == tag, f"tags[{i}]", "tags are non-empty words")


@dataclass
class IngestConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    min_chars: int = 50
    max_chars: int = 1_000_000
    max_record_bytes: int = 16 * 1024 * 1024
    dead_letter_excerpt_bytes: int = 512

    def validate(self) -> None:
        require(self.min_chars >= 0, "min_chars", f"must be >= 0, got {self.min_chars}")
        require(self.max_chars > self.min_chars, "max_chars",
                f"must be greater than min_chars ({self.min_chars}), got {self.max_chars}")
        require(self.max_record_bytes >= 1024, "max_record_bytes", f"must be >= 1024, got {self.max_record_bytes}")
        require(self.dead_letter_excerpt_bytes >= 0, "dead_letter_excerpt_bytes", "must be >= 0")
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        require(not duplicates, "sources", f"source names must be unique, repeated: {duplicates}")


# --------------------------------------------------------------------------------------------------- pure logic


def format_of(uri: str) -> str | None:
    name = posixpath.basename(uri).lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def default_source_name(uri: str) -> str:
    name = posixpath.basename(uri)
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def source_for(uri: str, sources: list[SourceConfig]) -> SourceConfig:
    """The configured source whose glob matches the URI (or its file name); else a default named after the file."""
    for source in sources:
        if fnmatch.fnmatchcase(uri, source.match) or fnmatch.fnmatchcase(posixpath.basename(uri), source.match):
            return source
    return SourceConfig(name=default_source_name(uri), match=uri)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_timestamp(value: Any, fmt: str = "auto") -> int:
    """Microseconds since the epoch, UTC. Raises ValueError with a readable message."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return _micros(moment)
    if isinstance(value, dt.date):
        return _micros(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc))
    if fmt == "auto":
        if isinstance(value, (int, float)):
            fmt = "year" if 0 < value < 10000 and float(value).is_integer() else "epoch_s"
        elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 4:
            fmt = "year"
        else:
            fmt = "iso"
    if fmt == "year":
        year = int(value) if not isinstance(value, str) else int(value.strip())
        if not 1 <= year <= 9999:
            raise ValueError(f"year out of range: {value!r}")
        return _micros(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc))
    if fmt in ("epoch_s", "epoch_ms"):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"not a finite epoch: {value!r}")
        seconds = number / 1000 if fmt == "epoch_ms" else number
        return int(round(seconds * 1_000_000))
    if not isinstance(value, str):
        raise ValueError(f"ISO-8601 timestamp must be a string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date or time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return _micros(moment)


def _micros(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def lookup(record: dict, dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` for a top-level or dotted nested field."""
    if dotted in record:
        return True, record[dotted]
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


class BadRecord(Exception):
    """A record that cannot become a document; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason = reason
        self.error = error


def document_from_record(record: Any, source: SourceConfig, uri: str, offset: int,
                         fixed_timestamp: int | None) -> dict[str, Any]:
    """Map a parsed record to a document dict (ingest fields only). Raises :class:`BadRecord`."""
    if not isinstance(record, dict):
        raise BadRecord("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    found, text = lookup(record, source.text_field)
    if not found:
        raise BadRecord("missing_text_field", f"no field {source.text_field!r} (fields: {sorted(record)[:20]})")
    if not isinstance(text, str):
        raise BadRecord("text_not_string", f"field {source.text_field!r} is {type(text).__name__}, not a string")
    timestamp = fixed_timestamp
    if source.timestamp_field:
        found_ts, raw_ts = lookup(record, source.timestamp_field)
        if found_ts and raw_ts is not None and raw_ts != "":
            try:
                timestamp = parse_timestamp(raw_ts, source.timestamp_format)
            except (ValueError, OverflowError) as e:
                raise BadRecord("bad_timestamp", f"field {source.timestamp_field!r}: {e}") from None
    record_id = None
    if source.id_field:
        found_id, raw_id = lookup(record, source.id_field)
        if found_id and raw_id is not None:
            record_id = str(raw_id)
    return make_document(text, source, uri, offset, timestamp, record_id)


def make_document(raw_text: str, source: SourceConfig, uri: str, offset: int, timestamp: int | None,
                  record_id: str | None = None) -> dict[str, Any]:
    text, normalization = normalize_text(raw_text)
    doc: dict[str, Any] = {
        "doc_id": doc_id_for(text),
        "text": text,
        "source": source.name,
        "source_uri": uri,
        "source_offset": offset,
        "source_tags": list(source.tags),
        "normalization": normalization,
        "n_chars": len(text),
    }
    if timestamp is not None:
        doc["source_timestamp"] = timestamp
    if record_id is not None:
        doc["source_record_id"] = record_id
    return doc


def length_verdict(doc: dict[str, Any], config: IngestConfig) -> tuple[str, str] | None:
    """``(reason, detail)`` when the document's length is outside the configured limits, else None."""
    n = doc["n_chars"]
    if n == 0:
        return "empty", "no text left after normalisation"
    if n < config.min_chars:
        return "too_short", f"{n} chars < ingest.min_chars={config.min_chars}"
    if n > config.max_chars:
        return "too_long", f"{n} chars > ingest.max_chars={config.max_chars}"
    return None


class Item(NamedTuple):
    """One thing read from a file: a document or a dead letter (exactly one is set)."""

    document: Optional[dict[str, Any]] = None
    dead: Optional[dict[str, Any]] = None


def _bounded_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, too_long)``; an over-long line is skipped in chunks (never held whole in memory)."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            head = line
            while line and not line.endswith(b"\n"):
                line = stream.readline(limit + 1)
            yield head, True
        else:
            yield line, False


def read_jsonl(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
               fixed_timestamp: int | None) -> Iterator[Item]:
    """Records of a (decompressed) JSONL stream; blank lines are not records and are skipped."""
    excerpt = config.dead_letter_excerpt_bytes
    offset = -1
    any_line = False
    try:
        for offset, (line, too_long) in enumerate(_bounded_lines(stream, config.max_record_bytes)):
            any_line = True
            if too_long:
                yield Item(dead=dead_letter(uri, offset, "record_too_large",
                                            f"line longer than ingest.max_record_bytes={config.max_record_bytes}",
                                            line, source.name, excerpt))
                continue
            if not line.strip():
                continue
            try:
                decoded = line.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as e:
                yield Item(dead=dead_letter(uri, offset, "invalid_utf8", str(e), line, source.name, excerpt))
                continue
            try:
                record = json.loads(decoded)
            except json.JSONDecodeError as e:
                yield Item(dead=dead_letter(uri, offset, "malformed_json", str(e), line, source.name, excerpt))
                continue
            try:
                yield Item(document=document_from_record(record, source, uri, offset, fixed_timestamp))
            except BadRecord as e:
                yield Item(dead=dead_letter(uri, offset, e.reason, e.error, line, source.name, excerpt))
    except (EOFError, OSError, zlib.error, ValueError) as e:
        # Compressed stream cut short or corrupt: everything before it was read; the rest is unreadable.
        yield Item(dead=dead_letter(uri, offset + 1, "truncated_or_corrupt_stream",
                                    f"{type(e).__name__}: {e} (after {offset + 1} lines)", None, source.name))
        return
    if not any_line:
        yield Item(dead=dead_letter(uri, 0, "empty_file", "file has no records", b"", source.name))


def read_parquet(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
                 fixed_timestamp: int | None) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as e:  # pyarrow raises several types for a corrupt footer
        yield Item(dead=dead_letter(uri, 0, "unreadable_file", f"not a readable Parquet file: {e}", None,
                                    source.name))
        return
    if parquet.metadata.num_rows == 0:
        yield Item(dead=dead_letter(uri, 0, "empty_file", "Parquet file has no rows", None, source.name))
        return
    row = 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        try:
            records = parquet.read_row_group(group).to_pylist()
        except Exception as e:
            yield Item(dead=dead_letter(uri, row, "unreadable_row_group",
                                        f"row group {group} ({group_rows} rows): {e}", None, source.name))
            row += group_rows
            continue
        for record in records:
            try:
                yield Item(document=document_from_record(record, source, uri, row, fixed_timestamp))
            except BadRecord as e:
                raw = json.dumps(record, default=str, ensure_ascii=False)
                yield Item(dead=dead_letter(uri, row, e.reason, e.error, raw, source.name,
                                            config.dead_letter_excerpt_bytes))
            row += 1


def read_text_file(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
                   fixed_timestamp: int | None) -> Iterator[Item]:
    data = stream.read(config.max_record_bytes + 1)
    excerpt = config.dead_letter_excerpt_bytes
    if not data:
        yield Item(dead=dead_letter(uri, 0, "empty_file", "file is empty", b"", source.name))
    elif len(data) > config.max_record_bytes:
        yield Item(dead=dead_letter(uri, 0, "record_too_large",
                                    f"file larger than ingest.max_record_bytes={config.max_record_bytes}",
                                    data[:excerpt], source.name, excerpt))
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Item(dead=dead_letter(uri, 0, "invalid_utf8", str(e), data, source.name, excerpt))
            return
        yield Item(document=make_document(text, source, uri, 0, fixed_timestamp))


def read_file(uri: str, config: IngestConfig, opener=None) -> Iterator[Item]:
    """Every record of one file, as documents and dead letters. ``opener(uri)`` returns a binary stream."""
    source = source_for(uri, config.sources)
    fixed_timestamp = parse_timestamp(source.timestamp, "iso") if source.timestamp else None
    fmt = format_of(uri)
    if fmt is None:
        yield Item(dead=dead_letter(uri, 0, "unsupported_format",
                                    f"unknown extension; supported: {', '.join(sorted(FORMATS))}", None,
                                    source.name))
        return
    open_raw = opener or (lambda u: FileSystems.open(u, compression_type=CompressionTypes.UNCOMPRESSED))
    try:
        raw = open_raw(uri)
    except Exception as e:  # a file listed a moment ago but gone or unreadable now
        yield Item(dead=dead_letter(uri, 0, "unreadable_file", f"{type(e).__name__}: {e}", None, source.name))
        return
    with raw:
        if fmt == "parquet":
            yield from read_parquet(raw, uri, source, config, fixed_timestamp)
        elif fmt == "txt":
            yield from read_text_file(raw, uri, source, config, fixed_timestamp)
        elif fmt == "jsonl.gz":
            yield from read_jsonl(gzip.GzipFile(fileobj=raw, mode="rb"), uri, source, config, fixed_timestamp)
        elif fmt == "jsonl.zst":
            yield from read_jsonl(_zstd_stream(raw), uri, source, config, fixed_timestamp)
        else:
            yield from read_jsonl(raw, uri, source, config, fixed_timestamp)


class _CheckedZstdReader(io.RawIOBase):
    """Streaming zstd decoder that raises on a truncated frame.

    ``zstandard``'s own ``stream_reader`` returns a short read when the file is cut inside a frame, which would
    silently lose the tail of a truncated upload; this reader feeds small compressed chunks to a
    ``decompressobj`` per frame and checks at end of input that the last frame finished.
    """

    _CHUNK = 16 * 1024  # compressed bytes per step: bounds how much one step can expand to

    def __init__(self, raw: BinaryIO):
        import zstandard

        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = None
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._raw.read(self._CHUNK)
            if not chunk:
                if self._frame is not None and not self._frame.eof:
                    raise EOFError("zstd stream ended inside a frame (file truncated)")
                return 0
            self._pending = memoryview(self._decode(chunk))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decode(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            if self._frame is None or self._frame.eof:
                self._frame = self._decompressor.decompressobj()
            out.append(self._frame.decompress(chunk))
            chunk = self._frame.unused_data if self._frame.eof else b""
        return b"".join(out)


def _zstd_stream(raw: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_CheckedZstdReader(raw), buffer_size=1 << 16)


# --------------------------------------------------------------------------------------------------- Beam wiring


class IngestOutputs(NamedTuple):
    documents: beam.PCollection
    rejected: beam.PCollection
    dead_letters: beam.PCollection


class ReadRecordsFn(beam.DoFn):
    """One input file in, its documents / rejected documents / dead letters out."""

    def __init__(self, config: IngestConfig):
        self.config = config

    def setup(self):
        self.metrics = StageMetrics(STAGE)

    def process(self, uri: str):
        self.metrics.count("files")
        # Stream the file's records (never hold a whole file); only the reading is timed as stage work.
        for item in self.metrics.timed_iter(read_file(uri, self.config)):
            self.metrics.saw()
            if item.dead is not None:
                self.metrics.count(f"dead_letter.{item.dead['reason']}")
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, item.dead)
                continue
            verdict = length_verdict(item.document, self.config)
            if verdict is None:
                self.metrics.kept()
                yield item.document
            else:
                self.metrics.rejected(verdict[0])
                yield beam.pvalue.TaggedOutput(REJECTED, mark_rejected(item.document, STAGE, *verdict))


class Ingest(beam.PTransform):
    """Expand the input patterns to files, read each file's records, and spread the documents across workers."""

    def __init__(self, config: IngestConfig, patterns: list[str]):
        super().__init__()
        self.config = config
        self.patterns = sorted(set(patterns))

    def expand(self, pipeline):
        files = (
            pipeline
            | "InputPatterns" >> beam.Create(self.patterns)
            | "MatchFiles" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
            | "FilePaths" >> beam.Map(lambda metadata: metadata.path)
            | "EachFileOnce" >> beam.Distinct()
        )
        read = files | "ReadRecords" >> beam.ParDo(ReadRecordsFn(self.config)).with_outputs(
            REJECTED, DEAD_LETTER, main=KEPT)
        documents = read[KEPT] | "SpreadDocuments" >> beam.Reshuffle()
        return IngestOutputs(documents, read[REJECTED], read[DEAD_LETTER])


def check_inputs(patterns: list[str]) -> dict[str, int]:
    """Fail before the pipeline starts if a pattern matches nothing: ``{pattern: number_of_files}``."""
    if not patterns:
        raise ConfigError("--input", "give at least one input pattern")
    counts = {}
    for pattern in patterns:
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as e:
            raise ConfigError("--input", f"cannot list {pattern!r}: {e}") from None
        counts[pattern] = len(result.metadata_list)
        if not result.metadata_list:
            raise ConfigError("--input", f"pattern {pattern!r} matches no file")
    return counts
