"""Deterministic benchmark corpora: N documents of about a given size, mixed human / machine / multilingual,
with injected exact and near duplicates.

Texts come from ../shared/data when it is there, else from the bundled demo corpus (so the benchmarks run
anywhere). Selection and edits are hash-driven: the same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def _h(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def source_texts() -> dict[str, list[str]]:
    """Pools of real texts by kind: human, machine, multilingual."""
    pools: dict[str, list[str]] = {"human": [], "machine": [], "multilingual": []}
    if SHARED.is_dir():
        for r in _jsonl(SHARED / "synthetic" / "train.jsonl"):
            pools["machine" if r["label"] == "machine" else "human"].append(r["text"])
        for name in ("wikitext2-valid.txt", "wikitext2-test.txt"):
            pools["human"].extend(line.strip() for line in (SHARED / "human" / name).read_text().split("\n")
                                  if len(line.strip()) > 200)
        pools["multilingual"] = [r["text"] for r in _jsonl(SHARED / "lid" / "udhr2-paragraphs.jsonl")]
    else:
        corpus = ROOT / "examples" / "corpus"
        for r in _jsonl(corpus / "web_crawl_2025.jsonl.gz"):
            pools["machine" if r.get("label") == "machine" else "human"].append(r["text"])
        pools["human"].extend(r["text"] for r in _jsonl(corpus / "wikitext.jsonl.gz"))
        pools["human"].extend(r["text"] for r in _jsonl(corpus / "inaugural.jsonl"))
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(corpus / "udhr.jsonl.zst", "rb")).read()
        pools["multilingual"] = [json.loads(line)["text"] for line in raw.decode().splitlines() if line.strip()]
    return pools


def _fit(text: str, pool: list[str], size: int, key: str) -> str:
    """About ``size`` characters: cut long texts at a word boundary, extend short ones with more of the pool."""
    parts = [text]
    i = 0
    while sum(len(p) for p in parts) < size and i < 50:
        parts.append(pool[_h(f"{key}+{i}") % len(pool)])
        i += 1
    joined = "\n\n".join(parts)
    if len(joined) > size:
        cut = joined.rfind(" ", 0, size)
        joined = joined[: cut if cut > size // 2 else size]
    return joined


def _near_copy(text: str, key: str, edit_fraction: float = 0.01) -> str:
    words = text.split(" ")
    for k in range(max(1, int(len(words) * edit_fraction))):
        j = _h(f"{key}/{k}") % len(words)
        words[j] = "edited"
    return " ".join(words)


def generate(n: int, doc_chars: int = 1000, duplicate_fraction: float = 0.1,
             mix: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> Iterator[dict]:
    pools = source_texts()
    originals: list[str] = []
    for i in range(n):
        key = f"doc{i}"
        if originals and (_h(key + "dup") % 1000) < duplicate_fraction * 1000:
            base = originals[_h(key + "which") % len(originals)]
            exact = _h(key + "kind") % 3 == 0
            yield {"id": key, "text": base if exact else _near_copy(base, key), "kind": "duplicate"}
            continue
        r = (_h(key + "mix") % 10_000) / 10_000
        kind = "human" if r < mix[0] else "machine" if r < mix[0] + mix[1] else "multilingual"
        pool = pools[kind]
        text = _fit(pool[_h(key) % len(pool)], pool, doc_chars, key)
        originals.append(text)
        yield {"id": key, "text": text, "kind": kind, "year": 2016 if kind == "human" else 2025}


def write_corpus(path: Path, n: int, doc_chars: int = 1000, shards: int = 4) -> list[Path]:
    path.mkdir(parents=True, exist_ok=True)
    files = [path / f"bench-{i:03d}.jsonl" for i in range(shards)]
    handles = [open(f, "w", encoding="utf-8") for f in files]
    try:
        for i, record in enumerate(generate(n, doc_chars)):
            handles[i % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for h in handles:
            h.close()
    return files


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--chars", type=int, default=1000)
    args = parser.parse_args()
    files = write_corpus(args.output, args.docs, args.chars)
    print(f"wrote {args.docs} documents to {len(files)} files under {args.output}")
