"""Near-duplicate removal: exact copies by ``doc_id``, near copies by MinHash LSH, one survivor per cluster.

How a run decides, step by step (each step a named transform in :class:`NearDedup`):

1. **Sign** -- documents are batched and each gets a MinHash signature over its word n-gram shingles
   (``transforms.minhash``: datasketch's ``affine32`` scheme -- its default since 2.0 -- with
   ``sha1_hash32``, computed by a numpy kernel) and a bottom-k sketch of its shingle hashes (the
   ``verify_sketch_size`` smallest). From here on only small records travel: a *rank key* (the survivor
   priority below, as ~50 bytes whose byte order *is* the priority order, ending with the doc_id), copy
   counts, the signature and the sketch.
2. **Exact duplicates** -- ``CombinePerKey(doc_id)`` folds all copies of one text into one *node* (lifted, so
   copies are merged before the shuffle). Entries of the previous run's index join here too, marking their
   doc_id as *published*.
3. **LSH banding** -- ``bands x rows`` from ``datasketch.lsh._optimal_param(threshold, num_perm, weights)``
   (what ``MinHashLSH(threshold, num_perm, weights=(false_positive_weight, false_negative_weight))`` picks;
   recall-leaning by default, see the config); one ``GroupByKey`` carrying only band keys and rank keys: the band records of a bundle are packed per band shard (``band_shards``), so the shuffle moves one element per shard and bundle, and each shard's group is split into its buckets (members sharing a band key). A bucket of up to ``max_bucket_pairs`` members yields all its pairs; a larger one the star from its
   best-ranked member plus consecutive members in rank order (2k candidates rather than k^2/2: a duplicate
   missed there is normally caught in another band). Pairs of two published documents are skipped -- they are
   both kept whatever happens.
4. **Verification** (``verify_candidates``, on by default) -- distinct candidate pairs are joined with both
   documents' sketches (two ``CoGroupByKey`` on rank keys) and kept only if their Jaccard estimated from the
   bottom-k sketches is >= ``threshold``. That estimate is the exact Jaccard of the shingle sets (up to
   32-bit hash collisions) for documents with fewer than ``verify_sketch_size`` distinct shingles and a
   sample of at least that many shingles above; MinHash's share of equal values (``MinHash.jaccard``,
   ``verify_sketch_size: 0``) has a standard error of ~0.035 at 128 permutations, which misjudges pairs near
   the threshold in both directions (see benchmarks/README.md, "Near-dedup").
5. **Connected components** -- ``transforms.components.ConnectedComponents``: alternating large-star /
   small-star rounds, each one ``GroupByKey`` over edges keyed by node, unrolled to ``max_cc_rounds``, with a
   convergence check after ``cc_check_after_rounds`` that sends the edges on only if some node needs more, and
   the same check at the end (counter ``cc_unconverged_nodes`` + a logged warning if the bound is hit; the
   result then keeps some duplicates but never points a document at a removed one). Because rank keys sort
   in priority order, the component's minimum *is* its survivor.
6. **Fates** -- nodes join their labels, are grouped by label to count the cluster, and every node with
   input copies gets its fate; new surviving nodes become index rows.
7. **Route** -- the one shuffle that carries texts: documents keyed by doc_id meet their node's fate
   (``CoGroupByKey``), which also picks which of several exact copies survives.

Survivor priority (best first): already published (present in the previous index) > human-anchor eligible
(``anchor_eligible(doc)``, absent = False) > lower ``synthetic_score`` (to 6 decimals) > earlier
``source_timestamp`` > ``doc_id``. An absent ``synthetic_score`` ranks as ``unknown_synthetic_score`` (default 0.5, the
uninformative prior: it loses to documents that are probably human, beats those probably machine, and loses a
tie to a known 0.5); an absent timestamp ranks after every known one. So a synthetic paraphrase loses to its
human original. Among exact copies of one text the copy carried from the previous snapshot (has
``first_run_id``) comes first, then the same priority, then source URI and offset.

Published documents are never removed: every published member of a cluster survives, and new members point
(``duplicate_of``) at the best-ranked one. An input copy of a published text that was not carried forward (no
``first_run_id``) is a new exact duplicate of it. ``index`` is cumulative: all previous rows plus one row per
new survivor (documents without any word are indexed with the empty-set signature, all ``2^32-1``, so exact
copies of them are still recognised tomorrow).

Cost: signatures O(total words); the band shuffle ``bands`` small records per document (in packs); the verification
joins about two sketches per document (4 bytes per distinct shingle, at most ``4 * verify_sketch_size``) plus
one per candidate pair; components O(rounds * edges); the label join, which carries each node's signature and
sketch once more (the index rows of new survivors are built there); the cluster grouping of small per-node
records; and the text join. Every step is linear in N for a fixed duplicate structure, and no step holds more
than one band shard (``bands * N / band_shards`` small records), one packing buffer (``_BAND_FLUSH_RECORDS``),
node neighbourhood or cluster's member list. The previous index is re-banded every night
(linear in the cumulative index), but buckets without a new document emit nothing.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.transforms.window import GlobalWindows

from tailguard.transforms.components import ConnectedComponents
from tailguard.transforms.minhash import (
    INDEX_SCHEMA,
    SCHEME,
    MinHasher,
    band_keys,
    index_row,
    load_lean_minhashes,
    signature_from_bytes,
    signature_to_bytes,
    sketch_jaccard,
)
from tailguard.transforms.settings import ConfigError, require, require_fraction
from tailguard.transforms.stage import (INDEX, KEPT, REJECTED, StageMetrics, StageOutputs, fixed_batches, mark_rejected,
                                        no_rejections)

__all__ = [
    "DedupConfig", "NearDedup", "INDEX_SCHEMA", "load_lean_minhashes", "rank_key",
    "candidate_pairs", "lsh_parameters",
]

STAGE = "dedup"
SCORE_DECIMALS = 6
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"


@dataclass
class DedupConfig:
    enabled: bool = True
    threshold: float = 0.8
    """Jaccard similarity of word n-gram shingle sets at or above which two documents are duplicates."""
    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    verify_candidates: bool = True
    """Keep an LSH candidate pair only if its estimated Jaccard reaches ``threshold``."""
    verify_sketch_size: int = 512
    """Verify with bottom-k sketches of this many shingle hashes (exact Jaccard for documents with fewer
    distinct shingles -- about 3 KB of text at 512 -- and a >= k-shingle sample beyond); 0 = estimate from the
    MinHash signatures instead (noisier: +-0.035 at 128 permutations)."""
    max_cc_rounds: int = 10
    """Large-star/small-star rounds unrolled into the pipeline (convergence is checked and counted)."""
    cc_check_after_rounds: int = 3
    """After this many rounds a convergence check over all edges decides whether the further rounds (up to
    ``max_cc_rounds``) get the edges or nothing (``transforms.components``)."""
    max_bucket_pairs: int = 50
    """LSH buckets larger than this yield star + chain candidates instead of all pairs."""
    unknown_synthetic_score: float = 0.5
    """Rank of a document without ``synthetic_score`` (see the module docstring)."""
    false_positive_weight: float = 0.02
    false_negative_weight: float = 0.98
    """Weights datasketch's ``_optimal_param`` uses to choose bands x rows. Recall-leaning by default because
    verification removes false candidates cheaply, while a pair LSH misses is lost: at threshold 0.8 and 128
    permutations datasketch's default 0.5/0.5 gives 9x13 bands, which finds 40 % of pairs at Jaccard 0.8 and
    93 % at 0.9; 0.02/0.98 gives 17x7, finding 98 % at 0.8 and all at 0.85."""
    batch_size: int = 256
    band_shards: int = 4096
    """LSH band records are shuffled in packs, grouped by this many band-key shards; one shard's group holds
    about ``bands * documents / band_shards`` records (~100 bytes each; bands = 17 by default): 4096 keeps it
    under ~50 MB up to ~100M documents (plus the previous index) -- raise it for larger runs."""

    def validate(self) -> None:
        require_fraction(self.threshold, "threshold", allow_zero=False)
        require(2 <= self.num_perm <= 4096, "num_perm", f"must be in [2, 4096], got {self.num_perm}")
        require(self.ngram >= 1, "ngram", f"must be >= 1, got {self.ngram}")
        require(0 <= self.seed < 2**32, "seed", f"must be in [0, 2^32), got {self.seed}")
        require(self.max_cc_rounds >= 0, "max_cc_rounds", f"must be >= 0, got {self.max_cc_rounds}")
        require(self.cc_check_after_rounds >= 0, "cc_check_after_rounds",
                f"must be >= 0, got {self.cc_check_after_rounds}")
        require(self.verify_sketch_size >= 0, "verify_sketch_size", f"must be >= 0, got {self.verify_sketch_size}")
        require(self.max_bucket_pairs >= 2, "max_bucket_pairs", f"must be >= 2, got {self.max_bucket_pairs}")
        require_fraction(self.unknown_synthetic_score, "unknown_synthetic_score")
        require(self.false_positive_weight >= 0, "false_positive_weight", "must be >= 0")
        require(self.false_negative_weight >= 0, "false_negative_weight", "must be >= 0")
        require(self.false_positive_weight + self.false_negative_weight > 0, "false_negative_weight",
                "false_positive_weight + false_negative_weight must be > 0")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.band_shards >= 1, "band_shards", f"must be >= 1, got {self.band_shards}")


def lsh_parameters(config: DedupConfig) -> tuple[int, int]:
    """``(bands, rows)`` exactly as ``datasketch.MinHashLSH(threshold, num_perm, weights)`` chooses them."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(config.threshold, config.num_perm, config.false_positive_weight,
                          config.false_negative_weight)


