"""Sink: deterministic, sharded, checksummed output files, and the counts the manifest is built from.

Each split is hashed by ``doc_id`` into ``N`` shards (``N`` from the split's size, or fixed by config), each
shard is sorted and written as one Parquet file (zstd) -- so the same documents always give byte-identical
files. Grouping a shard's rows on one worker is the one full-text shuffle in the pipeline, and it is
unavoidable: a file is written by one writer.

Files are written to a temporary name and renamed into place; every writer reports the file's row count,
size and SHA-256 (computed while writing, so nothing is read back). The counts that prove nothing was lost
are computed from the data itself (``Count`` combines), not from metrics, so retries cannot skew them; both
land in ``<run>/_stats/`` for the driver to assemble ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from tailguard.transforms.document import (ANCHOR_HOLDOUT, ARROW_SCHEMA, DEAD_LETTER, DOCUMENT_SPLITS, REJECTED, TRAIN,
                                           to_arrow_table)
from tailguard.transforms.settings import require

STATS_DIR = "_stats"
COUNTS_FILE = "counts.json"
FILES_FILE = "files.json"


@dataclass
class SinkConfig:
    rows_per_shard: int = 50_000
    num_shards: int = 0
    row_group_rows: int = 5_000
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    write_rejected: bool = True

    def validate(self) -> None:
        require(self.rows_per_shard >= 1, "rows_per_shard", f"must be >= 1, got {self.rows_per_shard}")
        require(0 <= self.num_shards <= 100_000, "num_shards",
                f"must be 0 (size shards by rows_per_shard) or 1..100000, got {self.num_shards}")
        require(self.row_group_rows >= 1, "row_group_rows", f"must be >= 1, got {self.row_group_rows}")


# --------------------------------------------------------------------------------------------------- pure logic


def shard_name(index: int, count: int, extension: str) -> str:
    width = max(5, len(str(count)))
    return f"part-{index:0{width}d}-of-{count:0{width}d}.{extension}"


def shard_of(key: str, num_shards: int) -> int:
    """Stable shard for a key (a doc_id or any string), the same on every worker and every run."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def shards_for(rows: int, config: SinkConfig) -> int:
    return config.num_shards or max(1, math.ceil(rows / config.rows_per_shard))


def document_sort_key(doc: dict[str, Any]) -> tuple:
    return (doc["doc_id"], doc.get("source_uri") or "", doc.get("source_offset") or 0)


def dead_letter_sort_key(record: dict[str, Any]) -> tuple:
    return (record.get("source_uri") or "", record.get("source_offset") or 0, record.get("reason") or "")


def index_sort_key(record: dict[str, Any]) -> tuple:
    return (record["doc_id"],)


class HashingWriter:
    """File-like wrapper that counts bytes and computes SHA-256 as data goes through."""

    def __init__(self, stream):
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += len(view)
        self._stream.write(bytes(view))
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def file_info(split: str, path: str, rows: int, writer: HashingWriter) -> dict[str, Any]:
    return {"split": split, "path": path, "rows": rows, "bytes": writer.size, "sha256": writer.sha256.hexdigest()}


def _atomic_write(final_path: str, write: Callable[[HashingWriter], None]) -> HashingWriter:
    """Write to a unique temporary name, then rename onto the final name (retries overwrite cleanly)."""
    temporary = f"{final_path}.tmp-{uuid.uuid4().hex}"
    writer = HashingWriter(FileSystems.create(temporary))
    try:
        write(writer)
    finally:
        writer.close()
    if FileSystems.exists(final_path):
        FileSystems.delete([final_path])
    FileSystems.rename([temporary], [final_path])
    return writer


def write_parquet(path: str, split: str, records: list[dict[str, Any]], to_table: Callable, schema: pa.Schema,
                  config: SinkConfig) -> dict[str, Any]:
    compression = None if config.compression == "none" else config.compression

    def write(stream: HashingWriter) -> None:
        with pq.ParquetWriter(pa.PythonFile(stream, mode="w"), schema, compression=compression) as writer:
            for start in range(0, len(records), config.row_group_rows):
                writer.write_table(to_table(records[start: start + config.row_group_rows]))
            if not records:
                writer.write_table(schema.empty_table())

    return file_info(split, path, len(records), _atomic_write(path, write))


