"""MinHash signatures, LSH band keys and the dedup index format -- the numeric core of near-dedup.

Signatures are bit-for-bit those of ``datasketch.MinHash(num_perm, seed, scheme="affine32")`` updated with
the UTF-8 bytes of each word n-gram shingle through datasketch's default hash function
(``datasketch.hashfunc.sha1_hash32``). datasketch 2.0 made ``affine32`` its default scheme (earlier versions
used the now-``legacy`` Mersenne-prime scheme, whose values differ), so a signature stored in the index loads
as a :class:`datasketch.LeanMinHash` with ``scheme="affine32"`` and the stored seed, and anybody can query it
with datasketch's own ``MinHashLSH`` after building query sketches with :func:`datasketch_minhash`.

The kernel below is ours only for speed: it computes a whole batch of signatures with a few numpy operations
(SHA-1 per shingle in one list comprehension, then one ``fmix32 -> a*h+b mod 2^32`` matrix and one
``minimum.reduceat`` over document boundaries) instead of a Python object per document.
"""

from __future__ import annotations

import glob
import hashlib
import os
import struct
from itertools import accumulate
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tailguard.transforms.text import words

SCHEME = "affine32"
HASHFUNC = "sha1_hash32"
_UINT32_MAX = np.uint32(0xFFFFFFFF)

INDEX_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("hashvalues", pa.list_(pa.uint32()), nullable=False,
                 metadata={"meaning": "MinHash signature: datasketch affine32 scheme, sha1_hash32 over UTF-8 "
                                      "word n-gram shingles"}),
        pa.field("num_perm", pa.int32(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("scheme", pa.string(), nullable=False),
        pa.field("ngram", pa.int32(), nullable=False),
        pa.field("shingle_sketch", pa.list_(pa.uint32()),
                 metadata={"meaning": "bottom-k sketch: the sketch_size smallest distinct sha1_hash32 shingle "
                                      "hashes, ascending (the whole set when shorter); verifies candidates"}),
        pa.field("sketch_size", pa.int32()),
        pa.field("anchor_eligible", pa.bool_()),
        pa.field("synthetic_score", pa.float64()),
        pa.field("source_timestamp_us", pa.int64()),
    ],
    metadata={"tailguard.index": "dedup/1"},
)
"""One row per published document: what the next run needs to deduplicate against it and rank it."""


def shingles(text: str, ngram: int) -> list[str]:
    """Word n-grams of the normalised text; a text shorter than ``ngram`` words is one shingle of all of them,
    so that two different one-word documents are not both 'empty' and thus equal."""
    tokens = words(text)
    if len(tokens) <= ngram:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i:i + ngram]) for i in range(len(tokens) - ngram + 1)]


def shingle_hashes(shingle_list: Sequence[str]) -> np.ndarray:
    """``sha1_hash32`` of each shingle's UTF-8 bytes (datasketch's default hash), as uint32."""
    sha1 = hashlib.sha1
    digests = b"".join([sha1(s.encode("utf-8", errors="surrogatepass")).digest() for s in shingle_list])
    # Each 20-byte SHA-1 digest is five little-endian uint32; sha1_hash32 is the first of them.
    return np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)


def text_shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """``shingle_hashes(shingles(text, ngram))``, faster: the tokens are joined and encoded once and each
    shingle is hashed as a slice of those bytes (the hot loop of signing: ~1 SHA-1 per word)."""
    tokens = words(text)
    if len(tokens) <= ngram:
        return shingle_hashes([" ".join(tokens)] if tokens else [])
    joined = " ".join(tokens)
    raw = joined.encode("utf-8", errors="surrogatepass")
    if len(raw) == len(joined):
        widths = [len(token) + 1 for token in tokens]
    else:
        widths = [len(token.encode("utf-8", errors="surrogatepass")) + 1 for token in tokens]
    # starts[i] = byte offset of token i; shingle i is tokens i .. i+ngram-1, i.e. raw[starts[i]:starts[i+ngram]-1].
    starts = list(accumulate(widths, initial=0))
    sha1 = hashlib.sha1
    digests = b"".join([sha1(raw[start:end - 1]).digest()
                        for start, end in zip(starts[:len(tokens) - ngram + 1], starts[ngram:])])
    return np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)


