"""Cost of the collapse-risk report (`pipelines/report.py`) on a generated snapshot.

    python benchmarks/report.py [--docs 20000] [--chars 1000] [--sample-size 2000]

Generates the benchmark corpus (benchmarks/corpus.py), curates it once with the cheap stages only (the
snapshot's content is what matters here, not how it was curated), then times `write_report` on it in a child
process of its own. Figures are CPU seconds (process + children: the machine is shared, wall time is not a
per-core measure), documents per CPU-second and peak RSS. JSON: benchmarks/results/report.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(snapshot: str, sample_size: int) -> dict:
    from tailguard.pipelines.report import write_report
    from tailguard.transforms.diversity import ReportConfig

    wall0, cpu0 = time.perf_counter(), time.process_time()
    report = write_report(snapshot, config=ReportConfig(sample_size=sample_size))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    documents = report["metrics"]["documents"]["input"]["documents"]
    return {"wall_s": wall, "cpu_s": cpu + children.ru_utime + children.ru_stime,
            "peak_rss_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024,
            "documents": documents, "tokens": report["metrics"]["vocabulary"]["input"]["tokens"],
            "sampling": report["sampling"], "plots": report["plots"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--sample-size", type=int, default=2000)
    parser.add_argument("--child", nargs=2, metavar=("SNAPSHOT", "SAMPLE_SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return

    from benchmarks.corpus import write_corpus

    with tempfile.TemporaryDirectory() as work:
        corpus = Path(work) / "corpus"
        write_corpus(corpus, args.docs, args.chars)
        output = Path(work) / "out"
        # Curation runs in a process of its own: a child forked from a large parent would inherit its peak RSS.
        subprocess.run([sys.executable, "-m", "tailguard.pipelines.cli", "run", "--input", f"{corpus}/*.jsonl",
                        "--output", str(output), "--run-id", "bench", "--set", "langid.enabled=false",
                        "--set", "synthetic.enabled=false"], check=True, capture_output=True, cwd=ROOT)
        done = subprocess.run([sys.executable, __file__, "--child", str(output / "bench"), str(args.sample_size)],
                              check=True, capture_output=True, text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures.update({"docs_requested": args.docs, "chars": args.chars, "sample_size": args.sample_size,
                    "docs_per_cpu_s": figures["documents"] / figures["cpu_s"],
                    "tokens_per_cpu_s": figures["tokens"] / figures["cpu_s"]})
    print(f"report over {figures['documents']:,} documents ({figures['tokens']:,} words): "
          f"{figures['cpu_s']:.1f} CPU s, {figures['docs_per_cpu_s']:,.0f} docs/CPU-s, "
          f"{figures['tokens_per_cpu_s']:,.0f} words/CPU-s, peak RSS {figures['peak_rss_mb']:.0f} MB, "
          f"wall {figures['wall_s']:.1f} s; sample input {figures['sampling']['input']['documents']:,} docs / "
          f"train {figures['sampling']['train']['documents']:,} docs")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "report.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
