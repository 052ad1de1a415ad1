"""Collapse-risk metrics of a snapshot: what the train split looks like next to everything that entered curation.

Model collapse shows first as a thinning tail -- rare words and phrasings vanish, text grows more repetitive,
the synthetic share creeps up. The metrics here measure exactly that, per *view* of a snapshot:

* ``input``: every document that entered curation (``train`` + ``anchor_holdout`` + ``rejected``);
* ``train``, ``anchor_holdout``, ``rejected``: the splits themselves.

Three passes over the documents, all Beam combines (nothing is collected on the driver):

1. per document, a small summary (language, synthetic score, weight, cluster size, anchor flag, token count)
   -> :class:`DocumentStats` per view: language counts, score histogram, weight histogram, cluster sizes;
2. per document, its word counts -> one ``(word, (input count, train count))`` table (combiner-lifted)
   -> the input's ``tail_rank`` most frequent words (``Top``) -> :class:`VocabularyStats`: unigram entropy,
   Zipf tail mass, rare-vocabulary coverage -- exact, over all documents;
3. a hash-chosen sample of about ``sample_size`` documents per view (``stable_fraction(doc_id)``, so the same
   documents are chosen every run), each cut to its first ``max_tokens_per_document`` words
   -> :class:`SampleStats`: distinct-n (n = 1..4) and the zlib compression ratio. Distinct n-grams need a set,
   which is why this pass is sampled; the sample size (documents, tokens) is reported beside the figures.
"""

from __future__ import annotations

import collections
import hashlib
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from tailguard.transforms.document import ANCHOR_HOLDOUT, REJECTED, TRAIN
from tailguard.transforms.exact import from_fixed, to_fixed
from tailguard.transforms.settings import require, require_fraction
from tailguard.transforms.text import stable_fraction, words

INPUT = "input"
VIEWS = (INPUT, TRAIN, ANCHOR_HOLDOUT, REJECTED)
NGRAM_ORDERS = (1, 2, 3, 4)
SAMPLE_SALT = "report-sample"
SCORE_BINS = 20
# Sample weights live in [min_weight, max_weight] (default 0.1..10); log-spaced bins cover any sane bounds.
WEIGHT_EDGES = tuple(float(x) for x in np.logspace(-3, 3, 61))
_UNKNOWN_LANGUAGE = "unknown"
_MIX = np.uint64(0x9E3779B97F4A7C15)


def threshold_name(threshold: float) -> str:
    """``0.75`` -> ``p75``: metric names stay valid ``--set`` keys (no dots)."""
    return "p" + f"{threshold * 100:g}".replace(".", "_")


BASE_TREND_METRICS = (
    "train_documents", "holdout_documents", "anchor_document_share", "anchor_token_share",
    "anchor_weighted_token_share",
    "synthetic_mean_score", "distinct_1", "distinct_2", "distinct_3", "distinct_4", "unigram_entropy",
    "tail_mass", "rare_vocabulary_coverage", "compression_ratio",
)


@dataclass
class ReportConfig:
    """Section ``report``: the collapse-risk report written beside each snapshot."""

    enabled: bool = True
    # Documents per view in the hash-chosen sample behind distinct-n and the compression ratio.
    sample_size: int = 2000
    max_tokens_per_document: int = 1000
    # Words ranked below this in the input's frequency list are the Zipf tail / rare vocabulary.
    tail_rank: int = 1000
    synthetic_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.75, 0.9])
    # Earlier snapshots (following each manifest's `previous`) shown in the trend plots.
    history: int = 10
    # Drift bounds, absolute change of a train metric against the previous snapshot or the oldest shown.
    max_rise: dict[str, float] = field(default_factory=lambda: {
        "synthetic_share_above_p75": 0.05, "synthetic_mean_score": 0.05, "compression_ratio": 0.25})
    max_fall: dict[str, float] = field(default_factory=lambda: {
        "tail_mass": 0.02, "unigram_entropy": 0.25, "distinct_2": 0.05, "rare_vocabulary_coverage": 0.05,
        "anchor_token_share": 0.05})

    def trend_metrics(self) -> tuple[str, ...]:
        shares = tuple(f"synthetic_share_above_{threshold_name(t)}" for t in self.synthetic_thresholds)
        return BASE_TREND_METRICS + shares

    def validate(self) -> None:
        require(self.sample_size >= 1, "sample_size", f"must be >= 1, got {self.sample_size}")
        require(self.max_tokens_per_document >= 4, "max_tokens_per_document",
                f"must be >= 4 (distinct-4 needs 4 words), got {self.max_tokens_per_document}")
        require(self.tail_rank >= 1, "tail_rank", f"must be >= 1, got {self.tail_rank}")
        require(self.history >= 0, "history", f"must be >= 0, got {self.history}")
        for i, t in enumerate(self.synthetic_thresholds):
            require_fraction(t, f"synthetic_thresholds[{i}]")
        known = set(self.trend_metrics())
        for section in ("max_rise", "max_fall"):
            for name, bound in getattr(self, section).items():
                require(name in known, f"{section}.{name}",
                        f"unknown metric; known: {', '.join(sorted(known))}")
                require(bound >= 0, f"{section}.{name}", f"must be >= 0, got {bound}")


