"""Ingest: read every input file into documents, and every unreadable record into a dead letter.

Formats by extension: ``.jsonl`` (also ``.ndjson``), ``.jsonl.gz``, ``.jsonl.zst``, ``.parquet``, and ``.txt``
(one document per file). Files are opened through Beam's ``FileSystems``, so local paths and ``gs://`` behave
alike. A file is read by one worker (JSONL streams are not splittable once compressed); the documents are
then reshuffled so the following stages spread across workers.

Each record becomes exactly one of: a document (main output), a rejected document (``rejected`` output:
readable but empty, too short or too long), or a dead letter (``dead_letter`` output: not readable as a
document; :data:`DEAD_LETTER_REASONS` lists every reason). Memory per record is bounded by
``ingest.max_record_bytes``.

Reading never raises on input data: whatever the bytes, a file yields documents and dead letters and the run
goes on (tests/test_hostile_ingest.py and the fuzz harnesses in tests/fuzz/ hold it to that). Two defects are
repaired rather than dead-lettered, because the rest of the record is good and the repair is visible in the
document's ``normalization`` field: unpaired surrogates (``surrogates_replaced=N``, replaced by U+FFFD) and
control / invisible format characters such as NUL (``control_removed=N``).

Without a source mapping, the field names of common corpus formats are recognised (``ingest.format``,
:data:`FORMAT_FIELDS`): text, id, URL and timestamp of C4, Dolma, FineWeb, RedPajama and The Pile.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import gzip
import io
import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Literal, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tailguard.transforms.document import dead_letter
from tailguard.transforms.settings import ConfigError, require
from tailguard.transforms.stage import DEAD_LETTERS, KEPT, REJECTED, StageMetrics, StageOutputs, mark_rejected
from tailguard.transforms.text import doc_id_for, normalize_text, printable_excerpt, repair_surrogates

STAGE = "ingest"
DEAD_LETTER = "dead_letter"

TimestampFormat = Literal["auto", "iso", "year", "epoch_s", "epoch_ms"]
CorpusFormat = Literal["auto", "c4", "dolma", "fineweb", "redpajama", "pile"]
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl.gz", ".ndjson.gz": "jsonl.gz",
           ".jsonl.zst": "jsonl.zst", ".ndjson.zst": "jsonl.zst", ".parquet": "parquet", ".txt": "txt"}


@dataclass
class SourceConfig:
    """How to read one kind of input file; the first source whose ``match`` glob fits the file's URI wins."""

    name: str = ""
    match: str = ""
    text_field: Optional[str] = None  # None: the names of ``ingest.format`` (``text`` first)
    id_field: Optional[str] = None
    timestamp_field: Optional[str] = None
    timestamp_format: TimestampFormat = "auto"
    timestamp: Optional[str] = None
    tags: list[str] = field(default_factory=list)

    def validate(self) -> None:
        require(bool(self.name), "name", "every source needs a name")
        require(bool(self.match), "match", "every source needs a glob to match its files, e.g. '*/wiki/*.jsonl'")
        require(self.text_field is None or bool(self.text_field), "text_field",
                "must name the field that holds the text (or be left out: ingest.format decides)")
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
    format: CorpusFormat = "auto"
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


# Every dead-letter reason ingest gives, with its meaning (the README's dead-letter section lists the same).
DEAD_LETTER_REASONS: dict[str, str] = {
    "malformed_json": "a JSONL line that is not valid JSON (including integers over 4,300 digits)",
    "too_deep": "a JSON value nested deeper than the decoder's recursion limit (~1,000 levels)",
    "invalid_utf8": "a JSONL line or .txt file whose bytes are not UTF-8 (legacy 8-bit encodings included)",
    "not_an_object": "a JSONL line holding JSON that is not an object",
    "missing_text_field": "a record without the text field (none of the recognised names, or not the mapped one)",
    "text_not_string": "a text field that is a number, list, object, null or bytes",
    "bad_timestamp": "a configured timestamp field (ingest.sources[].timestamp_field) that does not parse",
    "record_too_large": "a JSONL line or .txt file larger than ingest.max_record_bytes",
    "truncated_or_corrupt_stream": "a gzip/zstd stream cut short or corrupt, or a read error mid-file; the "
                                   "records before it are kept and this one dead letter marks the cut",
    "not_compressed_as_named": "a .gz/.zst that is not gzip/zstd, or a plain .jsonl/.txt that is compressed",
    "unreadable_file": "a file that vanished or cannot be opened, or a Parquet file with a corrupt footer",
    "unreadable_row_group": "a Parquet row group that cannot be decoded (offset: its first row)",
    "empty_file": "a file with no records (0 bytes, only blank lines, or a Parquet file with no rows)",
    "unsupported_format": "a file whose extension is none of the supported ones",
    "unreadable_record": "any other failure to turn one record into a document (the error says which)",
}
# An unpaired surrogate is repaired (see the module docstring), so it is not a reason; NUL bytes neither.

