"""End-to-end throughput and memory of `tailguard run`, against a baseline in the same benchmark run.

    python benchmarks/throughput.py [--docs 20000] [--chars 1000] [--mode in_memory|multi_processing]

Each configuration runs in its own child process (so peak RSS is its own) on the same generated corpus:
  baseline  ingest + sink only (every curation stage switched off): the cost of reading and writing
  full      every stage on, as `make demo` runs it (the report after publishing is off in both)
It prints docs/s, MB/s, CPU seconds, peak RSS, per-stage busy time from the stage counters, and the ratio of
each configuration to the baseline; the JSON goes to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The collapse-risk report (written after publishing) is off in both: it is measured by benchmarks/report.py.
CONFIGS = {
    "baseline": ["langid.enabled=false", "synthetic.enabled=false", "dedup.enabled=false", "anchors.enabled=false",
                 "rarity.enabled=false", "report.enabled=false"],
    "full": ["report.enabled=false"],
}


def child(corpus: str, output: str, overrides: list[str], mode: str) -> dict:
    """Run one configuration in this process and report its own figures."""
    from tailguard.pipelines.cli import main

    argv = ["run", "--input", f"{corpus}/*.jsonl", "--output", output, "--run-id", "bench",
            "--direct_running_mode", mode, "--direct_num_workers", "2" if mode == "multi_processing" else "1"]
    for item in overrides:
        argv += ["--set", item]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    code = main(argv)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.loads((Path(output) / "bench" / "manifest.json").read_text())
    return {"exit": code, "wall_s": wall, "cpu_s": cpu + children.ru_utime + children.ru_stime,
            "peak_rss_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024,
            "counts": manifest["counts"], "stage_counters": manifest["stage_counters"]}


def measure(name: str, corpus: Path, mode: str, workdir: Path) -> dict:
    out = workdir / f"out-{name}"
    cmd = [sys.executable, __file__, "--child", str(corpus), str(out), mode, *CONFIGS[name]]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        corpus, output, mode, *overrides = sys.argv[2:]
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            result = child(corpus, output, overrides, mode)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--mode", default="in_memory", choices=["in_memory", "multi_processing"])
    parser.add_argument("--configs", default="baseline,full")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()

    from benchmarks.corpus import write_corpus

    with tempfile.TemporaryDirectory(prefix="tailguard-bench-") as tmp:
        workdir = Path(tmp)
        files = write_corpus(workdir / "corpus", args.docs, args.chars)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        results = {}
        for name in args.configs.split(","):
            r = measure(name, workdir / "corpus", args.mode, workdir)
            r["docs_per_s"] = args.docs / r["wall_s"]
            r["docs_per_cpu_s"] = args.docs / r["cpu_s"]
            r["mb_per_s"] = megabytes / r["wall_s"]
            results[name] = r
    base = results.get("baseline")
    print(f"\ncorpus: {args.docs:,} documents, {megabytes:.1f} MB, ~{args.chars} chars each; mode {args.mode}; "
          f"{os.cpu_count()} cores")
    print(f"{'config':<10}{'wall s':>9}{'cpu s':>9}{'docs/s':>10}{'docs/cpu-s':>12}{'MB/s':>8}{'peak RSS MB':>13}"
          f"{'x baseline time':>17}")
    for name, r in results.items():
        ratio = r["wall_s"] / base["wall_s"] if base else float("nan")
        print(f"{name:<10}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['docs_per_s']:>10,.0f}{r['docs_per_cpu_s']:>12,.0f}"
              f"{r['mb_per_s']:>8.2f}{r['peak_rss_mb']:>13,.0f}{ratio:>17.2f}")
    print("\nper-stage busy time (full run, from stage counters):")
    for stage, values in results.get("full", base)["stage_counters"].items():
        if "busy_us" in values and values.get("in"):
            busy = values["busy_us"] / 1e6
            print(f"  {stage:<10} in {values['in']:>8,}  busy {busy:7.2f} s  {values['in'] / max(busy, 1e-9):>10,.0f} docs/s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"docs": args.docs, "chars": args.chars, "mode": args.mode, "mb": megabytes,
                                     "results": results}, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