# --------------------------------------------------------------------------------------------------- pure logic


def views_of(split: str) -> tuple[str, ...]:
    return (INPUT, split)


def word_hashes(tokens: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hash per word (Python's ``hash`` is salted per process, so never that)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
         for t in tokens), dtype=np.uint64, count=len(tokens))


def ngram_hashes(unigrams: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit hash per n-gram of consecutive words (order-sensitive; wraps modulo 2**64)."""
    if unigrams.size < n:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        combined = unigrams[: unigrams.size - n + 1].copy()
        for offset in range(1, n):
            combined = combined * _MIX + unigrams[offset: unigrams.size - n + 1 + offset]
    return combined


def distinct_n(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """Distinct n-grams / all n-grams, n-grams taken inside each document (the plain definition)."""
    seen, total = set(), 0
    for tokens in token_lists:
        grams = [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


def unigram_entropy(counts: Iterable[int]) -> float:
    """Shannon entropy of the word distribution, in bits."""
    counts = [c for c in counts if c > 0]
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts) if total else 0.0


def top_words(counts: dict[str, int], k: int) -> set[str]:
    """The ``k`` most frequent words; ties broken by the larger word, as ``VocabularyStats``' ``Top`` does."""
    return set(sorted(counts, key=lambda w: (counts[w], w), reverse=True)[:k])


def tail_mass(counts: dict[str, int], head: set[str]) -> float:
    """Share of tokens whose word is outside ``head`` (the reference's most frequent words)."""
    total = sum(counts.values())
    return sum(c for w, c in counts.items() if w not in head) / total if total else 0.0


def rare_vocabulary_coverage(view_counts: dict[str, int], reference_counts: dict[str, int], head: set[str]) -> float:
    """Share of the reference's rare word types (outside ``head``) that occur in the view at all."""
    rare = [w for w in reference_counts if w not in head]
    return sum(1 for w in rare if view_counts.get(w, 0) > 0) / len(rare) if rare else 0.0


def compression_ratio(texts: Iterable[str]) -> float:
    """UTF-8 bytes / zlib bytes, each text compressed alone: higher = more repetitive text. The report feeds it
    each sampled document's capped word window (``window_text``), not the raw text."""
    raw = packed = 0
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        raw += len(data)
        packed += len(zlib.compress(data, 6))
    return raw / packed if packed else 0.0


def score_bin(score: float) -> int:
    return min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)


def weight_bin(weight: float) -> int:
    """Index into ``WEIGHT_EDGES`` bins, clamped to the first/last bin."""
    return min(max(int(np.searchsorted(WEIGHT_EDGES, weight, side="right")) - 1, 0), len(WEIGHT_EDGES) - 2)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sort and compare: several times faster than numpy 2's hash-based path on uint64."""
    if values.size == 0:
        return values
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def sample_rate(total: int, sample_size: int) -> float:
    return 1.0 if total <= sample_size else sample_size / total


def in_sample(doc_id: str, rate: float) -> bool:
    return rate >= 1.0 or stable_fraction(doc_id, SAMPLE_SALT) < rate


def document_summary(doc: dict[str, Any], n_tokens: int) -> tuple:
    """The few fields the per-view statistics need; what crosses the shuffle instead of the text."""
    return (doc.get("lang") or _UNKNOWN_LANGUAGE, doc.get("synthetic_score"), doc.get("sample_weight"),
            doc.get("dup_cluster_size"), bool(doc.get("is_anchor")), n_tokens)


# --------------------------------------------------------------------------------------------------- combiners


