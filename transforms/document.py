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


# Named scores (signals, runner-up languages) are a list of {key, value} structs in Parquet: Arrow's map type has
# no Hugging Face `datasets` equivalent (load_dataset fails on it, streaming included), while a list of structs
# reads everywhere -- datasets, pandas, Polars, DuckDB, Spark, pyarrow.dataset. In records they stay dicts.
KEYED_VALUES = pa.list_(pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.float64())]))
# Version 2: KEYED_VALUES replaced map<string, double>. Readers of published snapshots accept both.
RECORD_SCHEMA_VERSION = "2"

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
    Field("source_url", pa.string(), "ingest", "URL the text was fetched from, when the record names one."),
    Field("source_timestamp", pa.timestamp("us", tz="UTC"), "ingest",
          "When the text was written or published, when known (from the configured timestamp field or value, "
          "or a field recognised by ingest.format). "
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
    Field("lang_alternatives", KEYED_VALUES, "langid", "Runner-up languages and scores, as {key: label, value: score}."),
    Field("lang_model", pa.string(), "langid", "Which model (and second opinion, if any) decided `lang`."),
    # --- synthetic-text scoring ---
    Field("synthetic_score", pa.float64(), "synthetic",
          "Calibrated probability that the text is machine-generated."),
    Field("synthetic_signals", KEYED_VALUES, "synthetic",
          "The signal values the score was computed from, as {key: signal name, value}."),
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
    Field("rarity_signals", KEYED_VALUES, "rarity",
          "Weight components (language share, cluster size, topic, tail), as {key: component, value}."),
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
    metadata={"tailguard.record": RECORD_SCHEMA_VERSION},
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
        if f.type == KEYED_VALUES:
            values = [None if v is None else [{"key": k, "value": x} for k, x in v.items()] for v in values]
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def is_keyed_values(arrow_type: pa.DataType) -> bool:
    """Named scores as written now (list of {key, value}) or by record schema 1 (map<string, double>)."""
    if pa.types.is_map(arrow_type):
        return True
    if not pa.types.is_list(arrow_type) or not pa.types.is_struct(arrow_type.value_type):
        return False
    struct = arrow_type.value_type
    return struct.num_fields == 2 and {struct.field(i).name for i in range(2)} == {"key", "value"}


def keyed_values_to_dict(value: Any) -> dict[str, float] | None:
    """A named-scores cell as read back by ``to_pylist``: [{key, value}, ...] (v2) or [(key, value), ...] (v1)."""
    if value is None:
        return None
    return {item["key"]: item["value"] for item in value} if value and isinstance(value[0], dict) else dict(value)


def from_arrow_table(table: pa.Table) -> list[dict[str, Any]]:
    """Inverse of :func:`to_arrow_table`: records with null fields omitted (as stages produce them). Tables written
    with record schema 1 (named scores as maps) read the same, so ``--previous`` carries old snapshots forward."""
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
        if is_keyed_values(col.type):
            values = [keyed_values_to_dict(v) for v in values]
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