def min_equal_values(config: DedupConfig) -> int:
    """Equal hash values a pair needs for an estimated Jaccard >= threshold (integer, so no float drift)."""
    return math.ceil(config.threshold * config.num_perm - 1e-9)


# --- rank keys: bytes whose lexicographic order is the survivor priority --------------------------------------

_PUBLISHED, _NEW = b"\x00", b"\x01"
_PREFIX_LEN = 19  # anchor(1) + score(8) + score-known(1) + timestamp-known(1) + timestamp(8)


def _ordered_float(value: float) -> bytes:
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return struct.pack(">Q", bits)


def _float_from_ordered(raw: bytes) -> float:
    (bits,) = struct.unpack(">Q", raw)
    bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def rank_prefix(anchor_eligible: bool, synthetic_score: Optional[float], source_timestamp: Optional[int],
                unknown_synthetic_score: float) -> bytes:
    """Priority of one document, without the published flag and doc_id; smaller bytes = better survivor."""
    known_score = synthetic_score is not None and not math.isnan(synthetic_score)
    # Rounded so that last-bit floating-point noise upstream (scores of near-identical texts computed in
    # differently sized batches) cannot flip which copy survives; closer scores than 1e-6 are a tie.
    score = round(float(synthetic_score), SCORE_DECIMALS) if known_score else unknown_synthetic_score
    known_time = source_timestamp is not None
    return b"".join((
        b"\x00" if anchor_eligible else b"\x01",
        _ordered_float(score),
        b"\x00" if known_score else b"\x01",
        b"\x00" if known_time else b"\x01",
        struct.pack(">Q", (int(source_timestamp) + 2**63) if known_time else 0),
    ))