# Field names of common corpus formats, tried in order when a file has no source mapping (first match wins).
# Timestamps are (field, format). `fallback_timestamp` fields are used only when no `timestamp` field is there,
# and never compared with one: each is an upper bound on when the text was written, not the moment itself --
# Dolma's `added` (when the record joined Dolma) and FineWeb's `dump` (the Common Crawl snapshot,
# CC-MAIN-2013-20: year and ISO week).
class FormatFields(NamedTuple):
    text: tuple[str, ...]
    id: tuple[str, ...]
    url: tuple[str, ...]
    timestamp: tuple[tuple[str, str], ...]
    fallback_timestamp: tuple[tuple[str, str], ...] = ()


FORMAT_FIELDS: dict[str, FormatFields] = {
    "c4": FormatFields(("text",), (), ("url",), (("timestamp", "auto"),)),
    "dolma": FormatFields(("text",), ("id",), ("metadata.url", "url"), (("created", "auto"),), (("added", "auto"),)),
    "fineweb": FormatFields(("text",), ("id",), ("url",), (("date", "auto"),), (("dump", "cc_dump"),)),
    "redpajama": FormatFields(("text", "raw_content"), ("doc_id", "meta.id"), ("meta.url", "url"),
                              (("meta.timestamp", "auto"), ("date_download", "auto"))),
    "pile": FormatFields(("text",), (), (), ()),
}


def _union(*parts: tuple) -> tuple:
    return tuple(dict.fromkeys(item for part in parts for item in part))


FORMAT_FIELDS["auto"] = FormatFields(*(_union(*(getattr(f, name) for f in FORMAT_FIELDS.values()))
                                       for name in FormatFields._fields))
# Two recognised timestamps this far apart disagree (a date-only field and a full time of the same day agree).
DISAGREE_AFTER_US = 86_400 * 1_000_000

# Events counted per document (ingest counters, shown in the run summary; see print_summary's warnings).
NO_TIMESTAMP = "no_timestamp"
TIMESTAMPS_DISAGREE = "timestamp_fields_disagree"
TIMESTAMP_UNPARSEABLE = "recognised_timestamp_unparseable"
# Normalisation steps that are repairs of a defect, counted per document (ingest counters of the same name).
REPAIRS = ("surrogates_replaced", "control_removed")


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


_MIN_US = -62_135_596_800 * 1_000_000  # 0001-01-01T00:00:00Z, the first instant Arrow and Python both hold
_MAX_US = 253_402_300_799_999_999       # 9999-12-31T23:59:59.999999Z
_CC_DUMP_RE = re.compile(r"CC-MAIN-(\d{4})-(\d{2})")


def parse_timestamp(value: Any, fmt: str = "auto") -> int:
    """Microseconds since the epoch, UTC, within years 1..9999. Raises ValueError with a readable message
    (whatever ``value`` is: a number too large, a list, a string with NUL bytes ...)."""
    try:
        micros = _parse_timestamp(value, fmt)
    except (TypeError, OverflowError, ArithmeticError) as e:
        raise ValueError(f"not a timestamp ({type(e).__name__}): {_short_repr(value)}") from None
    if not _MIN_US <= micros <= _MAX_US:
        raise ValueError(f"timestamp outside years 1-9999: {_short_repr(value)}")
    return micros


