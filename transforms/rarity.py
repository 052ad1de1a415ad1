"""Rare-content upweighting: protect the tails that model collapse erases first.

Every document gets ``rarity_signals`` -- the components below, each switchable -- and a raw weight, their
product times the synthetic stage's downweight (when that policy is on). ``transforms/weighting.py`` then
scales the raw weights so the anchors' mean is 1 (``normalize: split_mean``: the train split's mean), within
``[min_weight, min(max_weight, max_epochs)]`` -- a weight is a number of epochs (``weighting.WEIGHT_MEANING``).

Components (p = share of the documents in the same group, over the documents being weighted):

1. language share   w = p_lang ** (alpha - 1)            temperature sampling as in mT5 / XLM-R, alpha = 0.3
2. cluster size     w = dup_cluster_size ** (-gamma)     content that existed in many copies is common
3. topic rarity     w = p_topic ** (alpha - 1)           k-means topics over hashed bag-of-words, alpha = 0.7

Anchors (``is_anchor``) keep a raw weight of 1 unless ``weight_anchors`` is set: they are the human reference
and are seen once per pass as written; the components still appear in their ``rarity_signals``.

Small groups are smoothed (``language.min_documents``, ``topic.min_documents``): a group of k documents is
weighted as if it held max(k, min_documents), so p = max(k, m) / N. Below m documents a group's *total* weight
grows in proportion to its size (k/m of what m documents would get) instead of each of its few documents
getting the whole temperature boost: four UDHR paragraphs, or six bibliography lines misidentified as
Yoruba, are not each worth hundreds of English documents.
4. lexical tail     w = ((t + 0.01) / (mean_t + 0.01)) ** beta
                    t = share of the document's tokens outside the corpus's `vocabulary_size` most frequent words

The topic model and the vocabulary are fitted inside the pipeline on a hash-chosen sample (``sample_size``
documents, chosen by ``doc_id``: the same sample every run for the same documents); language and topic shares
and the mean tail share are ``Combine`` results passed as side inputs -- nothing is collected on the driver.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Sequence

import apache_beam as beam
import numpy as np

from tailguard.transforms.exact import ExactMean
from tailguard.transforms.settings import require
from tailguard.transforms.stage import StageMetrics, StageOutputs, fixed_batches, no_rejections
from tailguard.transforms.text import stable_fraction, words

STAGE = "rarity"
_SAMPLE_SALT = "rarity-sample"
_TAIL_SMOOTHING = 0.01


@dataclass
class LanguageShareConfig:
    enabled: bool = True
    alpha: float = 0.3
    # A language with fewer documents counts as having this many (see the module docstring): temperature
    # sampling is meant for languages with a corpus, not for a handful of stray or misidentified documents.
    min_documents: int = 100

    def validate(self) -> None:
        require(0 < self.alpha <= 1, "alpha", f"must be in (0, 1], got {self.alpha}")
        require(self.min_documents >= 1, "min_documents", f"must be >= 1, got {self.min_documents}")


@dataclass
class ClusterSizeConfig:
    enabled: bool = True
    gamma: float = 0.5

    def validate(self) -> None:
        require(0 <= self.gamma <= 2, "gamma", f"must be in [0, 2], got {self.gamma}")


@dataclass
class TopicConfig:
    enabled: bool = True
    alpha: float = 0.7  # milder than languages': topics are noisier groups, and the components multiply
    clusters: int = 16
    dimensions: int = 1024
    iterations: int = 25
    seed: int = 13
    min_documents: int = 20  # as for languages: a topic of a few documents is weighted as if it had this many

    def validate(self) -> None:
        require(0 < self.alpha <= 1, "alpha", f"must be in (0, 1], got {self.alpha}")
        require(self.min_documents >= 1, "min_documents", f"must be >= 1, got {self.min_documents}")
        require(2 <= self.clusters <= 1024, "clusters", f"must be in [2, 1024], got {self.clusters}")
        require(16 <= self.dimensions <= 65536, "dimensions", f"must be in [16, 65536], got {self.dimensions}")
        require(1 <= self.iterations <= 500, "iterations", f"must be in [1, 500], got {self.iterations}")


@dataclass
class LexicalTailConfig:
    enabled: bool = True
    vocabulary_size: int = 20_000
    beta: float = 0.5

    def validate(self) -> None:
        require(self.vocabulary_size >= 100, "vocabulary_size", f"must be >= 100, got {self.vocabulary_size}")
        require(0 <= self.beta <= 2, "beta", f"must be in [0, 2], got {self.beta}")


@dataclass
class RarityConfig:
    enabled: bool = True
    language: LanguageShareConfig = field(default_factory=LanguageShareConfig)
    cluster: ClusterSizeConfig = field(default_factory=ClusterSizeConfig)
    topic: TopicConfig = field(default_factory=TopicConfig)
    tail: LexicalTailConfig = field(default_factory=LexicalTailConfig)
    sample_size: int = 20_000
    # Low enough that accumulated synthetic text can be weighted down far enough for anchors.min_share 0.9
    # while it outnumbers the anchors' tokens up to ~11 times (at 0.1 the share would fail past 1.1 times).
    min_weight: float = 0.01
    max_weight: float = 10.0
    # The repetition cap: no document is seen more than this many times in one pass over the snapshot's token
    # budget (a weight is a number of epochs, weighting.WEIGHT_MEANING). 4, after Muennighoff et al. 2023
    # ("Scaling Data-Constrained Language Models"): up to ~4 epochs repeated data is nearly as good as fresh,
    # beyond that its value falls off fast. Bounds everything: language temperature, rarity, anchor multiplier.
    max_epochs: float = 4.0
    # What a weight of 1 means. anchor_mean (the default): the anchors' mean weight is 1 -- human text is seen
    # about once per pass -- and anchors.min_share is reached by weighting everything else down: what keeps a
    # model re-curated on its own output from collapsing (benchmarks/README.md, "Model collapse"). split_mean:
    # the train split's mean is 1, so a share above what the anchors hold is reached by repeating them.
    # anchor_mean falls back to split_mean when the train split holds no anchors.
    normalize: Literal["split_mean", "anchor_mean"] = "anchor_mean"
    # false (default): every anchor's raw weight is 1 -- the human reference is seen once per pass, as it was
    # written, and the components reshape only the rest of the mix. Measured: weighting the anchors too (their
    # weights spread ~0.8-1.3 on WikiText) makes a one-pass sampling plan drop ~8 % of them and raises held-out
    # perplexity (benchmarks/README.md, "Model collapse"). true: anchors get the components like everything else.
    weight_anchors: bool = False
    materialize: bool = False

    @property
    def ceiling(self) -> float:
        """The highest weight any document gets: the rarity ceiling or the repetition cap, the lower."""
        return min(self.max_weight, self.max_epochs)

    def validate(self) -> None:
        require(self.sample_size >= 100, "sample_size", f"must be >= 100, got {self.sample_size}")
        require(0 < self.min_weight <= 1, "min_weight", f"must be in (0, 1], got {self.min_weight}")
        require(1 <= self.max_weight <= 1000, "max_weight", f"must be in [1, 1000], got {self.max_weight}")
        require(1 <= self.max_epochs <= 1000, "max_epochs", f"must be in [1, 1000] (a number of times a document "
                f"may be seen per pass), got {self.max_epochs}")
        # Materialised rows repeat a document at least once, so weights below 1 -- most of the non-anchors
        # under anchor_mean -- would all become 1 and the anchor share would be silently lost.
        require(not (self.materialize and self.normalize == "anchor_mean"), "materialize",
                "cannot be combined with normalize: anchor_mean (rows repeat a document at least once, so the "
                "weights below 1 that anchor_mean relies on would be lost); use per-example sample_weight")


# --------------------------------------------------------------------------------------------------- pure logic


def share_weight(share: float, alpha: float) -> float:
    """Temperature sampling: a group with share p is sampled in proportion to p**alpha, so each of its
    documents gets p**alpha / p = p**(alpha - 1)."""
    return float(max(share, 1e-12) ** (alpha - 1.0))


def smoothed_share(count: int, total: int, min_documents: int) -> float:
    """A group's share with small groups smoothed: ``max(count, min_documents) / total``, at most 1."""
    if total <= 0:
        return 1.0
    return min(max(count, min_documents), total) / total