def decode_prefix(prefix: bytes) -> tuple[bool, Optional[float], Optional[int]]:
    anchor = prefix[0] == 0
    score = _float_from_ordered(prefix[1:9]) if prefix[9] == 0 else None
    timestamp = struct.unpack(">Q", prefix[11:19])[0] - 2**63 if prefix[10] == 0 else None
    return anchor, score, timestamp


def rank_key(published: bool, prefix: bytes, doc_id: str) -> bytes:
    return (_PUBLISHED if published else _NEW) + prefix + doc_id.encode("utf-8")


def doc_id_of(key: bytes) -> str:
    return key[1 + _PREFIX_LEN:].decode("utf-8")


def why_ranked_higher(winner: bytes, loser: bytes) -> str:
    """The first priority criterion on which ``winner`` beats ``loser``, in words."""
    if winner[0] != loser[0]:
        return "already published"
    if winner[1] != loser[1]:
        return "human-anchor eligible"
    if winner[2:11] != loser[2:11]:
        score = decode_prefix(winner[1:1 + _PREFIX_LEN])[1]
        return f"lower synthetic_score ({'unknown' if score is None else f'{score:.3f}'})"
    if winner[11:20] != loser[11:20]:
        return "earlier source_timestamp"
    return "smaller doc_id"


