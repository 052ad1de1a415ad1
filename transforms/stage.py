"""Conventions every curation stage follows, so that the pipeline can wire them without knowing them.

A stage is a composite ``beam.PTransform`` taking a PCollection of document dicts (ingest: file patterns) and
returning :class:`StageOutputs` -- the documents it keeps, the ones it rejects (each carrying ``rejected_by``,
``reject_reason`` and ``reject_detail``), and any named side outputs (ingest's dead letters, dedup's index, the
anchors' holdout, the weights report). Nothing is dropped silently.

Every decision is counted with ``beam.metrics.Metrics.counter(<stage>, <name>)``:
``in``, ``kept``, ``rejected.<reason>`` and ``busy_us`` (microseconds spent inside the stage's DoFns, so the
run summary can show per-stage throughput even though Beam fuses stages together).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

KEPT = "kept"
REJECTED = "rejected"


class StageOutputs(NamedTuple):
    """What every stage returns, so the pipeline wires them alike."""

    kept: beam.PCollection
    rejected: beam.PCollection
    # Named side outputs, keyed by the names below; a stage without any has none.
    extra: Mapping[str, beam.PCollection] = MappingProxyType({})


# Names of side outputs in ``StageOutputs.extra``.
DEAD_LETTERS = "dead_letters"      # ingest: records that could not be read as documents
INDEX = "index"                    # dedup: what the next run deduplicates against
ANCHOR_HOLDOUT = "anchor_holdout"  # anchors: reserved human anchors, never trained on
WEIGHTS_REPORT = "weights_report"  # rarity: one dict of the realised weight statistics, for the manifest


def no_rejections(pipeline: beam.Pipeline, label: str = "NoRejections") -> beam.PCollection:
    """The ``rejected`` output of a stage that never rejects."""
    return pipeline | label >> beam.Create([])


class Decision(NamedTuple):
    """A stage's verdict on one document: ``reason is None`` means keep."""

    reason: Optional[str] = None
    detail: Optional[str] = None


KEEP = Decision()


def mark_rejected(doc: dict[str, Any], stage: str, reason: str, detail: str | None = None) -> dict[str, Any]:
    """The document as it goes to ``rejected/``: every field computed so far, plus who rejected it and why."""
    out = dict(doc)
    out["rejected_by"] = stage
    out["reject_reason"] = reason
    if detail is not None:
        out["reject_detail"] = detail
    return out


class StageMetrics:
    """Counters for one stage; create it in ``DoFn.setup`` (or ``__init__``) -- Beam metrics are picklable."""

    def __init__(self, stage: str):
        self.stage = stage
        self._in = Metrics.counter(stage, "in")
        self._kept = Metrics.counter(stage, "kept")
        self._busy = Metrics.counter(stage, "busy_us")
        self._rejected: dict[str, Any] = {}

    def saw(self, n: int = 1) -> None:
        self._in.inc(n)

    def kept(self, n: int = 1) -> None:
        self._kept.inc(n)

    def rejected(self, reason: str, n: int = 1) -> None:
        counter = self._rejected.get(reason)
        if counter is None:
            counter = self._rejected[reason] = Metrics.counter(self.stage, f"rejected.{reason}")
        counter.inc(n)

    def count(self, name: str, n: int = 1) -> None:
        """Any other per-stage tally (e.g. ``second_opinion``), shown in the summary and manifest."""
        Metrics.counter(self.stage, name).inc(n)

    def timed_iter(self, items: Iterable[Any]) -> Iterator[Any]:
        """Yield from ``items``, counting only the time spent producing them as busy time."""
        iterator = iter(items)
        while True:
            start = time.perf_counter_ns()
            try:
                item = next(iterator)
            except StopIteration:
                self._busy.inc((time.perf_counter_ns() - start) // 1000)
                return
            self._busy.inc((time.perf_counter_ns() - start) // 1000)
            yield item

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self._busy.inc((time.perf_counter_ns() - start) // 1000)


def route(docs: Iterable[dict[str, Any]], decisions: Iterable[Decision], stage: str,
          metrics: StageMetrics) -> Iterator[Any]:
    """Emit each document to the main output or, tagged, to ``rejected`` -- counting both."""
    for doc, decision in zip(docs, decisions, strict=True):
        if decision.reason is None:
            metrics.kept()
            yield doc
        else:
            metrics.rejected(decision.reason)
            yield beam.pvalue.TaggedOutput(REJECTED, mark_rejected(doc, stage, decision.reason, decision.detail))


def fixed_batches(size: int) -> beam.BatchElements:
    """Batches of exactly ``size`` documents (fewer only at a bundle's end). Beam's adaptive sizing starts at
    one element and grows: on the benchmark corpus it made ~900 batches of ~22 documents for 20k and its
    estimator alone cost ~0.5 s, more than it saved; every batched stage uses this instead."""
    return beam.BatchElements(min_batch_size=size, max_batch_size=size)


def split_outputs(result: beam.pvalue.DoOutputsTuple) -> StageOutputs:
    return StageOutputs(result[KEPT], result[REJECTED])


def with_rejected_output(pardo: beam.ParDo) -> beam.ParDo:
    """``ParDo`` whose main output is ``kept`` and whose tagged output is ``rejected``."""
    return pardo.with_outputs(REJECTED, main=KEPT)


class PassThrough(beam.PTransform):
    """What a switched-off stage becomes: everything kept, nothing rejected."""

    def expand(self, docs):
        return StageOutputs(docs, no_rejections(docs.pipeline))
