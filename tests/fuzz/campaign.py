"""Run the reader fuzzers one after another for a fixed time each and report what they did (``make fuzz``).

    python tests/fuzz/campaign.py [--seconds 600] [--formats jsonl,gz,zst,parquet,txt] [--out out/fuzz]

Each format gets ``--seconds`` of wall time (libFuzzer's -max_total_time); a crash stops libFuzzer, so the
fuzzer is restarted on the same corpus until the time is used up, and every crash input is kept in
``OUT/<format>/crash-*``. The report (also ``OUT/campaign.json``) gives per format: inputs executed, CPU
seconds actually used (the machine may be shared), crashes and their first error line.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMATS = ("jsonl", "gz", "zst", "parquet", "txt")


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fuzz(fmt: str, seconds: float, out: Path) -> dict:
    corpus, artifacts = out / fmt / "corpus", out / fmt
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        sys.path.insert(0, str(HERE.parent.parent))
        from tests.fuzz.readers import seeds

        for i, seed in enumerate(seeds(fmt)):
            (corpus / f"seed-{i}").write_bytes(seed)
    runs, crashes, cpu0, start = 0, [], cpu_of_children(), time.monotonic()
    while (left := seconds - (time.monotonic() - start)) > 5:
        command = [sys.executable, str(HERE / "fuzz_readers.py"), fmt, f"-max_total_time={int(left)}",
                   "-timeout=120", "-rss_limit_mb=3072", "-print_final_stats=1", f"-artifact_prefix={artifacts}/",
                   str(corpus)]
        # The Parquet fuzzer once finished ("Done N runs") and then hung at interpreter exit (all threads in a
        # futex wait, Arrow's pools): a run that outlives its time by far is stopped and counted as finished.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            log, _ = process.communicate(timeout=left + 900)
        except subprocess.TimeoutExpired:
            process.kill()
            log, _ = process.communicate()
        runs += max([int(n) for n in re.findall(r"stat::number_of_executed_units: (\d+)", log)] or [0])
        if "Test unit written" in log or (process.returncode != 0 and "Done " not in log):
            found = re.findall(r"Test unit written to (\S+)", log)
            errors = [line for line in log.splitlines() if re.match(r"^\w*(Error|Exception)\b", line)]
            crashes.append({"input": found[-1] if found else None, "error": errors[-1] if errors else log[-500:]})
    return {"format": fmt, "wall_s": round(time.monotonic() - start, 1),
            "cpu_s": round(cpu_of_children() - cpu0, 1), "inputs": runs, "crashes": crashes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--out", type=Path, default=Path("out/fuzz"))
    args = parser.parse_args()
    results = []
    for fmt in args.formats.split(","):
        results.append(fuzz(fmt, args.seconds, args.out))
        r = results[-1]
        print(f"{fmt:8} {r['inputs']:>10,} inputs  {r['cpu_s']:>7.1f} CPU s  {r['wall_s']:>7.1f} wall s  "
              f"{len(r['crashes'])} crash(es)", flush=True)
        for crash in r["crashes"]:
            print(f"         {crash['input']}: {crash['error']}", flush=True)
    (args.out / "campaign.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
