"""tailguard on Flink against the local runner, in the same benchmark run: peak memory and CPU per document.

    python benchmarks/flink.py [--docs 100000,300000] [--config full] [--json benchmarks/results/flink.json]

Per N, on the vs-DataTrove corpus (benchmarks/corpus.py), two runs of `tailguard run`:
  local   the in-process runner (--direct_running_mode in_memory), measured with wait4 as in vs_datatrove.py
  flink   FlinkRunner on Beam's Flink job server (`make flink-job-server`) with an embedded Flink cluster
          ([local]), parallelism 2, LOOPBACK workers (the SDK harness runs in the `tailguard` process)
The job server runs in its own JVM, started here with the one-machine settings in FLINK_CONF, so its memory is
sampled apart from the Python side: peak RSS (VmHWM) of the JVM, of the Python process(es), and the peak of
their sum sampled at the same instant. CPU seconds are user + system of every process of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import write_corpus  # noqa: E402
from benchmarks.memory import _children, _descendants  # noqa: E402
from benchmarks.vs_datatrove import run_measured, tailguard_overrides  # noqa: E402
from tests.emulators import free_port, stop_process, wait_for_port  # noqa: E402

# Batch on one 2-core machine: two slots for parallelism 2; sorts and shuffles spill to io.tmp.dirs on disk
# instead of growing the heap. Managed memory holds the sort buffers: at 256 MB a sort failed on one large
# record ("Cannot write record to fresh sort buffer. Record too large."), so 1 GB. The embedded cluster needs the network memory fixed (min = max).
FLINK_CONF = {
    "taskmanager.numberOfTaskSlots": "2",
    "parallelism.default": "2",
    "taskmanager.memory.managed.size": "1024m",
    "taskmanager.memory.network.min": "128m",
    "taskmanager.memory.network.max": "128m",
}
JVM_HEAP = "-Xmx1536m"


def _status_kb(pid: int, *fields: str) -> list[int]:
    """The named ``/proc/PID/status`` sizes in kB (0 for a process that has gone)."""
    found = dict.fromkeys(fields, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name = line.split(":", 1)[0]
                if name in found:
                    found[name] = int(line.split()[1])
    except OSError:
        pass
    return [found[name] for name in fields]


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Sampler(threading.Thread):
    """Per group of process trees: each process's VmHWM and CPU, and the peak of the groups' summed RSS."""

    def __init__(self, roots: dict[str, int], interval: float = 0.25):
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.hwm: dict[str, dict[int, int]] = {g: {} for g in roots}
        self.cpu: dict[str, dict[int, float]] = {g: {} for g in roots}
        self.peak_sum_kb = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self):
        tree, total = _children(), 0
        for group, root in self.roots.items():
            for pid in _descendants(root, tree):
                hwm, rss = _status_kb(pid, "VmHWM", "VmRSS")
                self.hwm[group][pid] = max(self.hwm[group].get(pid, 0), hwm)
                self.cpu[group][pid] = max(self.cpu[group].get(pid, 0.0), _cpu_s(pid))
                total += rss
        self.peak_sum_kb = max(self.peak_sum_kb, total)

    def stop(self):
        self._halt.set()
        self.join()


def measure_local(corpus: Path, work: Path, config: str) -> dict:
    cmd = [sys.executable, "-m", "tailguard.pipelines.cli", "run", "--input", f"{corpus}/*.jsonl", "--output",
           str(work / "local"), "--run-id", "bench", "--direct_running_mode", "in_memory", "--progress_every", "0"]
    for item in tailguard_overrides(config):
        cmd += ["--set", item]
    result = run_measured(cmd, work / "local.log")
    return {"wall_s": round(result["wall_s"], 1), "cpu_s": round(result["cpu_s"], 1),
            "peak_mb": round(result["peak_rss_mb"])}


def measure_flink(corpus: Path, work: Path, config: str) -> dict:
    from tailguard.pipelines import flink

    conf_dir = work / "flink-conf"
    conf_dir.mkdir(exist_ok=True)
    tmp = work / "flink-tmp"
    tmp.mkdir(exist_ok=True)
    settings = {**FLINK_CONF, "io.tmp.dirs": str(tmp)}
    (conf_dir / "flink-conf.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    port = free_port()
    with open(work / "job-server.log", "wb") as log:
        server = subprocess.Popen(["java", JVM_HEAP, f"-Djava.io.tmpdir={tmp}", "-jar", str(flink.jar_path()),
                                   "--flink-master", "[local]", "--flink-conf-dir", str(conf_dir),
                                   "--job-host", "127.0.0.1", "--job-port", str(port), "--artifact-port", "0",
                                   "--expansion-port", "0", "--artifacts-dir", str(work / "artifacts")],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=120, process=server)
        cmd = [sys.executable, "-m", "tailguard.pipelines.cli", "run", "--input", f"{corpus}/*.jsonl", "--output",
               str(work / "flink"), "--run-id", "bench", "--runner", "FlinkRunner", "--flink_master", "[local]",
               "--parallelism", "2", "--job_endpoint", f"localhost:{port}", "--environment_type", "LOOPBACK",
               "--progress_every", "30"]
        for item in tailguard_overrides(config):
            cmd += ["--set", item]
        with open(work / "flink.log", "w") as out:
            started = time.perf_counter()
            driver = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            sampler = Sampler({"jvm": server.pid, "python": driver.pid})
            sampler.start()
            code = driver.wait()
            sampler.stop()
            wall = time.perf_counter() - started
        if code != 0:
            kept = Path(tempfile.mkdtemp(prefix="tailguard-flink-bench-failed-"))
            for name in ("flink.log", "job-server.log"):
                if (work / name).exists():
                    (kept / name).write_bytes((work / name).read_bytes())
            raise SystemExit(f"flink run failed ({code}); logs kept in {kept}")
    finally:
        stop_process(server)
    jvm_mb = max(sampler.hwm["jvm"].values(), default=0) / 1024
    python_mb = sum(sampler.hwm["python"].values()) / 1024
    return {"wall_s": round(wall, 1),
            "cpu_s": round(sum(sampler.cpu["jvm"].values()) + sum(sampler.cpu["python"].values()), 1),
            "cpu_jvm_s": round(sum(sampler.cpu["jvm"].values()), 1),
            "jvm_peak_mb": round(jvm_mb), "python_peak_mb": round(python_mb),
            "together_peak_mb": round(sampler.peak_sum_kb / 1024)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="100000")
    parser.add_argument("--config", default="full", choices=["full", "lid_dedup", "lid_dedup_ft"])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "flink.json")
    args = parser.parse_args(argv)
    rows = []
    for n in [int(x) for x in args.docs.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"tailguard-flink-bench-{n}-") as tmp:
            work = Path(tmp)
            write_corpus(work / "corpus", n)
            local = measure_local(work / "corpus", work, args.config)
            on_flink = measure_flink(work / "corpus", work, args.config)
            same = [json.loads((work / r / "bench" / "manifest.json").read_text()) for r in ("local", "flink")]
            files = [{f["path"]: f["sha256"] for f in m["files"]} for m in same]
            row = {"docs": n, "config": args.config, "local": local, "flink": on_flink,
                   "identical_output": files[0] == files[1],
                   "local_cpu_ms_per_doc": round(1000 * local["cpu_s"] / n, 3),
                   "flink_cpu_ms_per_doc": round(1000 * on_flink["cpu_s"] / n, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