def record_prefix(doc: dict[str, Any], anchor_eligible: Optional[Callable[[dict], bool]],
                  unknown_synthetic_score: float) -> bytes:
    return rank_prefix(bool(anchor_eligible(doc)) if anchor_eligible is not None else False,
                       doc.get("synthetic_score"), doc.get("source_timestamp"), unknown_synthetic_score)


def copy_order(doc: dict[str, Any], published: bool, prefix: bytes) -> tuple:
    """Which of several exact copies survives: the carried published one, then priority, then position."""
    carried = published and doc.get("first_run_id") is not None
    return (0 if carried else 1, prefix, doc.get("source_uri") or "", doc.get("source_offset") or 0,
            doc.get("source") or "", doc.get("source_record_id") or "")


# --- verification ------------------------------------------------------------------------------------------

def encode_sketch(sketch: np.ndarray, sketch_size: int) -> bytes:
    return struct.pack(">I", sketch_size) + np.ascontiguousarray(sketch, dtype="<u4").tobytes()


def decode_sketch(raw: bytes) -> tuple[np.ndarray, int]:
    return np.frombuffer(raw[4:], dtype="<u4").astype(np.uint32), struct.unpack(">I", raw[:4])[0]


def verification_jaccard(first: bytes, second: bytes, sketch_mode: bool) -> float:
    """Jaccard of a candidate pair from what verification carries: bottom-k sketches or MinHash signatures."""
    if sketch_mode:
        (a, a_k), (b, b_k) = decode_sketch(first), decode_sketch(second)
        return sketch_jaccard(a, a_k, b, b_k)
    a, b = signature_from_bytes(first), signature_from_bytes(second)
    return float(np.count_nonzero(a == b)) / float(a.size)


def is_duplicate_pair(first: bytes, second: bytes, config: DedupConfig) -> bool:
    sketch_mode = config.verify_sketch_size > 0
    if not sketch_mode:
        a, b = signature_from_bytes(first), signature_from_bytes(second)
        return int(np.count_nonzero(a == b)) >= min_equal_values(config)
    return verification_jaccard(first, second, True) >= config.threshold - 1e-12


# --- candidates --------------------------------------------------------------------------------------------

def candidate_pairs(members: Iterable[tuple[bytes, bool]], max_bucket_pairs: int) -> tuple[list, bool]:
    """Candidate pairs ``(smaller, larger)`` of one LSH bucket of ``(rank_key, is_new)`` members, and whether
    the bucket was large. Pairs of two published documents are left out."""
    unique = sorted(dict(members).items())
    if len(unique) < 2 or not any(new for _, new in unique):
        return [], False
    if len(unique) <= max_bucket_pairs:
        pairs = [(a, b) for i, (a, new_a) in enumerate(unique) for b, new_b in unique[i + 1:] if new_a or new_b]
        return pairs, False
    pivot, pivot_new = unique[0]
    pairs = {(pivot, b) for b, new_b in unique[1:] if pivot_new or new_b}
    pairs.update((a, b) for (a, new_a), (b, new_b) in zip(unique, unique[1:]) if new_a or new_b)
    return sorted(pairs), True


# --- Beam wiring ---------------------------------------------------------------------------------------------

class NodeEvidence(NamedTuple):
    """What one record (or one previous-index row) says about its doc_id's node."""

    prefix: bytes
    copies: int
    carried: int
    published: bool
    signature: Optional[bytes]
    sketch: Optional[bytes]