def write_jsonl(path: str, split: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    def write(stream: HashingWriter) -> None:
        for record in records:
            stream.write(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")

    return file_info(split, path, len(records), _atomic_write(path, write))


def documents_table(records: list[dict[str, Any]]) -> pa.Table:
    return to_arrow_table(records)


def write_empty_documents_file(directory: str, split: str, config: SinkConfig) -> dict[str, Any]:
    """A split with no rows still gets one file, so readers always find the schema."""
    path = f"{directory.rstrip('/')}/{split}/{shard_name(0, 1, 'parquet')}"
    return write_parquet(path, split, [], documents_table, ARROW_SCHEMA, config)


# --------------------------------------------------------------------------------------------------- Beam wiring


class _WriteShardFn(beam.DoFn):
    def __init__(self, directory: str, split: str, fmt: str, schema: Optional[pa.Schema],
                 to_table: Optional[Callable], sort_key: Callable, config: SinkConfig):
        self.directory = directory.rstrip("/")
        self.split = split
        self.fmt = fmt
        self.schema = schema
        self.to_table = to_table
        self.sort_key = sort_key
        self.config = config

    def process(self, element):
        (shard, count), records = element
        records = sorted(records, key=self.sort_key)
        if self.fmt == "parquet" and any(r.get("repeats") for r in records):
            records = [r for r in records for _ in range(r.get("repeats") or 1)]
        name = shard_name(shard, count, "parquet" if self.fmt == "parquet" else "jsonl")
        path = f"{self.directory}/{name}"
        if self.fmt == "parquet":
            yield write_parquet(path, self.split, records, self.to_table, self.schema, self.config)
        else:
            yield write_jsonl(path, self.split, records)


def _with_shard(record: dict[str, Any], key_of: Callable, num_shards: int):
    return (shard_of(key_of(record), num_shards), num_shards), record


def _doc_key(record: dict[str, Any]) -> str:
    return record["doc_id"]


def _dead_letter_key(record: dict[str, Any]) -> str:
    return f"{record.get('source_uri')}#{record.get('source_offset')}"


class WriteShards(beam.PTransform):
    """Write a PCollection of records as ``N`` sorted shards under ``directory``; output: one info per file."""

    def __init__(self, directory: str, split: str, config: SinkConfig, fmt: str = "parquet",
                 schema: Optional[pa.Schema] = ARROW_SCHEMA, to_table: Optional[Callable] = documents_table,
                 sort_key: Callable = document_sort_key, key_of: Callable = _doc_key):
        super().__init__()
        self.directory, self.split, self.config = directory, split, config
        self.fmt, self.schema, self.to_table, self.sort_key, self.key_of = fmt, schema, to_table, sort_key, key_of

    def expand(self, records):
        config = self.config
        num_shards = (
            records
            | "Count" >> beam.combiners.Count.Globally()
            | "ShardCount" >> beam.Map(shards_for, config)
        )
        return (
            records
            | "AssignShard" >> beam.Map(_with_shard, self.key_of, beam.pvalue.AsSingleton(num_shards))
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(self.directory, self.split, self.fmt, self.schema,
                                                       self.to_table, self.sort_key, config))
        )


def _tally(pcoll, label: str, group: str, key: str):
    return (pcoll
            | f"Count{label}" >> beam.combiners.Count.Globally()
            | f"Tag{label}" >> beam.Map(lambda n: (group, key, n)))


def _tally_by(pcoll, label: str, group: str, key_of: Callable):
    return (pcoll
            | f"Key{label}" >> beam.Map(key_of)
            | f"Count{label}" >> beam.combiners.Count.PerElement()
            | f"Tag{label}" >> beam.MapTuple(lambda key, n: (group, key, n)))


def _rows_of(doc: dict[str, Any]) -> int:
    return doc.get("repeats") or 1


def _tally_rows(pcoll, label: str, split: str):
    """Rows the split's files will hold (documents, or their materialised repeats)."""
    return (pcoll
            | f"RowsOf{label}" >> beam.Map(_rows_of)
            | f"Sum{label}" >> beam.CombineGlobally(sum)
            | f"Tag{label}" >> beam.Map(lambda n: ("rows", split, n)))


def _single(item: Any) -> Any:
    return item


def _rejection_key(doc: dict[str, Any]) -> str:
    return f"{doc.get('rejected_by')}.{doc.get('reject_reason')}"


def _language_of(doc: dict[str, Any]) -> str:
    return doc.get("lang") or "und"


def _dead_letter_reason(record: dict[str, Any]) -> str:
    return record.get("reason") or "unknown"


class _WriteJsonFn(beam.DoFn):
    def __init__(self, path: str, arrange: Callable[[list], Any]):
        self.path = path
        self.arrange = arrange

    def process(self, items):
        payload = json.dumps(self.arrange(items), sort_keys=True, indent=1, default=float).encode("utf-8")
        _atomic_write(self.path, lambda stream: stream.write(payload))
        yield self.path


def _sorted_files(infos: list) -> list:
    return sorted(infos, key=lambda info: info["path"])


def _sorted_counts(rows: list) -> list:
    return sorted([list(row) for row in rows])


READ_PREFIX = "read/"
INDEX_PREFIX = "index/"
STATS_PREFIX = "stats/"
CARRIED = "carried_forward"


class WriteSnapshot(beam.PTransform):
    """Write every split, the dead letters and the indexes, plus the data-derived counts for the manifest.

    Input: one dict of PCollections --
      ``train``, ``anchor_holdout``, ``rejected``: documents of each split;
      ``dead_letter``: unreadable records;
      ``read/<name>``: collections whose element counts add up to the records read (ingest's documents,
      rejections and dead letters);
      ``carried_forward`` (optional): documents carried from the previous snapshot;
      ``index/<name>`` (optional): index records, written with ``index_schemas[name]``;
      ``stats/<name>`` (optional): one JSON-able dict, written to ``_stats/<name>.json`` for the manifest.
    Output: the paths of the stats files, once written.
    """

    def __init__(self, run_dir: str, config: SinkConfig, index_schemas: Optional[dict[str, pa.Schema]] = None):
        super().__init__()
        self.run_dir = run_dir.rstrip("/")
        self.config = config
        self.index_schemas = index_schemas or {}

    def expand(self, inputs: dict[str, beam.PCollection]):
        pipeline = inputs[DEAD_LETTER].pipeline
        infos, counts = [], []
        for split in DOCUMENT_SPLITS:
            docs = inputs[split]
            counts.append(_tally(docs, f"Split_{split}", "splits", split))
            counts.append(_tally_rows(docs, f"Rows_{split}", split))
            if split in (TRAIN, ANCHOR_HOLDOUT):  # the dataset card's language tags
                counts.append(_tally_by(docs, f"Languages_{split}", f"languages.{split}", _language_of))
            if split == REJECTED:
                counts.append(_tally_by(docs, "Rejections", "rejected_by_reason", _rejection_key))
                if not self.config.write_rejected:
                    continue
            infos.append(docs | f"Write_{split}" >> WriteShards(f"{self.run_dir}/{split}", split, self.config))
        dead = inputs[DEAD_LETTER]
        counts.append(_tally(dead, "DeadLetters", "splits", DEAD_LETTER))
        counts.append(_tally_by(dead, "DeadLetterReasons", "dead_letter_by_reason", _dead_letter_reason))
        infos.append(dead | "Write_dead_letter" >> WriteShards(
            f"{self.run_dir}/{DEAD_LETTER}", DEAD_LETTER, self.config, fmt="jsonl", schema=None, to_table=None,
            sort_key=dead_letter_sort_key, key_of=_dead_letter_key))
        for key in sorted(k for k in inputs if k.startswith(READ_PREFIX)):
            name = key[len(READ_PREFIX):]
            counts.append(_tally(inputs[key], f"Read_{name}", "input", f"read.{name}"))
        if CARRIED in inputs:
            counts.append(_tally(inputs[CARRIED], "Carried", "input", CARRIED))
        for key in sorted(k for k in inputs if k.startswith(INDEX_PREFIX)):
            name = key[len(INDEX_PREFIX):]
            schema = self.index_schemas[name]
            counts.append(_tally(inputs[key], f"Index_{name}", "index", name))
            infos.append(inputs[key] | f"WriteIndex_{name}" >> WriteShards(
                f"{self.run_dir}/index/{name}", f"index/{name}", self.config, schema=schema,
                to_table=_TableFromPylist(schema), sort_key=index_sort_key))
        stats = f"{self.run_dir}/{STATS_DIR}"
        written = []
        for key in sorted(k for k in inputs if k.startswith(STATS_PREFIX)):
            name = key[len(STATS_PREFIX):]
            written.append(inputs[key] | f"WriteStats_{name}" >> beam.ParDo(
                _WriteJsonFn(f"{stats}/{name}.json", _single)))
        written_files = (
            infos
            | "AllFiles" >> beam.Flatten(pipeline=pipeline)
            | "FileList" >> beam.combiners.ToList()
            | "WriteFileList" >> beam.ParDo(_WriteJsonFn(f"{stats}/{FILES_FILE}", _sorted_files))
        )
        written_counts = (
            counts
            | "AllCounts" >> beam.Flatten(pipeline=pipeline)
            | "CountList" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.ParDo(_WriteJsonFn(f"{stats}/{COUNTS_FILE}", _sorted_counts))
        )
        return [written_files, written_counts, *written] | "StatsWritten" >> beam.Flatten()


class _TableFromPylist:
    def __init__(self, schema: pa.Schema):
        self.schema = schema

    def __call__(self, records: Iterable[dict[str, Any]]) -> pa.Table:
        return pa.Table.from_pylist(list(records), schema=self.schema)
