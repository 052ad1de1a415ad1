"""CPU cost of ingest's readers alone (no Beam): ``read_file`` over the throughput benchmark's corpus.

    python benchmarks/ingest.py [--docs 20000] [--chars 1000] [--repeat 5] [--formats jsonl,gz,zst]

Prints, per container, the best and median CPU seconds over ``--repeat`` passes and documents per CPU-second.
To compare two versions of the code on one machine, run the same command on each checkout (the corpus is
generated deterministically); benchmarks/README.md ("Fuzzing ingest") has the figures.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compressed(files: list[Path], fmt: str) -> list[Path]:
    if fmt == "jsonl":
        return files
    import zstandard

    out = []
    for f in files:
        target = f.with_name(f.name + (".gz" if fmt == "gz" else ".zst"))
        data = f.read_bytes()
        target.write_bytes(gzip.compress(data, compresslevel=6, mtime=0) if fmt == "gz"
                           else zstandard.ZstdCompressor(level=3).compress(data))
        out.append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--formats", default="jsonl,gz,zst")
    args = parser.parse_args()

    from benchmarks.corpus import write_corpus
    from tailguard.transforms import ingest

    print(f"code: {ingest.__file__}")
    config = ingest.IngestConfig()
    with tempfile.TemporaryDirectory(prefix="tailguard-ingest-bench-") as tmp:
        plain = write_corpus(Path(tmp), args.docs, args.chars)
        for fmt in args.formats.split(","):
            files = compressed(plain, fmt)
            times = []
            for _ in range(args.repeat):
                start, items = time.process_time(), 0
                for f in files:
                    for item in ingest.read_file(str(f), config):
                        if item.document is not None:
                            ingest.length_verdict(item.document, config)
                        items += 1
                times.append(time.process_time() - start)
            assert items == args.docs, items
            best, median = min(times), statistics.median(times)
            print(f"{fmt:6} {args.docs:,} docs  best {best:.3f} CPU s  median {median:.3f} CPU s  "
                  f"{args.docs / best:,.0f} docs/CPU-s (best)", flush=True)


if __name__ == "__main__":
    main()