def cluster_size_weight(size: int, gamma: float) -> float:
    return float(max(int(size or 1), 1) ** (-gamma))


def tail_weight(tail_share: float, mean_tail_share: float, beta: float) -> float:
    return float(((tail_share + _TAIL_SMOOTHING) / (mean_tail_share + _TAIL_SMOOTHING)) ** beta)


def tail_share(tokens: Sequence[str], vocabulary: frozenset[str]) -> float:
    if not tokens:
        return 0.0
    return sum(1 for t in tokens if t not in vocabulary) / len(tokens)


def _bucket(token: str, dimensions: int) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=4).digest(),
                          "little") % dimensions


def hashed_bag_of_words(tokens: Sequence[str], dimensions: int,
                        buckets: Optional[dict[str, int]] = None) -> np.ndarray:
    """L2-normalised term-count vector in a hashed space (the same token always lands in the same bucket).

    ``buckets`` caches token -> bucket across calls: common words are hashed once.
    """
    return hashed_bags_of_words([tokens], dimensions, buckets)[0]


def hashed_bags_of_words(token_lists: Sequence[Sequence[str]], dimensions: int,
                         buckets: Optional[dict[str, int]] = None) -> np.ndarray:
    """``hashed_bag_of_words`` of each token list, as the rows of one matrix: integer counts, then each row
    divided by its own norm; counted with one ``bincount`` per batch."""
    cache = {} if buckets is None else buckets
    everything = list(itertools.chain.from_iterable(token_lists))
    for token in set(everything).difference(cache):
        cache[token] = _bucket(token, dimensions)
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    cells = np.repeat(np.arange(len(token_lists), dtype=np.int64) * dimensions, lengths) + np.fromiter(
        map(cache.__getitem__, everything), dtype=np.int64, count=len(everything))
    counts = np.bincount(cells, minlength=len(token_lists) * dimensions)
    matrix = counts.astype(np.float32).reshape(len(token_lists), dimensions)
    for row in range(len(token_lists)):
        norm = float(np.linalg.norm(matrix[row]))
        if norm > 0:
            matrix[row] /= norm
    return matrix