class _SignDocuments(beam.DoFn):
    """Batch of documents -> ``(doc_id, NodeEvidence)`` per document; exact copies in a batch are signed once."""

    def __init__(self, config: DedupConfig, anchor_eligible):
        self._config = config
        self._anchor_eligible = anchor_eligible

    def setup(self):
        self._hasher = MinHasher(self._config.num_perm, self._config.seed, self._config.ngram)
        self._metrics = StageMetrics(STAGE)

    def process(self, batch):
        with self._metrics.timed():
            self._metrics.saw(len(batch))
            distinct: dict[str, str] = {}
            for doc in batch:
                distinct.setdefault(doc["doc_id"], doc.get("text") or "")
            ids = list(distinct)
            sketch_size = self._config.verify_sketch_size
            computed = self._hasher.signatures_and_sketches([distinct[i] for i in ids], sketch_size)
            encoded = {}
            for doc_id, (signature, sketch) in zip(ids, computed):
                encoded[doc_id] = (None if signature is None else signature_to_bytes(signature),
                                   None if sketch is None else encode_sketch(sketch, sketch_size))
            empty = sum(1 for signature, _ in encoded.values() if signature is None)
            if empty:
                self._metrics.count("no_shingles", empty)
            out = []
            for doc in batch:
                signature, sketch = encoded[doc["doc_id"]]
                out.append((doc["doc_id"], NodeEvidence(
                    record_prefix(doc, self._anchor_eligible, self._config.unknown_synthetic_score),
                    1, 1 if doc.get("first_run_id") is not None else 0, False, signature, sketch)))
        return out


def _evidence_from_index_row(row: dict[str, Any], config: DedupConfig) -> tuple[str, NodeEvidence]:
    """A previous index row as evidence that its doc_id is published; a mismatching index fails the run."""
    for key, expected in (("num_perm", config.num_perm), ("seed", config.seed), ("scheme", SCHEME),
                          ("ngram", config.ngram)):
        if row.get(key) != expected:
            raise ValueError(f"previous dedup index row {row.get('doc_id')!r} has {key}={row.get(key)!r} but this "
                             f"run uses {expected!r}: signatures are not comparable; rebuild the index or match "
                             f"dedup.{key}")
    values = np.asarray(row["hashvalues"], dtype=np.uint32)
    signature = None if bool(np.all(values == 0xFFFFFFFF)) else signature_to_bytes(values)
    sketch = None
    if config.verify_sketch_size and signature is not None:
        if row.get("shingle_sketch") is None or not row.get("sketch_size"):
            raise ValueError(f"previous dedup index row {row.get('doc_id')!r} has no shingle_sketch (written with "
                             f"verify_sketch_size=0): set dedup.verify_sketch_size=0 or rebuild the index")
        sketch = encode_sketch(np.asarray(row["shingle_sketch"], dtype=np.uint32), row["sketch_size"])
    prefix = rank_prefix(bool(row.get("anchor_eligible")), row.get("synthetic_score"),
                         row.get("source_timestamp_us"), config.unknown_synthetic_score)
    return row["doc_id"], NodeEvidence(prefix, 0, 0, True, signature, sketch)


def _smaller_present(first: Optional[bytes], second: Optional[bytes]) -> Optional[bytes]:
    """Copies of one text carry the same bytes; picking by order keeps the choice deterministic regardless."""
    present = [v for v in (first, second) if v is not None]
    return min(present) if present else None