def _short_repr(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_timestamp(value: Any, fmt: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if fmt == "cc_dump":
        match = _CC_DUMP_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"not a Common Crawl snapshot name (CC-MAIN-YYYY-WW): {_short_repr(value)}")
        year, week = int(match.group(1)), int(match.group(2))
        return _micros(dt.datetime.combine(dt.date.fromisocalendar(year, week, 1), dt.time(),
                                           tzinfo=dt.timezone.utc))
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
        if not isinstance(value, (int, float, str)):
            raise ValueError(f"a year must be a number or a string, got {type(value).__name__}")
        year = int(value) if not isinstance(value, str) else int(value.strip())
        if not 1 <= year <= 9999:
            raise ValueError(f"year out of range: {value!r}")
        return _micros(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc))
    if fmt in ("epoch_s", "epoch_ms"):
        if not isinstance(value, (int, float, str)):
            raise ValueError(f"an epoch must be a number or a string, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"not a finite epoch: {value!r}")
        seconds = number / 1000 if fmt == "epoch_ms" else number
        return int(round(seconds * 1_000_000))
    if not isinstance(value, str):
        raise ValueError(f"ISO-8601 timestamp must be a string, got {_short_repr(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date or time: {_short_repr(value)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return _micros(moment)


def _micros(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def lookup(record: dict, dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` for a top-level or dotted nested field."""
    value = field_value(record, dotted)
    return (False, None) if value is _MISSING else (True, value)


_MISSING = object()


def field_value(record: dict, dotted: str) -> Any:
    """The value of a top-level or dotted nested field, or ``_MISSING`` (a dict lookup for undotted names: this
    runs a dozen times per record when the format's names are tried)."""
    value = record.get(dotted, _MISSING)
    if value is _MISSING and "." in dotted:
        value = record
        for part in dotted.split("."):
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(part, _MISSING)
            if value is _MISSING:
                break
    return value


class BadRecord(Exception):
    """A record that cannot become a document; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason = reason
        self.error = error


def document_from_record(record: Any, source: SourceConfig, uri: str, offset: int,
                         fixed_timestamp: int | None, names: FormatFields = FORMAT_FIELDS["auto"],
                         events: list[str] | None = None) -> dict[str, Any]:
    """Map a parsed record to a document dict (ingest fields only). Raises :class:`BadRecord`.

    Fields the source maps explicitly are required to parse; fields left unmapped are looked up by the
    recognised names of ``names`` (first match wins) on a best-effort basis: a recognised timestamp that does
    not parse is skipped and counted in ``events``, never a dead letter.
    """
    if not isinstance(record, dict):
        raise BadRecord("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    events = events if events is not None else []
    text_names = (source.text_field,) if source.text_field else names.text
    text = _first_found(record, text_names)
    if text is _MISSING:
        raise BadRecord("missing_text_field", f"no field {' / '.join(map(repr, text_names))} "
                                              f"(fields: {sorted(map(str, record))[:20]})")
    if not isinstance(text, str):
        raise BadRecord("text_not_string", f"field {text_names[0]!r} is {type(text).__name__}, not a string")
    timestamp = fixed_timestamp
    if source.timestamp_field:
        found_ts, raw_ts = lookup(record, source.timestamp_field)
        if found_ts and raw_ts is not None and raw_ts != "":
            try:
                timestamp = parse_timestamp(raw_ts, source.timestamp_format)
            except ValueError as e:
                raise BadRecord("bad_timestamp", f"field {source.timestamp_field!r}: {e}") from None
    elif source.timestamp is None:
        timestamp = _recognised_timestamp(record, names.timestamp, events, compare=True)
        if timestamp is None:
            timestamp = _recognised_timestamp(record, names.fallback_timestamp, events, compare=False)
    if timestamp is None:
        events.append(NO_TIMESTAMP)
    raw_id = _first_found(record, (source.id_field,) if source.id_field else names.id)
    record_id = None if raw_id is _MISSING or raw_id is None else repair_surrogates(str(raw_id))
    url = _first_found(record, names.url)
    url = repair_surrogates(url) if isinstance(url, str) and url else None
    return make_document(text, source, uri, offset, timestamp, record_id, url)


def _first_found(record: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        value = record.get(name, _MISSING)
        if value is _MISSING and "." in name:
            value = field_value(record, name)
        if value is not _MISSING:
            return value
    return _MISSING


def _recognised_timestamp(record: dict, candidates: tuple[tuple[str, str], ...], events: list[str],
                          compare: bool) -> int | None:
    """The first recognised timestamp field that parses; with ``compare``, counts disagreement with a later one."""
    chosen = None
    for name, fmt in candidates:
        raw = record.get(name, _MISSING)
        if raw is _MISSING and "." in name:
            raw = field_value(record, name)
        if raw is _MISSING or raw is None or raw == "":
            continue
        try:
            value = parse_timestamp(raw, fmt)
        except ValueError:
            events.append(TIMESTAMP_UNPARSEABLE)
            continue
        if chosen is None:
            chosen = value
            if not compare:
                break
        elif abs(value - chosen) >= DISAGREE_AFTER_US:
            events.append(TIMESTAMPS_DISAGREE)
            break
    return chosen


def make_document(raw_text: str, source: SourceConfig, uri: str, offset: int, timestamp: int | None,
                  record_id: str | None = None, url: str | None = None) -> dict[str, Any]:
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
    if url is not None:
        doc["source_url"] = url
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
    """One thing read from a file: a document or a dead letter (exactly one is set), and what to count."""

    document: Optional[dict[str, Any]] = None
    dead: Optional[dict[str, Any]] = None
    events: tuple[str, ...] = ()


def _dead(uri: str, offset: int, reason: str, error: str, raw: bytes | str | None, source: str,
          excerpt_bytes: int = 512) -> Item:
    """A dead letter whose error and excerpt are safe to print and to encode (see ``printable_excerpt``)."""
    record = dead_letter(uri, offset, reason, printable_excerpt(error, 2048), None, source, excerpt_bytes)
    if raw is not None:
        record["raw_bytes"] = len(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        record["excerpt"] = printable_excerpt(raw, excerpt_bytes)
    return Item(dead=record)


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


_UTF8_BOM = b"\xef\xbb\xbf"
# strict=False: a raw tab, CR or other control character inside a string is accepted (JSON forbids it, but real
# exports have them); normalisation removes all but tab/newline and counts them. One decoder for all records:
# json.loads(..., strict=False) would build a new one per call.
_JSON = json.JSONDecoder(strict=False)


def _record_item(line: bytes, uri: str, offset: int, source: SourceConfig, config: IngestConfig,
                 fixed_timestamp: int | None) -> Item:
    """One non-blank JSONL line as a document or a dead letter; never raises."""
    excerpt = config.dead_letter_excerpt_bytes
    if line.startswith(_UTF8_BOM):  # Windows tools write one; it is encoding metadata, not JSON
        line = line[3:]
    try:
        decoded = line.rstrip(b"\r\n").decode("utf-8")
    except UnicodeDecodeError as e:
        return _dead(uri, offset, "invalid_utf8", str(e), line, source.name, excerpt)
    try:
        record = _JSON.decode(decoded)
    except RecursionError:
        return _dead(uri, offset, "too_deep", "JSON nested deeper than the decoder's recursion limit", line,
                     source.name, excerpt)
    except ValueError as e:  # JSONDecodeError, and integers longer than Python converts
        return _dead(uri, offset, "malformed_json", str(e), line, source.name, excerpt)
    return _mapped_item(record, line, uri, offset, source, config, fixed_timestamp)


def _mapped_item(record: Any, raw: bytes | str | Callable[[], str], uri: str, offset: int, source: SourceConfig,
                 config: IngestConfig, fixed_timestamp: int | None) -> Item:
    events: list[str] = []
    try:
        document = document_from_record(record, source, uri, offset, fixed_timestamp,
                                        FORMAT_FIELDS[config.format], events)
    except BadRecord as e:
        reason, error = e.reason, e.error
    except RecursionError:
        reason, error = "too_deep", "record nested too deeply to map"
    except Exception as e:  # a record no rule above foresaw must still not stop the run
        reason, error = "unreadable_record", f"{type(e).__name__}: {e}"
    else:
        return Item(document=document, events=tuple(events))
    return _dead(uri, offset, reason, error, raw() if callable(raw) else raw, source.name,
                 config.dead_letter_excerpt_bytes)


def read_jsonl(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
               fixed_timestamp: int | None) -> Iterator[Item]:
    """Records of a (decompressed) JSONL stream; blank lines are not records and are skipped."""
    excerpt = config.dead_letter_excerpt_bytes
    offset = -1
    any_line = False
    try:
        for offset, (line, too_long) in enumerate(_bounded_lines(stream, config.max_record_bytes)):
            if too_long:
                any_line = True
                yield _dead(uri, offset, "record_too_large",
                            f"line longer than ingest.max_record_bytes={config.max_record_bytes}",
                            line, source.name, excerpt)
                continue
            if not line.strip():
                continue
            any_line = True
            yield _record_item(line, uri, offset, source, config, fixed_timestamp)
    except Exception as e:  # EOFError, OSError, zlib.error, ZstdError ...: the stream itself failed here
        # Everything before it was read; the rest is unreadable, and this one dead letter marks the cut.
        yield _dead(uri, offset + 1, "truncated_or_corrupt_stream",
                    f"{type(e).__name__}: {e} (after {offset + 1} lines)", None, source.name)
        return
    if not any_line:
        yield _dead(uri, 0, "empty_file", "file has no records", b"", source.name)


def read_parquet(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
                 fixed_timestamp: int | None) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
        num_rows, num_groups = parquet.metadata.num_rows, parquet.num_row_groups
        group_sizes = [parquet.metadata.row_group(g).num_rows for g in range(num_groups)]
        if min(group_sizes, default=0) < 0 or sum(group_sizes) != num_rows:  # found by fuzzing: a damaged footer
            raise ValueError(f"footer row counts are inconsistent: {num_rows} in all, groups {group_sizes[:10]}")
    except Exception as e:  # pyarrow raises several types for a corrupt or cut-off footer
        yield _dead(uri, 0, "unreadable_file", f"not a readable Parquet file: {e}", None, source.name)
        return
    if num_rows == 0:
        yield _dead(uri, 0, "empty_file", "Parquet file has no rows", None, source.name)
        return
    row = 0
    for group, group_rows in enumerate(group_sizes):
        try:
            records = parquet.read_row_group(group).to_pylist()
            if len(records) != group_rows:  # a damaged page can decode to fewer rows than the footer declares
                raise ValueError(f"decoded {len(records)} rows, the footer declares {group_rows}")
        except Exception as e:
            yield _dead(uri, row, "unreadable_row_group", f"row group {group} ({group_rows} rows): {e}", None,
                        source.name)
            row += group_rows
            continue
        for record in records:
            yield _mapped_item(record, lambda: json.dumps(record, default=str, ensure_ascii=False)[:4096], uri,
                               row, source, config, fixed_timestamp)
            row += 1


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_text_file(stream: BinaryIO, uri: str, source: SourceConfig, config: IngestConfig,
                   fixed_timestamp: int | None) -> Iterator[Item]:
    """One document per file. UTF-8 (a BOM is dropped by normalisation); UTF-16 with a BOM is decoded as such
    (the BOM makes it unambiguous). Other encodings are not guessed: a legacy 8-bit file is ``invalid_utf8``,
    since a wrong guess would give mojibake that every later stage would trust."""
    data = stream.read(config.max_record_bytes + 1)
    excerpt = config.dead_letter_excerpt_bytes
    if not data:
        yield _dead(uri, 0, "empty_file", "file is empty", b"", source.name)
        return
    if len(data) > config.max_record_bytes:
        yield _dead(uri, 0, "record_too_large", f"file larger than ingest.max_record_bytes={config.max_record_bytes}",
                    data[:excerpt], source.name, excerpt)
        return
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        yield _dead(uri, 0, "invalid_utf8", f"{e}; convert the file to UTF-8 (e.g. iconv -f cp1252 -t utf-8)",
                    data, source.name, excerpt)
        return
    yield Item(document=make_document(text, source, uri, 0, fixed_timestamp),
               events=() if fixed_timestamp is not None else (NO_TIMESTAMP,))


# Leading bytes of each container, to tell a mislabelled file from a corrupt one before decoding it.
_MAGIC = {
    "gzip": (b"\x1f\x8b\x08",),  # the magic number and the only compression method gzip defines (deflate)
    "zstd": (b"\x28\xb5\x2f\xfd",) + tuple(bytes([b, 0x2a, 0x4d, 0x18]) for b in range(0x50, 0x60)),  # + skippable
    "parquet": (b"PAR1",),
}
_EXPECTED_CONTAINER = {"jsonl.gz": "gzip", "jsonl.zst": "zstd"}


def sniff(head: bytes) -> str | None:
    """Which container the leading bytes announce: ``gzip``, ``zstd``, ``parquet``, or None (plain/unknown)."""
    for name, prefixes in _MAGIC.items():
        if head.startswith(prefixes):
            return name
    return None


def mislabelled(fmt: str, head: bytes) -> str | None:
    """Why a file is not what its name says (a ``not_compressed_as_named`` error), or None."""
    found = sniff(head)
    expected = _EXPECTED_CONTAINER.get(fmt)
    if expected and found != expected:
        return f"named .{fmt} but {'looks like ' + found if found else 'is not ' + expected} " \
               f"(first bytes {head[:8].hex(' ')})"
    if not expected and fmt in ("jsonl", "txt") and found in ("gzip", "zstd"):
        return f"named .{fmt} but is {found}-compressed: rename it .jsonl.{'gz' if found == 'gzip' else 'zst'}"
    return None


def read_file(uri: str, config: IngestConfig, opener=None) -> Iterator[Item]:
    """Every record of one file, as documents and dead letters. ``opener(uri)`` returns a binary stream.

    Never raises on the file's content or on a file that vanished or became unreadable after it was listed.
    """
    path, uri = uri, printable_uri(uri)  # open the real name; records carry one every writer can encode
    source = source_for(uri, config.sources)
    fixed_timestamp = parse_timestamp(source.timestamp, "iso") if source.timestamp else None
    fmt = format_of(uri)
    if fmt is None:
        yield _dead(uri, 0, "unsupported_format", f"unknown extension; supported: {', '.join(sorted(FORMATS))}",
                    None, source.name)
        return
    open_raw = opener or (lambda u: FileSystems.open(u, compression_type=CompressionTypes.UNCOMPRESSED))
    try:
        raw = open_raw(path)
        head = raw.read(8)
        stream = _rewound(raw, head)
    except Exception as e:  # a file listed a moment ago but gone or unreadable now
        yield _dead(uri, 0, "unreadable_file", f"{type(e).__name__}: {e}", None, source.name)
        return
    with raw:
        if not head:
            yield _dead(uri, 0, "empty_file", "file is empty", b"", source.name)
            return
        problem = mislabelled(fmt, head)
        if problem:
            yield _dead(uri, 0, "not_compressed_as_named", problem, head, source.name)
            return
        if fmt == "parquet":
            reader = read_parquet(stream, uri, source, config, fixed_timestamp)
        elif fmt == "txt":
            reader = read_text_file(stream, uri, source, config, fixed_timestamp)
        elif fmt == "jsonl.gz":
            reader = read_jsonl(gzip.GzipFile(fileobj=stream, mode="rb"), uri, source, config, fixed_timestamp)
        elif fmt == "jsonl.zst":
            reader = read_jsonl(_zstd_stream(stream), uri, source, config, fixed_timestamp)
        else:
            reader = read_jsonl(stream, uri, source, config, fixed_timestamp)
        item = None
        try:
            for item in reader:
                yield item
        except Exception as e:  # readers catch what they foresee; this keeps a file from failing the run
            next_offset = 0 if item is None else (item.document or item.dead)["source_offset"] + 1
            yield _dead(uri, next_offset, "unreadable_record", f"{type(e).__name__}: {e}", None, source.name)


def printable_uri(uri: str) -> str:
    """A local file name that is not UTF-8 reaches Python with surrogate escapes (PEP 383), which no UTF-8
    encoder accepts; in records it is shown with its bytes escaped (``bad\\xff.jsonl``)."""
    try:
        uri.encode("utf-8")
        return uri
    except UnicodeEncodeError:
        return uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _rewound(raw: BinaryIO, head: bytes) -> BinaryIO:
    """``raw`` read from its first byte again, after ``head`` was read from it to sniff the container."""
    try:
        if raw.seekable():
            raw.seek(0)
            return raw
    except (OSError, AttributeError, ValueError):
        pass
    return io.BufferedReader(_Prefixed(head, raw), buffer_size=1 << 16)


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, raw: BinaryIO):
        self._head, self._raw = memoryview(head), raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._raw.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _CheckedZstdReader(io.RawIOBase):
    """Streaming zstd decoder that raises on a truncated frame.

    ``zstandard``'s own ``stream_reader`` returns a short read when the file is cut inside a frame, which would
    silently lose the tail of a truncated upload; this reader feeds small compressed chunks to a
    ``decompressobj`` per frame and checks at end of input that the last frame finished.
    """

    # Compressed bytes per step: bounds how much one step can expand to. A zstd RLE block turns 4 bytes into up to
    # 128 KiB, so 1 KiB of hostile input could make 32 MiB at most (16 KiB made 512 MiB).
    _CHUNK = 1024

    def __init__(self, raw: BinaryIO):
        import zstandard

        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = None
        self._pending = memoryview(b"")
        self._error: Optional[OSError] = None  # raised once the data decoded before it has been read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            if self._error is not None:
                raise self._error
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
        import zstandard

        out = []
        try:
            while chunk:
                if self._frame is None or self._frame.eof:
                    self._frame = self._decompressor.decompressobj()
                out.append(self._frame.decompress(chunk))
                chunk = self._frame.unused_data if self._frame.eof else b""
        except zstandard.ZstdError as e:
            self._error = OSError(f"corrupt zstd data: {e}")
        return b"".join(out)


def _zstd_stream(raw: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_CheckedZstdReader(raw), buffer_size=1 << 16)


# --------------------------------------------------------------------------------------------------- Beam wiring


class ReadRecordsFn(beam.DoFn):
    """One input file in, its documents / rejected documents / dead letters out."""

    def __init__(self, config: IngestConfig):
        self.config = config

    def setup(self):
        self.metrics = StageMetrics(STAGE)

    def process(self, path: bytes):
        self.metrics.count("files")
        uri = path.decode("utf-8", "surrogateescape")
        # Per-document tallies are summed per file and counted once: Metrics.counter() per document cost
        # ~20 us each, as much as reading the document.
        tally: dict[str, int] = {}
        # Stream the file's records (never hold a whole file); only the reading is timed as stage work.
        for item in self.metrics.timed_iter(read_file(uri, self.config)):
            self.metrics.saw()
            for event in item.events:
                tally[event] = tally.get(event, 0) + 1
            if item.dead is not None:
                self.metrics.count(f"dead_letter.{item.dead['reason']}")
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, item.dead)
                continue
            if item.document["normalization"] != "none":
                for step in item.document["normalization"].split(";"):
                    name = step.partition("=")[0]
                    if name in REPAIRS:
                        tally[name] = tally.get(name, 0) + 1
            verdict = length_verdict(item.document, self.config)
            if verdict is None:
                self.metrics.kept()
                yield item.document
            else:
                self.metrics.rejected(verdict[0])
                yield beam.pvalue.TaggedOutput(REJECTED, mark_rejected(item.document, STAGE, *verdict))
        for name, n in tally.items():
            self.metrics.count(name, n)


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
            # As bytes: a local file name that is not UTF-8 is a str with surrogate escapes, which Beam's str
            # coder refuses (the whole run failed on one such name).
            | "FilePaths" >> beam.Map(lambda metadata: metadata.path.encode("utf-8", "surrogateescape"))
            | "EachFileOnce" >> beam.Distinct()
        )
        read = files | "ReadRecords" >> beam.ParDo(ReadRecordsFn(self.config)).with_outputs(
            REJECTED, DEAD_LETTER, main=KEPT)
        documents = read[KEPT] | "SpreadDocuments" >> beam.Reshuffle()
        return StageOutputs(documents, read[REJECTED], {DEAD_LETTERS: read[DEAD_LETTER]})


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
