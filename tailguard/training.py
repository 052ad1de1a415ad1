"""The trainer side: turn a published tailguard snapshot into what a training loop consumes.

A ``sample_weight`` is the expected number of times a document is seen in one pass over the snapshot's token
budget (:data:`WEIGHT_MEANING`). This module makes that concrete:

* :func:`sampling_plan` -- a weighted, seeded, deterministic plan over ``train/`` for a token budget: which row
  to read, how many times, in which order. Each document's count is ``floor(e)`` or ``ceil(e)`` of its
  expected count ``e = min(sample_weight * budget / snapshot_budget, max_epochs)`` (systematic sampling: the
  expectation is exact and the total is within one document of it), so no document is read more often than
  ``ceil(max_epochs)`` times whatever the budget; a budget the cap cannot fill is reported as
  ``shortfall_tokens``, never met by repeating documents past the cap.
* Hugging Face ``datasets``: ``Dataset.from_parquet(plan.files).select(plan.indices)`` (the row order of
  ``plan.files`` read in order is the plan's row numbering), or
  ``IterableDataset.from_generator(plan.examples)`` to stream the plan's rows in plan order.
* PyTorch: :class:`PlanSampler` (a ``torch.utils.data.Sampler`` when torch is importable, else a duck-typed
  class with ``__iter__``/``__len__``) over a map-style dataset indexed by the same row numbers.
* :func:`anchor_holdout` -- the reserved human anchors, never trained on, as an evaluation set.

Only the columns needed are read (``text``, ``sample_weight``, ``is_anchor``, ``repeats``); tokens are counted
with the same word tokenizer the weighting stage uses, so "anchors hold ``min_share`` of the sampled tokens"
means the same thing here as in the manifest. Files come from the manifest (published = has a manifest);
paths may be local or any URI ``pyarrow.fs`` understands (``gs://`` with pyarrow's GCS support).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tailguard.transforms.text import words
from tailguard.transforms.weighting import WEIGHT_MEANING

__all__ = ["WEIGHT_MEANING", "SamplingPlan", "PlanSampler", "sampling_plan", "anchor_holdout", "resolve_snapshot",
           "describe", "DEFAULT_MAX_EPOCHS"]

# When a snapshot predates rarity.max_epochs (its manifest's config has none): the project's default.
DEFAULT_MAX_EPOCHS = 4.0
_BATCH_ROWS = 8192


# --------------------------------------------------------------------------------------------------- files


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def _read_text(path: str) -> str:
    fs, inner = _filesystem(path)
    with fs.open_input_stream(inner) as stream:
        return stream.read().decode("utf-8")


def _exists(path: str) -> bool:
    fs, inner = _filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def _join(root: str, *parts: str) -> str:
    return posixpath.join(root.rstrip("/"), *parts)


def resolve_snapshot(path: str) -> str:
    """A published snapshot directory, or an output root whose ``LATEST`` names one."""
    if _exists(_join(path, "manifest.json")):
        return path
    if _exists(_join(path, "LATEST")):
        return _join(path, _read_text(_join(path, "LATEST")).strip())
    raise FileNotFoundError(f"{path} is not a published snapshot (no manifest.json) and holds no LATEST")


def _manifest(snapshot: str) -> dict[str, Any]:
    return json.loads(_read_text(_join(snapshot, "manifest.json")))


def _split_files(snapshot: str, manifest: dict[str, Any], split: str) -> list[str]:
    return sorted(_join(snapshot, f["path"]) for f in manifest["files"]
                  if f["split"] == split and f["path"].endswith(".parquet"))


def _batches(files: Sequence[str], columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for path in files:
        fs, inner = _filesystem(path)
        parquet = pq.ParquetFile(inner, filesystem=fs)
        wanted = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
            yield batch


def _read_columns(files: Sequence[str], columns: Sequence[str]) -> pa.Table:
    tables = [pa.Table.from_batches([b]) for b in _batches(files, columns)]
    if not tables:
        return pa.table({c: pa.array([], type=pa.string()) for c in columns})
    return pa.concat_tables(tables, promote_options="default")


# --------------------------------------------------------------------------------------------------- the plan


def systematic_counts(expected: np.ndarray, offset: float) -> np.ndarray:
    """Integer counts with exactly the given expectations (for ``offset`` uniform on [0, 1)), each
    ``floor(e)`` or ``ceil(e)``, summing to ``sum(expected)`` rounded up or down: systematic sampling."""
    cumulative = np.concatenate(([0.0], np.cumsum(expected, dtype=np.float64)))
    marks = np.floor(cumulative + offset)
    counts = np.diff(marks).astype(np.int64)
    # Floating error in a long cumsum can push a count one past ceil(e); never let it.
    return np.clip(counts, np.floor(expected).astype(np.int64), np.ceil(expected).astype(np.int64))


@dataclass(frozen=True)
class SamplingPlan:
    """Which ``train/`` rows a trainer reads, in which order, for one token budget.

    Row ``i`` is the ``i``-th row of ``files`` read in order. ``indices`` is the plan itself (each row repeated
    ``counts[i]`` times, shuffled by ``seed``); iterate it, pass it to ``Dataset.select``, or wrap it in
    :class:`PlanSampler`.
    """

    snapshot: str
    files: tuple[str, ...]
    indices: np.ndarray        # int64 row numbers, the plan's order
    counts: np.ndarray         # per row: times in the plan
    expected: np.ndarray       # per row: expected times, min(weight * budget / snapshot_tokens, max_epochs)
    weights: np.ndarray        # per row: sample_weight (per document, when rows were materialised)
    tokens: np.ndarray         # per row: words, as the weighting stage counts them
    is_anchor: np.ndarray      # per row
    budget_tokens: float       # the budget asked for
    snapshot_tokens: float     # sum(weight * tokens): the budget of one pass as published
    max_epochs: float
    shortfall_tokens: float    # of the budget, what the repetition cap left unfilled (expected)
    seed: int

    def __len__(self) -> int:
        return int(self.indices.size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    @property
    def sampled_tokens(self) -> int:
        return int((self.counts * self.tokens).sum())

    @property
    def anchor_token_share(self) -> float:
        """Share of the plan's tokens that come from human anchors."""
        total = self.sampled_tokens
        return float((self.counts * self.tokens)[self.is_anchor].sum() / total) if total else 0.0

    @property
    def epochs(self) -> float:
        """How many passes over the snapshot's own budget this plan is."""
        return self.budget_tokens / self.snapshot_tokens if self.snapshot_tokens else 0.0

    def examples(self, columns: Sequence[str] = ("text",)) -> Iterator[dict[str, Any]]:
        """The plan's rows as dicts, in plan order: a generator for ``IterableDataset.from_generator``.

        Loads ``columns`` of ``train/`` into memory once; for snapshots larger than memory use
        ``Dataset.from_parquet(plan.files).select(plan.indices)``, which memory-maps instead."""
        table = _read_columns(self.files, columns)
        for start in range(0, len(self.indices), _BATCH_ROWS):
            chunk = table.take(pa.array(self.indices[start:start + _BATCH_ROWS]))
            yield from chunk.to_pylist()