class MergeNodeEvidence(beam.CombineFn):
    """All copies of one text (and its index row, if published) -> one node's evidence."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, evidence):
        return self.merge_accumulators([accumulator, evidence])

    def merge_accumulators(self, accumulators):
        merged = None
        for acc in accumulators:
            if acc is None:
                continue
            if merged is None:
                merged = acc
                continue
            merged = NodeEvidence(min(merged.prefix, acc.prefix), merged.copies + acc.copies,
                                  merged.carried + acc.carried, merged.published or acc.published,
                                  _smaller_present(merged.signature, acc.signature),
                                  _smaller_present(merged.sketch, acc.sketch))
        return merged

    def extract_output(self, accumulator):
        return accumulator


# Band records are packed before the band shuffle: one shuffle element per band shard and bundle instead of
# one per (document, band). The local runner pays ~10 us per shuffled element, and 17 band records per
# document made this shuffle most of the stage's cost. A pack is flushed at this many records, which bounds
# the DoFn's buffer (~100 bytes per record).
_BAND_FLUSH_RECORDS = 100_000


def band_shard(band_key: bytes, shards: int) -> int:
    """Shard of an LSH band key (its hash bytes are uniform, so shards are even)."""
    return int.from_bytes(band_key[2:6], "big") % shards


class _EmitBandKeys(beam.DoFn):
    """Nodes -> ``(band shard, [(band_key, rank_key, is_new), ...])`` packs, flushed every
    ``_BAND_FLUSH_RECORDS`` records and at the end of the bundle."""

    def __init__(self, bands: int, rows: int, shards: int):
        self._bands = bands
        self._rows = rows
        self._shards = shards

    def start_bundle(self):
        self._packs: dict[int, list] = {}
        self._buffered = 0

    def process(self, node):
        key, evidence = node
        if evidence.signature is None:
            return
        is_new = not evidence.published
        packs, shards = self._packs, self._shards
        for band_key in band_keys(signature_from_bytes(evidence.signature), self._bands, self._rows):
            packs.setdefault(band_shard(band_key, shards), []).append((band_key, key, is_new))
        self._buffered += self._bands
        if self._buffered >= _BAND_FLUSH_RECORDS:
            yield from self._flush()

    def finish_bundle(self):
        for pack in self._flush():
            yield GlobalWindows.windowed_value(pack)

    def _flush(self):
        packs, self._packs, self._buffered = self._packs, {}, 0
        return sorted(packs.items())


class _BucketCandidates(beam.DoFn):
    """One band shard's packs -> its LSH buckets (members sharing a band key) -> candidate pairs."""

    def __init__(self, max_bucket_pairs: int):
        self._max_bucket_pairs = max_bucket_pairs

    def setup(self):
        self._metrics = StageMetrics(STAGE)

    def process(self, shard_and_packs):
        buckets: dict[bytes, list] = {}
        for pack in shard_and_packs[1]:
            for band_key, rank, is_new in pack:
                buckets.setdefault(band_key, []).append((rank, is_new))
        for members in buckets.values():
            if len(members) < 2:  # nearly every bucket: skip the bookkeeping
                continue
            with self._metrics.timed():
                pairs, large = candidate_pairs(members, self._max_bucket_pairs)
            if large:
                self._metrics.count("lsh_large_buckets")
            yield from pairs


def _send_first_payload(joined):
    _, group = joined
    payloads = group["payload"]
    if not payloads:
        return
    for second in dict.fromkeys(group["pairs"]):  # each distinct pair once, in a reproducible order
        yield second, (joined[0], payloads[0])


class _VerifyPairs(beam.DoFn):
    def __init__(self, config: DedupConfig):
        self._config = config

    def setup(self):
        self._metrics = StageMetrics(STAGE)

    def process(self, joined):
        second, group = joined
        if not group["payload"]:
            return
        with self._metrics.timed():
            second_payload = group["payload"][0]
            for first, first_payload in group["halves"]:
                if is_duplicate_pair(first_payload, second_payload, self._config):
                    self._metrics.count("pairs_verified")
                    yield first, second
                else:
                    self._metrics.count("pairs_below_threshold")


class _NodeFate(NamedTuple):
    label: bytes
    node: bytes
    cluster_size: int


@beam.typehints.with_output_types(Any)
class _JoinLabels(beam.DoFn):
    """Node + its component label -> ``(label, member)``; new survivors also become index rows."""

    INDEX = "index"

    def __init__(self, config: DedupConfig):
        self._config = config

    def process(self, joined):
        node, group = joined
        if not group["node"]:
            return []
        evidence = group["node"][0]
        labels = group["label"]
        label = labels[0] if labels else node
        if not labels and evidence.copies == 0:
            return []  # a published document nobody matched tonight: nothing to decide
        out = []
        if label == node and not evidence.published:
            anchor, score, timestamp = decode_prefix(evidence.prefix)
            signature = (np.full(self._config.num_perm, 0xFFFFFFFF, dtype=np.uint32) if evidence.signature is None
                         else signature_from_bytes(evidence.signature))
            sketch, sketch_size = decode_sketch(evidence.sketch) if evidence.sketch is not None else (None, None)
            out.append(beam.pvalue.TaggedOutput(self.INDEX, index_row(
                doc_id_of(node), signature, self._config.num_perm, self._config.seed, self._config.ngram,
                sketch, sketch_size, anchor, score, timestamp)))
        size = evidence.copies + (1 if evidence.published and evidence.carried == 0 else 0)
        out.append((label, (node, size, evidence.copies > 0)))
        return out