class DocumentStats(beam.CombineFn):
    """Per view: documents, tokens, languages, synthetic scores, anchors, weights, cluster sizes.

    Accumulators are plain dicts and integers; float sums are exact fixed-point (``transforms.exact``) so the
    report is identical whatever order workers merge in.
    """

    def __init__(self, thresholds: Sequence[float]):
        self.thresholds = tuple(thresholds)

    def create_accumulator(self):
        return {"documents": 0, "tokens": 0, "languages": {}, "language_tokens": {}, "scored": 0,
                "score_sum": 0, "score_bins": [0] * SCORE_BINS, "above": [0] * len(self.thresholds),
                "anchors": 0, "anchor_tokens": 0, "weighted": 0, "weight_sum": 0,
                "weight_bins": [0] * (len(WEIGHT_EDGES) - 1), "weight_min": None, "weight_max": None,
                "cluster_sizes": {}}

    def add_input(self, acc, summary):
        lang, score, weight, cluster_size, is_anchor, n_tokens = summary
        acc["documents"] += 1
        acc["tokens"] += n_tokens
        acc["languages"][lang] = acc["languages"].get(lang, 0) + 1
        acc["language_tokens"][lang] = acc["language_tokens"].get(lang, 0) + n_tokens
        if score is not None:
            acc["scored"] += 1
            acc["score_sum"] += to_fixed(score)
            acc["score_bins"][score_bin(score)] += 1
            for i, t in enumerate(self.thresholds):
                if score > t:
                    acc["above"][i] += 1
        if is_anchor:
            acc["anchors"] += 1
            acc["anchor_tokens"] += n_tokens
        if weight is not None:
            acc["weighted"] += 1
            acc["weight_sum"] += to_fixed(weight)
            acc["weight_bins"][weight_bin(weight)] += 1
            acc["weight_min"] = weight if acc["weight_min"] is None else min(acc["weight_min"], weight)
            acc["weight_max"] = weight if acc["weight_max"] is None else max(acc["weight_max"], weight)
        if cluster_size is not None:
            acc["cluster_sizes"][cluster_size] = acc["cluster_sizes"].get(cluster_size, 0) + 1
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        total = next(accumulators)
        for acc in accumulators:
            for key, value in acc.items():
                if isinstance(value, dict):
                    for k, v in value.items():
                        total[key][k] = total[key].get(k, 0) + v
                elif isinstance(value, list):
                    total[key] = [a + b for a, b in zip(total[key], value)]
                elif key in ("weight_min", "weight_max"):
                    present = [v for v in (total[key], value) if v is not None]
                    total[key] = (min if key == "weight_min" else max)(present) if present else None
                else:
                    total[key] += value
        return total

    def extract_output(self, acc):
        documents, scored, weighted = acc["documents"], acc["scored"], acc["weighted"]
        return {
            "documents": documents,
            "tokens": acc["tokens"],
            "languages": dict(sorted(acc["languages"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "language_tokens": dict(sorted(acc["language_tokens"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "synthetic": {
                "scored_documents": scored,
                "mean_score": from_fixed(acc["score_sum"]) / scored if scored else None,
                "histogram": {"edges": [i / SCORE_BINS for i in range(SCORE_BINS + 1)], "counts": acc["score_bins"]},
                "share_above": {threshold_name(t): (n / scored if scored else None)
                                for t, n in zip(self.thresholds, acc["above"])},
                "documents_above": {threshold_name(t): n for t, n in zip(self.thresholds, acc["above"])},
            },
            "anchors": {
                "documents": acc["anchors"],
                "document_share": acc["anchors"] / documents if documents else None,
                "tokens": acc["anchor_tokens"],
                "token_share": acc["anchor_tokens"] / acc["tokens"] if acc["tokens"] else None,
            },
            "sample_weight": {
                "documents": weighted,
                "mean": from_fixed(acc["weight_sum"]) / weighted if weighted else None,
                "min": acc["weight_min"], "max": acc["weight_max"],
                "histogram": {"edges": list(WEIGHT_EDGES), "counts": acc["weight_bins"]},
            },
            "cluster_sizes": {str(size): n for size, n in sorted(acc["cluster_sizes"].items())},
        }


class VocabularyStats(beam.CombineFn):
    """Over the ``(word, (input count, train count))`` table, given the input's head words (a side input).

    Entropy uses ``H = log2 N - (sum c log2 c) / N``, the sum kept in exact fixed point.
    """

    def create_accumulator(self, *unused_side_inputs):
        return {"tokens": [0, 0], "types": [0, 0], "c_log_c": [0, 0], "tail_tokens": [0, 0],
                "rare_types": 0, "rare_types_in_train": 0}

    def add_input(self, acc, item, head):
        word, counts = item
        is_tail = word not in head
        for view, c in enumerate(counts):
            if c <= 0:
                continue
            acc["tokens"][view] += c
            acc["types"][view] += 1
            acc["c_log_c"][view] += to_fixed(c * math.log2(c))
            if is_tail:
                acc["tail_tokens"][view] += c
        if is_tail and counts[0] > 0:
            acc["rare_types"] += 1
            acc["rare_types_in_train"] += 1 if counts[1] > 0 else 0
        return acc

    def merge_accumulators(self, accumulators, *unused_side_inputs):
        total = self.create_accumulator()
        for acc in accumulators:
            for key, value in acc.items():
                total[key] = [a + b for a, b in zip(total[key], value)] if isinstance(value, list) else total[key] + value
        return total

    def extract_output(self, acc, *unused_side_inputs):
        out = {}
        for index, view in enumerate((INPUT, TRAIN)):
            n = acc["tokens"][index]
            out[view] = {
                "tokens": n,
                "types": acc["types"][index],
                "unigram_entropy": (math.log2(n) - from_fixed(acc["c_log_c"][index]) / n) if n else None,
                "tail_mass": acc["tail_tokens"][index] / n if n else None,
            }
        rare = acc["rare_types"]
        out[INPUT]["rare_vocabulary_coverage"] = 1.0 if rare else None
        out[TRAIN]["rare_vocabulary_coverage"] = acc["rare_types_in_train"] / rare if rare else None
        out["rare_types"] = rare
        return out


class SampleStats(beam.CombineFn):
    """Distinct-n and compression over sampled documents; input per document: ``(ngram arrays, n-gram counts,
    raw bytes, compressed bytes, tokens)``. Keeps sorted unique hash arrays, so memory is bounded by the sample.
    """

    # Pending hashes are folded into the unique set once they outnumber it (and at least this many), so each
    # hash is sorted O(log n) times overall rather than once per document.
    _MIN_PENDING = 1 << 16

    def create_accumulator(self):
        return {"documents": 0, "tokens": 0, "raw_bytes": 0, "compressed_bytes": 0,
                "ngrams": [0] * len(NGRAM_ORDERS), "unique": [np.zeros(0, np.uint64) for _ in NGRAM_ORDERS],
                "pending": [[] for _ in NGRAM_ORDERS], "pending_size": 0}

    @staticmethod
    def _compact(acc):
        for i, pending in enumerate(acc["pending"]):
            if pending:
                acc["unique"][i] = sorted_unique(np.concatenate([acc["unique"][i]] + pending))
                acc["pending"][i] = []
        acc["pending_size"] = 0
        return acc

    def add_input(self, acc, features):
        grams, counts, raw, packed, tokens = features
        acc["documents"] += 1
        acc["tokens"] += tokens
        acc["raw_bytes"] += raw
        acc["compressed_bytes"] += packed
        for i, (array, count) in enumerate(zip(grams, counts)):
            acc["ngrams"][i] += count
            acc["pending"][i].append(array)
        acc["pending_size"] += int(grams[-1].size)
        if acc["pending_size"] >= max(self._MIN_PENDING, acc["unique"][-1].size):
            self._compact(acc)
        return acc

    def merge_accumulators(self, accumulators):
        total = self.create_accumulator()
        for acc in accumulators:
            for key in ("documents", "tokens", "raw_bytes", "compressed_bytes"):
                total[key] += acc[key]
            for i in range(len(NGRAM_ORDERS)):
                total["ngrams"][i] += acc["ngrams"][i]
                total["pending"][i].extend([acc["unique"][i]] + acc["pending"][i])
        return self._compact(total)

    def compact(self, acc):
        return self._compact(acc)

    def extract_output(self, acc):
        acc = self._compact(acc)
        out = {"documents": acc["documents"], "tokens": acc["tokens"], "raw_bytes": acc["raw_bytes"],
               "compressed_bytes": acc["compressed_bytes"],
               "compression_ratio": acc["raw_bytes"] / acc["compressed_bytes"] if acc["compressed_bytes"] else None}
        for i, n in enumerate(NGRAM_ORDERS):
            total = acc["ngrams"][i]
            out[f"distinct_{n}"] = int(acc["unique"][i].size) / total if total else None
            out[f"ngrams_{n}"] = total
        return out


# --------------------------------------------------------------------------------------------------- Beam wiring


class _DocumentFeaturesFn(beam.DoFn):
    """One pass over a document's words: its summary, its word counts, and -- if sampled -- its n-grams."""

    WORDS = "words"
    SAMPLE = "sample"

    # Word counts are summed across the bundle's documents before they leave the DoFn: one element per
    # distinct word per bundle instead of per document (~100x fewer elements into the shuffle), flushed early
    # so a bundle's table stays bounded.
    MAX_BUNDLE_WORDS = 200_000

    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self._word_counts: dict[str, list[int]] = {}

    def start_bundle(self):
        self._word_counts = {}

    def _drain(self):
        table, self._word_counts = self._word_counts, {}
        return ((word, (counts[0], counts[1])) for word, counts in table.items())

    def process(self, doc: dict[str, Any], rates: dict[str, float]):
        split = doc["split"]
        tokens = words(doc.get("text") or "")
        summary = document_summary(doc, len(tokens))
        for view in views_of(split):
            yield view, summary
        train = split == TRAIN
        table = self._word_counts
        for word, count in collections.Counter(tokens).items():
            counts = table.get(word)
            if counts is None:
                table[word] = [count, count if train else 0]
            else:
                counts[0] += count
                if train:
                    counts[1] += count
        if len(table) >= self.MAX_BUNDLE_WORDS:
            for item in self._drain():
                yield beam.pvalue.TaggedOutput(self.WORDS, item)
        chosen = [view for view in (INPUT, TRAIN) if view in views_of(split)
                  and in_sample(doc["doc_id"], rates.get(view, 1.0))]
        if chosen:
            features = sample_features(tokens[: self.max_tokens])
            for view in chosen:
                yield beam.pvalue.TaggedOutput(self.SAMPLE, (view, features))

    def finish_bundle(self):
        for item in self._drain():
            yield beam.pvalue.TaggedOutput(
                self.WORDS, WindowedValue(item, MIN_TIMESTAMP, [GlobalWindow()]))


def window_text(tokens: Sequence[str]) -> str:
    return " ".join(tokens)


def sample_features(tokens: Sequence[str]) -> tuple:
    """What :class:`SampleStats` needs from one sampled document (n-gram hashes and sizes, not the text)."""
    unigrams = word_hashes(tokens)
    grams, counts = [], []
    for n in NGRAM_ORDERS:
        hashes = ngram_hashes(unigrams, n)
        counts.append(int(hashes.size))
        grams.append(hashes)
    # The words compressed are the same capped window distinct-n sees, so long documents (which zlib always
    # packs better) do not pass for repetitive ones.
    raw = window_text(tokens).encode("utf-8", "surrogatepass")
    return grams, counts, len(raw), len(zlib.compress(raw, 6)), len(tokens)


def _count_key(doc: dict[str, Any]):
    return [(view, 1) for view in views_of(doc["split"]) if view in (INPUT, TRAIN)]


def _rates(counts: list[tuple[str, int]], sample_size: int) -> dict[str, float]:
    return {view: sample_rate(n, sample_size) for view, n in counts}


def _input_count(item):
    return item[1][0]


def _head(top: list) -> frozenset:
    return frozenset(word for word, _ in top)


class SnapshotMetrics(beam.PTransform):
    """Documents of a snapshot (each with ``split``) -> ``(section, value)`` pairs:

    ``("documents", (view, DocumentStats output))`` per view, ``("vocabulary", VocabularyStats output)`` and
    ``("sample", (view, SampleStats output))`` for ``input`` and ``train``, ``("sampling", rates)``.
    """

    def __init__(self, config: ReportConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        config = self.config
        rates = (docs
                 | "ViewMembership" >> beam.FlatMap(_count_key)
                 | "CountViews" >> beam.CombinePerKey(sum)
                 | "AllViewCounts" >> beam.combiners.ToList()
                 | "SampleRates" >> beam.Map(_rates, config.sample_size))
        features = docs | "Features" >> beam.ParDo(
            _DocumentFeaturesFn(config.max_tokens_per_document), beam.pvalue.AsSingleton(rates)
        ).with_outputs(_DocumentFeaturesFn.WORDS, _DocumentFeaturesFn.SAMPLE, main="summaries")
        documents = (features.summaries
                     | "DocumentStats" >> beam.CombinePerKey(DocumentStats(config.synthetic_thresholds))
                     | "TagDocuments" >> beam.Map(lambda kv: ("documents", kv)))
        word_table = features[_DocumentFeaturesFn.WORDS] | "WordCounts" >> beam.CombinePerKey(_sum_pairs)
        head = (word_table
                | "InputWords" >> beam.Filter(lambda kv: kv[1][0] > 0)
                | "HeadWords" >> beam.combiners.Top.Of(config.tail_rank, key=_head_rank)
                | "HeadSet" >> beam.Map(_head))
        vocabulary = (word_table
                      | "VocabularyStats" >> beam.CombineGlobally(VocabularyStats(), beam.pvalue.AsSingleton(head))
                      | "TagVocabulary" >> beam.Map(lambda v: ("vocabulary", v)))
        sample = (features[_DocumentFeaturesFn.SAMPLE]
                  | "SampleStats" >> beam.CombinePerKey(SampleStats())
                  | "TagSample" >> beam.Map(lambda kv: ("sample", kv)))
        sampling = rates | "TagRates" >> beam.Map(lambda r: ("sampling", r))
        return (documents, vocabulary, sample, sampling) | "AllMetrics" >> beam.Flatten()


def _head_rank(item) -> tuple:
    return item[1][0], item[0]


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    a = b = 0
    for x, y in pairs:
        a += x
        b += y
    return a, b


def assemble(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """The ``(section, value)`` pairs of :class:`SnapshotMetrics`, as one JSON-able dict."""
    out: dict[str, Any] = {"documents": {}, "sample": {}, "vocabulary": None, "sampling": {}}
    for section, value in items:
        if section in ("documents", "sample"):
            view, stats = value
            out[section][view] = stats
        else:
            out[section] = value
    return out


def trend_values(metrics: dict[str, Any], thresholds: Sequence[float], manifest: Optional[dict] = None
                 ) -> dict[str, Optional[float]]:
    """The flat train-side figures tracked across snapshots; the weighted anchor share comes from the manifest
    (the weighting stage measured it exactly)."""
    documents = metrics["documents"]
    train = documents.get(TRAIN, {})
    holdout = documents.get(ANCHOR_HOLDOUT, {})
    vocabulary = (metrics.get("vocabulary") or {}).get(TRAIN, {})
    sample = metrics["sample"].get(TRAIN, {})
    synthetic = train.get("synthetic", {})
    anchors = train.get("anchors", {})
    out = {
        "train_documents": train.get("documents", 0),
        "holdout_documents": holdout.get("documents", 0),
        "anchor_document_share": anchors.get("document_share"),
        "anchor_token_share": anchors.get("token_share"),
        "anchor_weighted_token_share": ((manifest or {}).get("weights") or {}).get("anchor_token_share"),
        "synthetic_mean_score": synthetic.get("mean_score"),
        "unigram_entropy": vocabulary.get("unigram_entropy"),
        "tail_mass": vocabulary.get("tail_mass"),
        "rare_vocabulary_coverage": vocabulary.get("rare_vocabulary_coverage"),
        "compression_ratio": sample.get("compression_ratio"),
    }
    for n in NGRAM_ORDERS:
        out[f"distinct_{n}"] = sample.get(f"distinct_{n}")
    for t in thresholds:
        out[f"synthetic_share_above_{threshold_name(t)}"] = (synthetic.get("share_above") or {}).get(threshold_name(t))
    return out


def drift_flags(series: list[tuple[str, dict[str, Optional[float]]]], max_rise: dict[str, float],
                max_fall: dict[str, float]) -> list[dict[str, Any]]:
    """Metrics of the newest snapshot (last in ``series``, oldest first) that moved beyond their bound,
    against the previous snapshot (a step) or the oldest one shown (a slow creep)."""
    if len(series) < 2:
        return []
    newest_id, newest = series[-1]
    flags = []
    for direction, bounds in (("rise", max_rise), ("fall", max_fall)):
        for metric, bound in sorted(bounds.items()):
            now = newest.get(metric)
            if now is None:
                continue
            baselines = [("previous", series[-2])] + ([("oldest", series[0])] if len(series) > 2 else [])
            for against, (run_id, values) in baselines:
                then = values.get(metric)
                if then is None:
                    continue
                change = now - then
                moved = change if direction == "rise" else -change
                if moved > bound:
                    flags.append({"metric": metric, "direction": direction, "against": against,
                                  "against_run_id": run_id, "run_id": newest_id, "from": then, "to": now,
                                  "change": change, "bound": bound})
    return flags
