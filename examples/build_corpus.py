"""Build the small bundled demo corpus in examples/corpus/ from ../shared/data (run once; output committed).

Every choice is deterministic (fixed selections and hash-based picks), so re-running gives the same files.
The corpus exercises every stage: dated human text (anchors), machine-generated text, many languages, exact and
near duplicates across sources, and malformed records for the dead-letter path.

    python examples/build_corpus.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus"


def pick(key: str, fraction: float) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, records: list[dict], opener=open) -> None:
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def detokenize_wikitext(text: str) -> str:
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    text = re.sub(r" ([,.;:!?)\]'])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = text.replace(" 's", "'s").replace(' " ', ' "')
    return text.strip()


def wikitext_articles(path: Path) -> list[tuple[str, str]]:
    articles, title, body = [], None, []
    for line in path.read_text(encoding="utf-8").split("\n"):
        heading = re.match(r"^ = ([^=].*[^=]) = $", line)
        if heading:
            if title and body:
                articles.append((title, "\n".join(body)))
            title, body = heading.group(1), []
        elif line.strip() and not line.startswith(" = ="):
            body.append(detokenize_wikitext(line))
    if title and body:
        articles.append((title, "\n".join(body)))
    return articles


def edit_words(text: str, key: str, every: int = 60) -> str:
    """A near duplicate: replace about one word in ``every`` (deterministically)."""
    words = text.split(" ")
    for i in range(0, len(words), every):
        j = i + int(hashlib.sha1(f"{key}{i}".encode()).hexdigest()[:4], 16) % max(1, min(every, len(words) - i))
        words[j] = words[j].upper() if words[j].islower() else "edited"
    return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "data"))
    data = Path(parser.parse_args().shared)
    OUT.mkdir(exist_ok=True)
    (OUT / "gutenberg").mkdir(exist_ok=True)

    # Dated human text: inaugural addresses (public domain), the year as timestamp.
    inaugural = [r for r in read_jsonl(data / "human" / "inaugural.jsonl") if r["year"] % 16 == 1 or r["year"] in
                 (1789, 1861, 1933, 1961, 2009)]
    write_jsonl(OUT / "inaugural.jsonl",
                [{"id": r["id"], "year": r["year"], "title": r["title"], "text": r["text"]} for r in inaugural])

    # Public-domain novel, one .txt document per chapter; fixed publication date in the config.
    book = (data / "human" / "gutenberg-1342-pride-and-prejudice.txt").read_text(encoding="utf-8")
    book = book.split("*** START OF THIS PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***")[1]
    chapters = re.split(r"\n\s*Chapter \d+\s*\n", book)[1:]
    for number in (1, 2, 3, 5, 8, 13):
        (OUT / "gutenberg" / f"pride-and-prejudice-ch{number:02d}.txt").write_text(
            f"Chapter {number}\n\n" + chapters[number - 1].strip() + "\n", encoding="utf-8")

    # Encyclopedic human text (CC BY-SA 3.0): WikiText-2 test articles, detokenised, gzip JSONL.
    articles = wikitext_articles(data / "human" / "wikitext2-test.txt")[:40]
    wiki = [{"title": t, "text": body, "url": f"https://en.wikipedia.org/wiki/{t.replace(' ', '_')}"}
            for t, body in articles]
    write_jsonl(OUT / "wikitext.jsonl.gz", wiki, opener=gzip.open)

    # Machine-generated and human essays/news (Apache-2.0 / MIT sets), as a 2025 web crawl would carry them.
    synthetic = read_jsonl(data / "synthetic" / "train.jsonl")
    machines = [r for r in synthetic if r["label"] == "machine" and pick(r["text"][:200], 0.02)][:120]
    humans = [r for r in synthetic if r["label"] == "human" and pick(r["text"][:200], 0.05)][:40]
    crawl = [{"url": f"https://example.org/post/{i}", "text": r["text"], "crawled_at": f"2025-0{1 + i % 9}-15T00:00:00Z",
              "label": r["label"], "generator": r["generator"], "dataset": r["dataset"]}
             for i, r in enumerate(machines + humans)]
    write_jsonl(OUT / "web_crawl_2025.jsonl.gz", crawl, opener=gzip.open)

    # Multilingual human text (public domain): UDHR paragraphs in 24 languages, zstd JSONL.
    languages = ["eng", "fra", "deu", "spa", "por_PT", "ita", "nld", "pol", "rus", "ukr", "tur", "arb",
                 "cmn_hans", "jpn", "kor", "hin", "vie", "ind", "swh", "fin", "hun", "ell_monotonic", "heb", "tha"]
    udhr_rows = read_jsonl(data / "lid" / "udhr2-paragraphs.jsonl")
    available = {r["file"] for r in udhr_rows}
    chosen = [lang for lang in languages if lang in available]
    udhr = [{"lang_file": r["file"], "para": r["para"], "text": r["text"]}
            for r in udhr_rows if r["file"] in chosen and 3 <= r["para"] <= 6 and len(r["text"]) >= 60]
    buffer = io.BytesIO()
    with zstandard.ZstdCompressor(level=10).stream_writer(buffer, closefd=False) as writer:
        for r in udhr:
            writer.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    (OUT / "udhr.jsonl.zst").write_bytes(buffer.getvalue())

    # A re-crawl (Parquet): exact copies and lightly edited copies of earlier documents, newer timestamps.
    rows = []
    for i, (title, body) in enumerate(articles[:12]):
        rows.append({"doc": body, "fetched": "2024-06-01T12:00:00Z", "page": f"https://mirror.example.net/{i}"})
        rows.append({"doc": edit_words(body, title), "fetched": "2024-07-01T12:00:00Z",
                     "page": f"https://mirror2.example.net/{i}"})
    for r in inaugural[:3]:
        rows.append({"doc": r["text"], "fetched": "2024-02-01T00:00:00Z", "page": f"https://speeches.example/{r['id']}"})
    for r in machines[:10]:
        rows.append({"doc": edit_words(r["text"], r["text"][:50], every=80), "fetched": "2025-10-01T00:00:00Z",
                     "page": "https://spam.example/" + hashlib.sha1(r["text"].encode()).hexdigest()[:10]})
    table = pa.table({"doc": [r["doc"] for r in rows], "fetched": [r["fetched"] for r in rows],
                      "page": [r["page"] for r in rows]})
    pq.write_table(table, OUT / "recrawl_2024.parquet", compression="zstd")

    # Malformed records: each should become a dead letter (or a rejection) with a clear reason.
    good = {"text": "A perfectly ordinary line of human prose that is long enough to pass the length filter."}
    lines = [
        json.dumps(good).encode(),
        b'{"text": "unterminated string',                                   # malformed JSON
        b'{"text": "caf\xe9 latin-1 bytes, not UTF-8, in an otherwise fine record of decent length"}',
        json.dumps({"body": "the text lives under another key"}).encode(),  # missing text field
        json.dumps({"text": 12345}).encode(),                               # text not a string
        json.dumps(["a", "list", "not", "an", "object"]).encode(),          # not an object
        json.dumps({"text": "too short"}).encode(),                         # rejected: too_short
        json.dumps({"text": "   \u200b\u0000  "}).encode(),                  # rejected: empty after normalisation
        json.dumps({"text": good["text"] + " Dated badly.", "date": "the day after tomorrow"}).encode(),
        b"",
        json.dumps({"text": "Control\u0007 characters\u200b and  extra   spaces are normalised away from this "
                            "otherwise valid record."}).encode(),
    ]
    (OUT / "malformed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    whole = gzip.compress(b"".join(json.dumps({"text": f"Record {i} of a gzip file that was cut off in the middle"
                                                       f" of an upload, so its tail is lost."}).encode() + b"\n"
                                   for i in range(200)), mtime=0)
    (OUT / "truncated_upload.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (OUT / "empty.jsonl").write_bytes(b"")

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