def _fmix32(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


class MinHasher:
    """Batch signatures for one ``(num_perm, seed, ngram)``; the permutations are datasketch's own."""

    def __init__(self, num_perm: int, seed: int, ngram: int):
        from datasketch import MinHash

        self.num_perm = num_perm
        self.seed = seed
        self.ngram = ngram
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self._a = np.ascontiguousarray(a, dtype=np.uint32)
        self._b = np.ascontiguousarray(b, dtype=np.uint32)

    def signatures(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Signature (uint32[num_perm]) per text; ``None`` for a text without a single word."""
        return self.signatures_of_hashes([text_shingle_hashes(t, self.ngram) for t in texts])

    def signatures_and_sketches(self, texts: Sequence[str], sketch_size: int) -> list[tuple]:
        """``(signature, bottom-k sketch)`` per text (both ``None`` for a text without a word; the sketch is
        ``None`` when ``sketch_size`` is 0)."""
        per_doc = [text_shingle_hashes(t, self.ngram) for t in texts]
        sketches = [bottom_k(h, sketch_size) if sketch_size and h.size else None for h in per_doc]
        return list(zip(self.signatures_of_hashes(per_doc), sketches))

    def signatures_of_hashes(self, per_doc: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(per_doc)
        present = [i for i, h in enumerate(per_doc) if h.size]
        if not present:
            return out
        lengths = np.array([per_doc[i].size for i in present])
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        mixed = _fmix32(np.concatenate([per_doc[i] for i in present]))
        # Permutations along rows and shingles along columns: the min over each document's shingles is then a
        # reduction over contiguous memory (about 10x faster than the transposed layout). Chunked so a batch of
        # long documents never materialises more than ~16 MB of permuted values.
        mins = np.empty((self.num_perm, len(present)), dtype=np.uint32)
        columns_per_chunk = max(1, (4 << 20) // self.num_perm)
        doc = 0
        while doc < len(present):
            end_doc = doc + 1
            while end_doc < len(present) and offsets[end_doc] + lengths[end_doc] - offsets[doc] <= columns_per_chunk:
                end_doc += 1
            start, stop = offsets[doc], offsets[end_doc - 1] + lengths[end_doc - 1]
            permuted = np.multiply(self._a[:, None], mixed[None, start:stop])
            permuted += self._b[:, None]
            mins[:, doc:end_doc] = np.minimum.reduceat(permuted, offsets[doc:end_doc] - start, axis=1)
            doc = end_doc
        mins = np.ascontiguousarray(mins.T)
        for row, i in enumerate(present):
            out[i] = mins[row]
        return out


def bottom_k(hashes: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest distinct shingle hashes, ascending: the whole shingle set when it has fewer."""
    return np.unique(hashes)[:k]


def sketch_jaccard(first: np.ndarray, first_k: int, second: np.ndarray, second_k: int) -> float:
    """Jaccard of two shingle sets from their bottom-k sketches.

    A sketch shorter than its ``k`` is the whole set. Otherwise both sets are cut at the smaller of the two
    truncation points, below which each sketch holds *all* of its set's hashes, so the result is the exact
    Jaccard of a hash-range sample of the shingles (at least ``k`` of them): exact for documents with fewer
    than ``k`` distinct shingles, a sample estimate of at least ``k`` shingles above that.
    """
    cut = min(int(first[-1]) if first.size >= first_k else 1 << 32,
              int(second[-1]) if second.size >= second_k else 1 << 32)
    a = first[: np.searchsorted(first, cut, side="right")]
    b = second[: np.searchsorted(second, cut, side="right")]
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


def datasketch_minhash(text: str, num_perm: int = 128, seed: int = 1, ngram: int = 5):
    """The same signature built entirely by datasketch (slow path): how a user makes a query sketch that
    matches the index."""
    from datasketch import MinHash

    sketch = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
    sketch.update_batch([s.encode("utf-8", errors="surrogatepass") for s in shingles(text, ngram)])
    return sketch


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One key per LSH band: band number + 8-byte BLAKE2b of the band's hash values (little-endian uint32,
    the bytes datasketch's MinHashLSH hashes too). Two documents share a key iff (barring a 2^-64 collision)
    they agree on all ``rows`` values of that band."""
    raw = np.ascontiguousarray(signature[: bands * rows], dtype="<u4").tobytes()
    width = rows * 4
    return [struct.pack(">H", band) + hashlib.blake2b(raw[band * width:(band + 1) * width], digest_size=8).digest()
            for band in range(bands)]


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Share of equal hash values -- exactly ``datasketch.MinHash.jaccard``."""
    return float(np.count_nonzero(first == second)) / float(first.size)


def signature_to_bytes(signature: np.ndarray) -> bytes:
    return np.ascontiguousarray(signature, dtype="<u4").tobytes()


def signature_from_bytes(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def index_row(doc_id: str, signature: np.ndarray, num_perm: int, seed: int, ngram: int,
              sketch: np.ndarray | None, sketch_size: int | None,
              anchor_eligible: bool | None, synthetic_score: float | None,
              source_timestamp_us: int | None) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "hashvalues": np.asarray(signature, dtype=np.uint32).tolist(),
        "num_perm": num_perm,
        "seed": seed,
        "scheme": SCHEME,
        "ngram": ngram,
        "shingle_sketch": None if sketch is None else np.asarray(sketch, dtype=np.uint32).tolist(),
        "sketch_size": sketch_size,
        "anchor_eligible": anchor_eligible,
        "synthetic_score": synthetic_score,
        "source_timestamp_us": source_timestamp_us,
    }


def _index_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    return sorted(glob.glob(path)) or [path]


def read_index_table(path_or_table: str | pa.Table) -> pa.Table:
    """A local index (file, directory or glob of Parquet parts) or an already loaded table."""
    if isinstance(path_or_table, pa.Table):
        return path_or_table
    tables = [pq.read_table(f) for f in _index_files(path_or_table)]
    if not tables:
        return INDEX_SCHEMA.empty_table()
    return pa.concat_tables([t.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA) for t in tables])


def load_lean_minhashes(path_or_table: str | pa.Table) -> dict[str, Any]:
    """``doc_id -> datasketch.LeanMinHash`` for every row of a dedup index, ready for ``MinHashLSH``."""
    from datasketch import LeanMinHash

    table = read_index_table(path_or_table)
    doc_ids = table.column("doc_id").to_pylist()
    seeds = table.column("seed").to_pylist()
    schemes = table.column("scheme").to_pylist()
    hashvalues = table.column("hashvalues").to_pylist()
    return {doc_id: LeanMinHash(seed=seed, hashvalues=np.asarray(values, dtype=np.uint32), scheme=scheme)
            for doc_id, seed, scheme, values in zip(doc_ids, seeds, schemes, hashvalues)}


def write_index(rows: Iterable[dict[str, Any]], path: str) -> None:
    """Write index rows as one Parquet file (tests and tools; the pipeline writes the PCollection itself)."""
    pq.write_table(pa.Table.from_pylist(list(rows), schema=INDEX_SCHEMA), path)