def sampling_plan(snapshot: str, budget_tokens: Optional[float] = None, *, seed: int = 0,
                  max_epochs: Optional[float] = None) -> SamplingPlan:
    """The weighted plan over ``snapshot``'s ``train/`` for ``budget_tokens`` words (default: one pass,
    ``sum(sample_weight * tokens)``), deterministic for a given snapshot and seed.

    ``max_epochs`` defaults to the snapshot's ``rarity.max_epochs``; no row appears more than
    ``ceil(max_epochs)`` times, and ``shortfall_tokens`` says how much of the budget that cap left unfilled.
    """
    snapshot = resolve_snapshot(snapshot)
    manifest = _manifest(snapshot)
    rarity = (manifest.get("config") or {}).get("rarity") or {}
    cap = float(max_epochs if max_epochs is not None else rarity.get("max_epochs", DEFAULT_MAX_EPOCHS))
    if not cap >= 1:
        raise ValueError(f"max_epochs must be >= 1, got {cap}")
    files = tuple(_split_files(snapshot, manifest, "train"))
    weights, tokens, anchors = [], [], []
    for batch in _batches(files, ("text", "sample_weight", "is_anchor", "repeats")):
        columns = batch.schema.names
        weight = np.asarray(batch.column("sample_weight").fill_null(1.0), dtype=np.float64)
        if "repeats" in columns:  # materialised rows: each copy carries its share of the document's weight
            weight = weight / np.maximum(np.asarray(batch.column("repeats").fill_null(1), dtype=np.float64), 1.0)
        weights.append(weight)
        tokens.append(np.fromiter((len(words(t or "")) for t in batch.column("text").to_pylist()),
                                  dtype=np.int64, count=batch.num_rows))
        anchors.append(np.asarray(batch.column("is_anchor").fill_null(False), dtype=bool)
                       if "is_anchor" in columns else np.zeros(batch.num_rows, dtype=bool))
    weight = np.concatenate(weights) if weights else np.zeros(0)
    token = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)
    anchor = np.concatenate(anchors) if anchors else np.zeros(0, dtype=bool)
    snapshot_tokens = float((weight * token).sum())
    budget = snapshot_tokens if budget_tokens is None else float(budget_tokens)
    if budget < 0:
        raise ValueError(f"budget_tokens must be >= 0, got {budget}")
    scale = budget / snapshot_tokens if snapshot_tokens > 0 else 0.0
    expected = np.minimum(weight * scale, cap)
    shortfall = max(0.0, budget - float((expected * token).sum()))
    rng = np.random.default_rng(seed)
    counts = systematic_counts(expected, float(rng.random()))
    indices = rng.permutation(np.repeat(np.arange(weight.size, dtype=np.int64), counts))
    return SamplingPlan(snapshot=snapshot, files=files, indices=indices, counts=counts, expected=expected,
                        weights=weight, tokens=token, is_anchor=anchor, budget_tokens=budget,
                        snapshot_tokens=snapshot_tokens, max_epochs=cap, shortfall_tokens=shortfall, seed=seed)