def fit_kmeans(vectors: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """Spherical k-means with k-means++ seeding; seeded, so the same sample gives the same centroids."""
    n = vectors.shape[0]
    if n == 0:
        return np.zeros((1, vectors.shape[1] if vectors.ndim == 2 else 1), dtype=np.float32)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    centroids = [vectors[rng.integers(n)]]
    closest = 1.0 - vectors @ centroids[0]
    for _ in range(1, k):
        weights = np.clip(closest, 0, None) ** 2
        total = float(weights.sum())
        index = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centroids.append(vectors[index])
        closest = np.minimum(closest, 1.0 - vectors @ vectors[index])
    centers = np.stack(centroids).astype(np.float32)
    for _ in range(iterations):
        assignment = np.argmax(vectors @ centers.T, axis=1)
        updated = np.zeros_like(centers)
        np.add.at(updated, assignment, vectors)
        norms = np.linalg.norm(updated, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        updated[~empty] /= norms[~empty]
        updated[empty] = centers[empty]
        if np.allclose(updated, centers, atol=1e-6):
            centers = updated
            break
        centers = updated
    return centers


@dataclass(frozen=True)
class ContentModel:
    """What the sample teaches: the frequent vocabulary and the topic centroids."""

    vocabulary: frozenset
    centroids: Optional[np.ndarray]
    sample_docs: int


def fit_content_model(sample: Iterable[tuple[str, list[str]]], config: RarityConfig) -> ContentModel:
    ordered = sorted(sample, key=lambda item: item[0])  # by doc_id: independent of arrival order
    counts: Counter = Counter()
    for _, tokens in ordered:
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = frozenset(word for word, _ in ranked[: config.tail.vocabulary_size])
    centroids = None
    if config.topic.enabled:
        if ordered:
            buckets: dict[str, int] = {}
            matrix = hashed_bags_of_words([tokens for _, tokens in ordered], config.topic.dimensions, buckets)
        else:
            matrix = np.zeros((0, config.topic.dimensions), dtype=np.float32)
        centroids = fit_kmeans(matrix, config.topic.clusters, config.topic.iterations, config.topic.seed)
    return ContentModel(vocabulary, centroids, len(ordered))


def nearest_topics(token_lists: Sequence[Sequence[str]], centroids: np.ndarray, dimensions: int,
                   buckets: Optional[dict[str, int]] = None) -> list[int]:
    if not token_lists:
        return []
    matrix = hashed_bags_of_words(token_lists, dimensions, buckets)
    return [int(i) for i in np.argmax(matrix @ centroids.T, axis=1)]


def raw_weight(signals: dict[str, float], config: RarityConfig) -> float:
    """Product of the enabled components and the synthetic downweight (before scaling to mean 1)."""
    weight = signals.get("synthetic_downweight", 1.0)
    for name, section in (("language", config.language), ("cluster", config.cluster), ("topic", config.topic),
                          ("tail", config.tail)):
        if section.enabled:
            weight *= signals[name]
    return float(weight)


def language_of(doc: dict[str, Any]) -> str:
    return doc.get("lang") or "und"


def synthetic_downweight_of(doc: dict[str, Any]) -> float:
    signals = doc.get("synthetic_signals") or {}
    return float(signals.get("downweight", 1.0))


# --------------------------------------------------------------------------------------------------- Beam wiring


# Documents per batch of the content-features step (one matrix product against the centroids per batch).
_BATCH_SIZE = 512
# Tokens whose topic bucket a worker remembers across batches (~100 bytes each); the cache restarts beyond.
_BUCKET_CACHE_TOKENS = 500_000


def _in_sample(doc: dict[str, Any], fraction: float) -> bool:
    return stable_fraction(doc["doc_id"], _SAMPLE_SALT) < fraction


def _sample_fraction(total: int, sample_size: int) -> float:
    return 1.0 if total <= sample_size else sample_size / total


class _ContentFeaturesFn(beam.DoFn):
    """Per batch: tokens, lexical-tail share and nearest topic, against the fitted content model."""

    def __init__(self, config: RarityConfig):
        self.config = config

    def setup(self):
        self.metrics = StageMetrics(STAGE)
        self.buckets: dict[str, int] = {}  # token -> topic bucket, kept across batches (bounded)

    def process(self, batch: list[dict[str, Any]], model: ContentModel):
        with self.metrics.timed():
            token_lists = [words(doc["text"]) for doc in batch]
            if len(self.buckets) > _BUCKET_CACHE_TOKENS:
                self.buckets = {}
            topics = (nearest_topics(token_lists, model.centroids, self.config.topic.dimensions, self.buckets)
                      if self.config.topic.enabled else [0] * len(batch))
            out = []
            for doc, tokens, topic in zip(batch, token_lists, topics):
                signals = {"tokens": float(len(tokens)), "topic_id": float(topic),
                           "tail_share": tail_share(tokens, model.vocabulary),
                           "synthetic_downweight": synthetic_downweight_of(doc)}
                out.append((doc, signals))
        self.metrics.saw(len(batch))
        self.metrics.kept(len(batch))
        yield from out


def _with_weights(item, language_counts: dict, topic_counts: dict, mean_tail: float, total: int,
                  config: RarityConfig) -> dict[str, Any]:
    doc, signals = item
    signals = dict(signals)
    signals["language"] = share_weight(
        smoothed_share(language_counts.get(language_of(doc), 1), total, config.language.min_documents),
        config.language.alpha)
    signals["cluster"] = cluster_size_weight(doc.get("dup_cluster_size", 1), config.cluster.gamma)
    signals["topic"] = share_weight(
        smoothed_share(topic_counts.get(int(signals["topic_id"]), 1), total, config.topic.min_documents),
        config.topic.alpha)
    signals["tail"] = tail_weight(signals["tail_share"], mean_tail, config.tail.beta)
    # The components are recorded for every document; an anchor's raw weight is 1 unless weight_anchors.
    signals["raw"] = raw_weight(signals, config) if config.weight_anchors or not doc.get("is_anchor") else 1.0
    out = dict(doc)
    out["rarity_signals"] = signals
    return out


class FitContentModel(beam.CombineFn):
    """The hash-chosen sample's ``(doc_id, tokens)`` -> :class:`ContentModel`. A combine rather than
    ``ToList`` + ``Map``: the global combine's result also travels as a side input (the default for an empty
    input), and Beam's worker state cache measures every cached value object by object -- for the sample's
    token lists that cost seconds per run; the fitted model is a few MB."""

    def __init__(self, config: RarityConfig):
        self.config = config

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, item):
        accumulator.append(item)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = []
        for accumulator in accumulators:
            merged.extend(accumulator)
        return merged

    def extract_output(self, accumulator):
        return fit_content_model(accumulator, self.config)


class RareContentWeights(beam.PTransform):
    """Documents in; ``StageOutputs`` whose ``kept`` are the same documents with ``rarity_signals`` (including the
    raw weight) -- nothing is rejected; :class:`~tailguard.transforms.weighting.BalanceWeights` scales them next."""

    def __init__(self, config: RarityConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        config = self.config
        total = docs | "CountDocuments" >> beam.combiners.Count.Globally()
        fraction = total | "SampleFraction" >> beam.Map(_sample_fraction, config.sample_size)
        model = (
            docs
            | "HashSample" >> beam.Filter(_in_sample, beam.pvalue.AsSingleton(fraction))
            | "SampleTokens" >> beam.Map(lambda doc: (doc["doc_id"], words(doc["text"])))
            | "FitContentModel" >> beam.CombineGlobally(FitContentModel(config))
        )
        featured = (
            docs
            | "Batch" >> fixed_batches(_BATCH_SIZE)
            | "ContentFeatures" >> beam.ParDo(_ContentFeaturesFn(config), beam.pvalue.AsSingleton(model))
        )
        language_counts = (featured
                           | "Languages" >> beam.Map(lambda item: language_of(item[0]))
                           | "CountLanguages" >> beam.combiners.Count.PerElement())
        topic_counts = (featured
                        | "Topics" >> beam.Map(lambda item: int(item[1]["topic_id"]))
                        | "CountTopics" >> beam.combiners.Count.PerElement())
        mean_tail = (featured
                     | "TailShares" >> beam.Map(lambda item: item[1]["tail_share"])
                     | "MeanTailShare" >> beam.CombineGlobally(ExactMean()))
        weighted = featured | "ApplyWeights" >> beam.Map(
            _with_weights, beam.pvalue.AsDict(language_counts), beam.pvalue.AsDict(topic_counts),
            beam.pvalue.AsSingleton(mean_tail), beam.pvalue.AsSingleton(total), config)
        return StageOutputs(weighted, no_rejections(docs.pipeline))
