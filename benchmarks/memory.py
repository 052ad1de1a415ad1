"""Where peak memory goes as N grows: tailguard's own workers against the runner's buffers.

    python benchmarks/memory.py [--docs 10000,30000,100000] [--configs lid_dedup_ft] [--json FILE]

On the local in-memory FnApiRunner everything happens in one process, so its peak RSS mixes two things: the
workers running tailguard's DoFns, and the runner holding every PCollection between stages (Beam's local
runner keeps each stage's whole input as one bundle and buffers shuffles in memory). To tell them apart, the
same run goes through Beam's portable job API: a local job service (the runner, holding the buffers) and an
EXTERNAL SDK worker pool (the workers, running tailguard's code, receiving data over gRPC), each in its own
process. The peak RSS (``VmHWM``) of every process is sampled from ``/proc`` while the job runs. A worker
whose peak stays flat as N grows shows that tailguard's DoFns hold bounded state (one batch, one band shard,
one bucket, one cluster, one shard's rows); the job service's growth is the local runner's in-memory
shuffle, which Dataflow and Flink replace with a disk-backed one.

For comparison each N also runs on the in-process runner (``--direct_running_mode in_memory``), measured with
``os.wait4`` as in ``vs_datatrove.py``. Fresh services per N, so one N's peak never carries into the next.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import write_corpus  # noqa: E402
from benchmarks.vs_datatrove import run_measured, tailguard_overrides  # noqa: E402
from tests.emulators import BeamService  # noqa: E402


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(root: int, tree: dict[int, list[int]]) -> list[int]:
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(tree.get(pid, []))
    return out


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler(threading.Thread):
    """Largest ``VmHWM`` seen per process, over every descendant of each named root process."""

    def __init__(self, roots: dict[str, int], interval: float = 0.25):
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.peaks: dict[str, dict[int, int]] = {name: {} for name in roots}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        tree = _children()
        for name, root in self.roots.items():
            for pid in _descendants(root, tree):
                peak = _hwm_kb(pid)
                if peak > self.peaks[name].get(pid, 0):
                    self.peaks[name][pid] = peak

    def stop(self) -> dict[str, dict[int, int]]:
        self._halt.set()
        self.join()
        self.sample()
        return self.peaks


def tailguard_cmd(corpus: Path, out: Path, name: str, runner_args: list[str], extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "tailguard.pipelines.cli", "run", "--input", f"{corpus}/*.jsonl", "--output", str(out),
           "--run-id", "bench", *runner_args]
    for item in tailguard_overrides(name) + extra:
        cmd += ["--set", item]
    return cmd


def measure_portable(corpus: Path, work: Path, name: str, extra: list[str]) -> dict:
    log = work / f"portable-{name}-services.log"
    with BeamService("apache_beam.runners.worker.worker_pool_main", "--service_port", log=log) as pool, \
            BeamService("apache_beam.runners.portability.local_job_service_main", "--port", log=log) as jobs:
        sampler = PeakSampler({"job_service": jobs.process.pid, "worker_pool": pool.process.pid})
        sampler.start()
        started = time.perf_counter()
        cmd = tailguard_cmd(corpus, work / f"portable-{name}", name, [
            "--runner", "PortableRunner", "--job_endpoint", jobs.address, "--environment_type", "EXTERNAL",
            "--environment_config", pool.address], extra)
        driver = run_measured(cmd, work / f"portable-{name}.log")
        peaks = sampler.stop()
    # The job service is one Python process (plus its loopback wrapper); the pool starts one SDK harness
    # process per worker: report the largest of each group.
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "job_service_peak_mb": round(max(peaks["job_service"].values(), default=0) / 1024, 1),
        "sdk_worker_peak_mb": round(max(peaks["worker_pool"].values(), default=0) / 1024, 1),
        "sdk_worker_processes": len(peaks["worker_pool"]),
        "driver_peak_mb": driver["peak_rss_mb"],
    }


def measure_in_memory(corpus: Path, work: Path, name: str, extra: list[str]) -> dict:
    cmd = tailguard_cmd(corpus, work / f"in-memory-{name}", name,
                        ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"], extra)
    result = run_measured(cmd, work / f"in-memory-{name}.log")
    return {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"], "peak_mb": result["peak_rss_mb"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="10000,30000,100000")
    parser.add_argument("--configs", default="lid_dedup_ft")
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra tailguard config overrides, after the configuration's own")
    parser.add_argument("--skip-in-memory", action="store_true", help="portable runs only (saves memory at large N)")
    parser.add_argument("--workdir", help="keep corpora and outputs here (default: a temporary directory)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "memory.json"))
    args = parser.parse_args(argv)
    context = tempfile.TemporaryDirectory(prefix="tailguard-memory-") if args.workdir is None else None
    work = Path(context.name if context else args.workdir)
    results = []
    for n in [int(x) for x in args.docs.split(",")]:
        corpus = work / f"n{n}" / "corpus"
        if not corpus.exists():
            write_corpus(corpus, n, args.chars)
        for name in args.configs.split(","):
            here = work / f"n{n}"
            row = {"docs": n, "config": name,
                   "in_memory": None if args.skip_in_memory else measure_in_memory(corpus, here, name, args.set),
                   "portable": measure_portable(corpus, here, name, args.set)}
            results.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"{'docs':>9} {'config':<14} {'in-memory peak MB':>18} {'job service peak MB':>20} "
          f"{'SDK worker peak MB':>19} {'workers':>8}")
    for row in results:
        p = row["portable"]
        in_memory = f"{row['in_memory']['peak_mb']:>18,.0f}" if row["in_memory"] else f"{'-':>18}"
        print(f"{row['docs']:>9,} {row['config']:<14} {in_memory} "
              f"{p['job_service_peak_mb']:>20,.0f} {p['sdk_worker_peak_mb']:>19,.0f} {p['sdk_worker_processes']:>8}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