def anchor_holdout(snapshot: str, columns: Sequence[str] = ("doc_id", "text", "source", "lang")) -> pa.Table:
    """The reserved human anchors (``anchor_holdout/``), never in ``train/``: a fixed human evaluation set
    (perplexity, drift) that stays the same document for document across snapshots."""
    snapshot = resolve_snapshot(snapshot)
    return _read_columns(_split_files(snapshot, _manifest(snapshot), "anchor_holdout"), columns)


# --------------------------------------------------------------------------------------------------- PyTorch


try:  # torch is optional: a multi-GB install that tailguard itself never needs
    from torch.utils.data import Sampler as _SamplerBase
except ImportError:  # pragma: no cover - exercised when torch is absent, which is the default test setup
    _SamplerBase = object


class PlanSampler(_SamplerBase):
    """A PyTorch sampler over a :class:`SamplingPlan`: yields the plan's row numbers in plan order.

    ``DataLoader(dataset, sampler=PlanSampler(plan))`` with a map-style dataset whose item ``i`` is the
    ``i``-th row of ``plan.files``. A ``torch.utils.data.Sampler`` when torch is installed, otherwise a plain
    class with the same protocol (``__iter__``, ``__len__``). ``set_epoch(k)`` reshuffles the same counts with
    ``seed + k`` for multi-epoch loops, so a later epoch is a different order of the same capped plan.
    """

    def __init__(self, plan: SamplingPlan):
        self.plan = plan
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.epoch == 0:
            return iter(self.plan)
        order = np.random.default_rng([self.plan.seed, self.epoch]).permutation(self.plan.indices)
        return iter(order.tolist())

    def __len__(self) -> int:
        return len(self.plan)


def describe(plan: SamplingPlan) -> str:
    """One line for logs: the plan's size, epochs, anchor share and any shortfall."""
    short = (f", {plan.shortfall_tokens:,.0f} tokens short (repetition cap {plan.max_epochs:g})"
             if plan.shortfall_tokens > 0 else "")
    return (f"{len(plan):,} rows, {plan.sampled_tokens:,} tokens ({plan.epochs:.2f} x the snapshot's budget of "
            f"{plan.snapshot_tokens:,.0f}), anchors {plan.anchor_token_share:.1%} of tokens, "
            f"max {int(plan.counts.max()) if plan.counts.size else 0} times per document{short}")
