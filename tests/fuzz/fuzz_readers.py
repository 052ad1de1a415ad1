"""Coverage-guided fuzzing of the ingest file readers with atheris (``make fuzz``; ``pip install '.[fuzz]'``).

    python tests/fuzz/fuzz_readers.py {jsonl|gz|zst|parquet|txt} [libFuzzer options, e.g. -max_total_time=600]

The checks are in ``tests/fuzz/readers.py``; a crash leaves its input in ``crash-*``: copy it to
``tests/fuzz/regressions/<format>/`` and ``tests/test_hostile_ingest.py`` replays it in every test run.
Seeds are written to a fresh corpus directory unless one is given.
"""

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import pyarrow

# One thread in Arrow's pools: in the first Parquet campaign the fuzzer deadlocked (every thread in a futex wait,
# no CPU used for 20 minutes) when libFuzzer's timeout signal arrived while Arrow's worker threads held locks.
pyarrow.set_cpu_count(1)
pyarrow.set_io_thread_count(1)

with atheris.instrument_imports(include=["tailguard", "gzip", "_compression", "json"]):
    from tailguard.transforms import ingest, text  # noqa: F401  (instrumented for coverage)
    from tests.fuzz.readers import FORMATS, check, seeds


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in FORMATS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(FORMATS)}}} [libFuzzer options]")
    fmt = sys.argv.pop(1)
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = tempfile.mkdtemp(prefix=f"tailguard-fuzz-{fmt}-")
        for i, seed in enumerate(seeds(fmt)):
            with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
                f.write(seed)
        args.append(corpus)
    atheris.Setup(args, lambda data: check(fmt, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
