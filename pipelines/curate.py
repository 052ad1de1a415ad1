"""The curation pipeline, wired from the config; it reads like the diagram in DESIGN.md.

    inputs -> Ingest -> LanguageID -> SyntheticScoring -> NearDedup -> HumanAnchors -> train / anchor_holdout
                                                              ^ previous index    |
    previous snapshot: train ----------------------------------------------------+--> RareContentWeights
                       anchor_holdout ---------------------------------------------> anchor_holdout
                                                                                      -> BalanceWeights -> train

Each stage is a composite transform from ``transforms/``; a stage switched off in the config is a pass-through.
Every document that any stage rejects joins ``rejected/`` with its reason; nothing else leaves the graph.
Documents carried from the previous snapshot are not filtered again (accumulate, never replace): they keep
their content, provenance, split and anchor status, and only their weights are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from tailguard.pipelines.config import CurateConfig
from tailguard.transforms.anchors import AnchorEligibility, ReserveHumanAnchors
from tailguard.transforms.dedup import INDEX_SCHEMA, NearDedup
from tailguard.transforms.document import ANCHOR_HOLDOUT, DEAD_LETTER, REJECTED, TRAIN, from_arrow_table
from tailguard.transforms.ingest import Ingest
from tailguard.transforms.langid import IdentifyLanguage
from tailguard.transforms.rarity import RareContentWeights
from tailguard.transforms.sink import CARRIED, INDEX_PREFIX, READ_PREFIX, STATS_PREFIX, WriteSnapshot
from tailguard.transforms.stage import DEAD_LETTERS, INDEX, WEIGHTS_REPORT, PassThrough
from tailguard.transforms.synthetic import ScoreSynthetic
from tailguard.transforms.weighting import BalanceWeights

DEDUP_INDEX = "dedup"


@dataclass(frozen=True)
class RunPaths:
    """Where one run reads its previous snapshot from and writes itself to."""

    run_id: str
    run_dir: str
    previous_dir: Optional[str] = None

    def previous_split(self, split: str) -> str:
        return f"{self.previous_dir.rstrip('/')}/{split}/*.parquet"

    def previous_index(self, name: str) -> str:
        return f"{self.previous_dir.rstrip('/')}/index/{name}/*.parquet"


def build_pipeline(pipeline: beam.Pipeline, config: CurateConfig, inputs: list[str], paths: RunPaths) -> None:
    ingested = pipeline | "Ingest" >> Ingest(config.ingest, inputs)
    rejected, dead_letters = [ingested.rejected], ingested.extra[DEAD_LETTERS]

    languages = ingested.kept | "LanguageID" >> _enabled(config.langid, IdentifyLanguage)
    rejected.append(languages.rejected)

    scored = languages.kept | "SyntheticScoring" >> _enabled(config.synthetic, ScoreSynthetic)
    rejected.append(scored.rejected)

    kept, indexes = scored.kept, {}
    if config.dedup.enabled:
        deduplicated = kept | "NearDedup" >> NearDedup(
            config.dedup,
            previous_index=paths.previous_index(DEDUP_INDEX) if paths.previous_dir else None,
            anchor_eligible=AnchorEligibility(config.anchors))
        rejected.append(deduplicated.rejected)
        kept, indexes[DEDUP_INDEX] = deduplicated.kept, deduplicated.extra[INDEX]

    new = kept | "FirstPublished" >> beam.Map(_first_published_in, paths.run_id)
    if config.anchors.enabled:
        reserved = new | "HumanAnchors" >> ReserveHumanAnchors(config.anchors)
        new_train, new_holdout = reserved.kept, [reserved.extra[ANCHOR_HOLDOUT]]
    else:
        new_train, new_holdout = new, []

    carried = _carried_forward(pipeline, paths)
    train = [new_train] + ([carried[TRAIN]] if carried else [])
    holdout = new_holdout + ([carried[ANCHOR_HOLDOUT]] if carried else [])
    train = train | "TrainCandidates" >> beam.Flatten()
    weights_report = None
    if config.rarity.enabled:
        weighted = train | "RareContentWeights" >> RareContentWeights(config.rarity)
        balanced = weighted.kept | "BalanceWeights" >> BalanceWeights(config.rarity, config.anchors)
        train, weights_report = balanced.kept, balanced.extra[WEIGHTS_REPORT]

    snapshot = {
        TRAIN: train | "MarkTrain" >> beam.Map(_in_split, TRAIN),
        ANCHOR_HOLDOUT: holdout | "AnchorHoldout" >> beam.Flatten(pipeline=pipeline)
                                | "MarkHoldout" >> beam.Map(_in_split, ANCHOR_HOLDOUT),
        REJECTED: rejected | "AllRejected" >> beam.Flatten() | "MarkRejected" >> beam.Map(_in_split, REJECTED),
        DEAD_LETTER: dead_letters,
        f"{READ_PREFIX}documents": ingested.kept,
        f"{READ_PREFIX}rejected": ingested.rejected,
        f"{READ_PREFIX}dead_letters": dead_letters,
    }
    if carried:
        snapshot[CARRIED] = (carried[TRAIN], carried[ANCHOR_HOLDOUT]) | "AllCarried" >> beam.Flatten()
    for name, index in indexes.items():
        snapshot[f"{INDEX_PREFIX}{name}"] = index
    if weights_report is not None:
        snapshot[f"{STATS_PREFIX}weights"] = weights_report
    _ = snapshot | "WriteSnapshot" >> WriteSnapshot(paths.run_dir, config.sink,
                                                    index_schemas={DEDUP_INDEX: INDEX_SCHEMA})


def _enabled(section, stage_cls) -> beam.PTransform:
    return stage_cls(section) if section.enabled else PassThrough()


def _in_split(doc: dict, split: str) -> dict:
    out = dict(doc)
    out["split"] = split
    return out


def _first_published_in(doc: dict, run_id: str) -> dict:
    out = dict(doc)
    out["first_run_id"] = run_id
    return out


class _ReadSnapshotFileFn(beam.DoFn):
    """Documents of one Parquet file of a published snapshot, as the dicts stages exchange."""

    def process(self, path: str):
        with FileSystems.open(path) as stream:
            parquet = pq.ParquetFile(stream)
            for group in range(parquet.num_row_groups):
                yield from from_arrow_table(parquet.read_row_group(group))


def _carried_forward(pipeline: beam.Pipeline, paths: RunPaths) -> Optional[dict]:
    """The previous snapshot's train and holdout documents, to be published again unchanged (accumulate)."""
    if not paths.previous_dir:
        return None
    carried = {}
    for split in (TRAIN, ANCHOR_HOLDOUT):
        carried[split] = (
            pipeline
            | f"PreviousFiles_{split}" >> fileio.MatchFiles(paths.previous_split(split),
                                                             fileio.EmptyMatchTreatment.ALLOW)
            | f"PreviousPaths_{split}" >> beam.Map(lambda metadata: metadata.path)
            | f"ReadPrevious_{split}" >> beam.ParDo(_ReadSnapshotFileFn())
        )
    return carried
