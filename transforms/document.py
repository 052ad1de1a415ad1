"""The one record contract shared by every stage.

Records travel between stages as plain ``dict`` objects keyed by the field names declared here: they are
Parquet-native, cheap to pickle and need no Beam schema registration, so they work unchanged on every runner.
Each stage *adds* its own fields and never rewrites another stage's; a field a stage did not reach (stage
switched off, document rejected earlier) is simply absent from the dict and becomes null in Parquet.

The Arrow schema written by the sink is derived from ``FIELDS`` below, so this file is the single place that
says what a column means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa


@dataclass(frozen=True)
class Field:
    name: str
    type: pa.DataType
    stage: str
    meaning: str


_SIGNALS = pa.map_(pa.string(), pa.float64())

FIELDS: tuple[Field, ...] = (
    # --- identity and provenance (ingest) ---
    Field("doc_id", pa.string(), "ingest",
          "Stable id: first 128 bits of BLAKE2b over the normalised UTF-8 text, hex. Exact duplicates share it."),
    Field("text", pa.string(), "ingest", "Normalised text (Unicode NFC, control characters removed)."),
    Field("source", pa.string(), "ingest", "Source name from config (`ingest.sources[].name`) or the file stem."),
    Field("source_uri", pa.string(), "ingest", "URI of the file the record was read from."),
    Field("source_offset", pa.int64(), "ingest",
          "Position in the source: 0-based line for JSONL, row for Parquet, 0 for a whole .txt file."),
    Field("source_record_id", pa.string(), "ingest", "The record's own id field, when the source has one."),
    Field("source_timestamp", pa.timestamp("us", tz="UTC"), "ingest",
          "When the text was written or published, when known (from the configured timestamp field or value). "
          "In records: integer microseconds since the Unix epoch, UTC."),
    Field("source_tags", pa.list_(pa.string()), "ingest",
          "Licence/provenance tags from config, e.g. `verified_human`, `public_domain`."),
    Field("normalization", pa.string(), "ingest",
          "What normalisation changed: `none`, or `;`-joined steps such as `nfc`, `control_removed=3`."),
    Field("n_chars", pa.int64(), "ingest", "Length of the normalised text in Unicode code points."),
    # --- language identification ---
    Field("lang", pa.string(), "langid", "Language: ISO 639-1 where one exists, else ISO 639-3."),
    Field("lang_script", pa.string(), "langid", "ISO 15924 script, where the model gives one."),
    Field("lang_score", pa.float64(), "langid", "Probability of `lang` from the language-ID model."),
    Field("lang_alternatives", pa.map_(pa.string(), pa.float64()), "langid", "Runner-up languages and scores."),
    Field("lang_model", pa.string(), "langid", "Which model (and second opinion, if any) decided `lang`."),
    # --- synthetic-text scoring ---
    Field("synthetic_score", pa.float64(), "synthetic",
          "Calibrated probability that the text is machine-generated."),
    Field("synthetic_signals", _SIGNALS, "synthetic", "The signal values the score was computed from."),
    Field("synthetic_reliable", pa.bool_(), "synthetic",
          "False when the detector is out of its domain (e.g. non-English, very short) and the score is a prior."),
    Field("synthetic_detector", pa.string(), "synthetic", "Detector name and version that produced the score."),
    # --- near-duplicate removal ---
    Field("dup_cluster_id", pa.string(), "dedup", "doc_id of the surviving member of this document's cluster."),
    Field("dup_cluster_size", pa.int64(), "dedup", "Number of documents (exact + near copies) in the cluster."),
    Field("duplicate_of", pa.string(), "dedup", "For a removed duplicate: the survivor's doc_id."),
    # --- rare-content upweighting ---
    Field("sample_weight", pa.float64(), "rarity",
          "Expected times seen in one pass over the snapshot's token budget (at most rarity.max_epochs); "
          "anchors average 1 (transforms/weighting.py, WEIGHT_MEANING)."),
    Field("rarity_signals", _SIGNALS, "rarity", "Weight components (language share, cluster size, topic, tail)."),
    Field("repeats", pa.int64(), "rarity", "With `rarity.materialize`: how many copies of this row are written."),
    # --- human anchors ---
    Field("is_anchor", pa.bool_(), "anchors", "Verified human text kept in every mix."),
    Field("anchor_reason", pa.string(), "anchors", "Why the document is (or is not) an anchor."),
    # --- routing and explanation ---
    Field("split", pa.string(), "sink", "`train`, `anchor_holdout` or `rejected`."),
    Field("first_run_id", pa.string(), "sink",
          "Run that first published the document (carried forward unchanged by later runs)."),
    Field("rejected_by", pa.string(), "any", "Stage that rejected the document."),
    Field("reject_reason", pa.string(), "any", "Reason code for the rejection, e.g. `too_short`."),
    Field("reject_detail", pa.string(), "any", "Human-readable detail: the value and the threshold it failed."),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
_BY_NAME = {f.name: f for f in FIELDS}

ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(f.name, f.type, nullable=f.name != "doc_id", metadata={"meaning": f.meaning}) for f in FIELDS],
    metadata={"tailguard.record": "1"},
)

# Split names, the folders they are written to.
TRAIN = "train"
ANCHOR_HOLDOUT = "anchor_holdout"
REJECTED = "rejected"
DOCUMENT_SPLITS = (TRAIN, ANCHOR_HOLDOUT, REJECTED)
DEAD_LETTER = "dead_letter"


def field(name: str) -> Field:
    return _BY_NAME[name]


def unknown_fields(record: dict[str, Any]) -> list[str]:
    """Keys a record carries that the contract does not declare (a stage bug if non-empty)."""
    return [k for k in record if k not in _BY_NAME]


def to_arrow_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Column-wise conversion of records to a table with the declared schema; absent fields become null."""
    records = list(records)
    columns = []
    for f in FIELDS:
        values = [r.get(f.name) for r in records]
        if pa.types.is_map(f.type):
            values = [None if v is None else list(v.items()) for v in values]
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def from_arrow_table(table: pa.Table) -> list[dict[str, Any]]:
    """Inverse of :func:`to_arrow_table`: records with null fields omitted (as stages produce them)."""
    out: list[dict[str, Any]] = []
    cols = {}
    for name in table.column_names:
        if name not in _BY_NAME:
            continue
        f = _BY_NAME[name]
        col = table.column(name)
        if pa.types.is_timestamp(f.type):
            col = col.cast(pa.int64())
        values = col.to_pylist()
        if pa.types.is_map(f.type):
            values = [None if v is None else dict(v) for v in values]
        cols[name] = values
    for i in range(table.num_rows):
        out.append({k: v[i] for k, v in cols.items() if v[i] is not None})
    return out


def dead_letter(source_uri: str, offset: int, reason: str, error: str, raw: bytes | str | None,
                source: str | None = None, excerpt_bytes: int = 512) -> dict[str, Any]:
    """A record that could not be read as a document: where it was, why, and a bounded excerpt of it."""
    if isinstance(raw, bytes):
        excerpt = raw[:excerpt_bytes].decode("utf-8", errors="backslashreplace")
        raw_len = len(raw)
    elif isinstance(raw, str):
        excerpt = raw[:excerpt_bytes]
        raw_len = len(raw.encode("utf-8", errors="surrogatepass"))
    else:
        excerpt, raw_len = None, 0
    return {
        "source": source,
        "source_uri": source_uri,
        "source_offset": offset,
        "reason": reason,
        "error": error,
        "raw_bytes": raw_len,
        "excerpt": excerpt,
    }