def _fates_in_cluster(cluster):
    label, members = cluster
    members = list(members)
    size = sum(m[1] for m in members)
    for node, _, has_copies in members:
        if has_copies:
            yield doc_id_of(node), _NodeFate(label, node, size)


@beam.typehints.with_output_types(Any)
class _RouteCopies(beam.DoFn):
    """All input copies of one text + their node's fate -> kept / rejected documents."""

    def __init__(self, config: DedupConfig, anchor_eligible, bands: int, rows: int):
        self._config = config
        self._anchor_eligible = anchor_eligible
        self._method = (f"{config.ngram}-gram MinHash, {config.num_perm} permutations, LSH {bands}x{rows}, "
                        f"threshold {config.threshold}")

    def setup(self):
        self._metrics = StageMetrics(STAGE)

    def process(self, joined):
        doc_id, group = joined
        docs = group["docs"]
        if not docs:
            return
        with self._metrics.timed():
            fates = group["fate"]
            fate = fates[0] if fates else None
            if fate is None:  # cannot happen for a consistent graph; keep rather than lose documents
                self._metrics.count("missing_fate")
                fate = _NodeFate(rank_key(False, b"\x01" * _PREFIX_LEN, doc_id),
                                 rank_key(False, b"\x01" * _PREFIX_LEN, doc_id), len(docs))
            published = fate.node[:1] == _PUBLISHED
            node_survives = published or fate.label == fate.node
            label_id = doc_id_of(fate.label)
            ordered = sorted(docs, key=lambda d: copy_order(
                d, published, record_prefix(d, self._anchor_eligible, self._config.unknown_synthetic_score)))
            first_kept = node_survives and (not published or ordered[0].get("first_run_id") is not None)
            out = []
            for position, doc in enumerate(ordered):
                annotated = dict(doc)
                annotated["dup_cluster_id"] = label_id
                annotated["dup_cluster_size"] = fate.cluster_size
                if position == 0 and first_kept:
                    self._metrics.kept()
                    out.append(annotated)
                    continue
                if node_survives:
                    annotated["duplicate_of"] = doc_id
                    if published and position == 0:
                        self._metrics.count("matched_published")
                        detail = f"same text as published document {doc_id}"
                    else:
                        detail = f"exact copy of {doc_id} (that copy ranks first among {len(docs)} copies)"
                    reason = EXACT_DUPLICATE
                elif position == 0:
                    annotated["duplicate_of"] = label_id
                    reason = NEAR_DUPLICATE
                    if fate.label[:1] == _PUBLISHED:
                        self._metrics.count("matched_published")
                    detail = (f"near-duplicate in a cluster of {fate.cluster_size} ({self._method}); survivor "
                              f"{label_id} ranks higher: {why_ranked_higher(fate.label, fate.node)}")
                else:
                    annotated["duplicate_of"] = label_id
                    reason = EXACT_DUPLICATE
                    detail = f"exact copy of {doc_id}, itself a near-duplicate of {label_id}"
                self._metrics.rejected(reason)
                out.append(beam.pvalue.TaggedOutput(REJECTED, mark_rejected(annotated, STAGE, reason, detail)))
        yield from out


def _normalise_index_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in INDEX_SCHEMA.names}


def _path_of(metadata) -> str:
    return metadata.path


def _keyed_by_doc_id(doc):
    return doc["doc_id"], doc


def _keyed_by_rank(doc_id: str, evidence: NodeEvidence):
    return rank_key(evidence.published, evidence.prefix, doc_id), evidence


def _verification_payload(node, sketch_mode: bool):
    """What verification compares: the bottom-k sketch, or the signature in MinHash mode."""
    key, evidence = node
    payload = evidence.sketch if sketch_mode else evidence.signature
    return [] if evidence.signature is None or payload is None else [(key, payload)]


class NearDedup(beam.PTransform):
    """Documents -> ``StageOutputs(kept, rejected, {INDEX: index records})``; see the module docstring."""

    def __init__(self, config: DedupConfig, previous_index: Optional[str] = None,
                 anchor_eligible: Optional[Callable[[dict], bool]] = None):
        super().__init__()
        try:
            config.validate()
        except ConfigError as error:
            raise error.under(STAGE) from None
        self._config = config
        self._previous_index = previous_index
        self._anchor_eligible = anchor_eligible

    def _read_previous_index(self, pipeline):
        if not self._previous_index:
            return pipeline | "NoPreviousIndex" >> beam.Create([])
        return (
            pipeline
            | "MatchPreviousIndex" >> fileio.MatchFiles(self._previous_index, fileio.EmptyMatchTreatment.ALLOW)
            | "PreviousIndexPaths" >> beam.Map(_path_of)
            | "ReadPreviousIndex" >> beam.io.ReadAllFromParquet()
            | "NormalisePreviousIndex" >> beam.Map(_normalise_index_row)
        )

    def expand(self, docs):
        config = self._config
        previous = self._read_previous_index(docs.pipeline)
        if not config.enabled:
            return StageOutputs(docs, no_rejections(docs.pipeline), {INDEX: previous})
        bands, rows = lsh_parameters(config)

        record_evidence = (
            docs
            | "Batch" >> fixed_batches(config.batch_size)
            | "Sign" >> beam.ParDo(_SignDocuments(config, self._anchor_eligible))
        )
        published_evidence = previous | "PublishedEvidence" >> beam.Map(_evidence_from_index_row, config)
        nodes = (
            (record_evidence, published_evidence)
            | "AllEvidence" >> beam.Flatten()
            | "ExactDuplicates" >> beam.CombinePerKey(MergeNodeEvidence())
            | "KeyByRank" >> beam.MapTuple(_keyed_by_rank)
        )

        candidates = (
            nodes
            | "BandKeys" >> beam.ParDo(_EmitBandKeys(bands, rows, config.band_shards))
            | "GroupBands" >> beam.GroupByKey()
            | "BucketCandidates" >> beam.ParDo(_BucketCandidates(config.max_bucket_pairs))
        )
        if config.verify_candidates:
            # A pair found in several bands arrives once per band; the first join sends each distinct one on.
            payloads = nodes | "VerificationPayloads" >> beam.FlatMap(
                _verification_payload, config.verify_sketch_size > 0)
            halves = (
                {"pairs": candidates, "payload": payloads}
                | "JoinFirstPayload" >> beam.CoGroupByKey()
                | "SendFirstPayload" >> beam.FlatMap(_send_first_payload)
            )
            edges = (
                {"halves": halves, "payload": payloads}
                | "JoinSecondPayload" >> beam.CoGroupByKey()
                | "VerifyCandidates" >> beam.ParDo(_VerifyPairs(config))
            )
        else:
            edges = candidates | "DistinctCandidates" >> beam.Distinct()

        labels = edges | "Components" >> ConnectedComponents(config.max_cc_rounds, STAGE, config.cc_check_after_rounds)
        members = (
            {"node": nodes, "label": labels}
            | "JoinLabels" >> beam.CoGroupByKey()
            | "NodeLabels" >> beam.ParDo(_JoinLabels(config)).with_outputs(_JoinLabels.INDEX, main="members")
        )
        fates = (
            members["members"]
            | "GroupClusters" >> beam.GroupByKey()
            | "ClusterFates" >> beam.FlatMap(_fates_in_cluster)
        )
        routed = (
            {"docs": docs | "KeyByDocId" >> beam.Map(_keyed_by_doc_id), "fate": fates}
            | "JoinFates" >> beam.CoGroupByKey()
            | "Route" >> beam.ParDo(_RouteCopies(config, self._anchor_eligible, bands, rows)).with_outputs(
                REJECTED, main=KEPT)
        )
        index = (previous, members[_JoinLabels.INDEX]) | "CumulativeIndex" >> beam.Flatten()
        return StageOutputs(routed[KEPT], routed[REJECTED], {INDEX: index})
