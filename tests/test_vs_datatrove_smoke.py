"""Smoke test of benchmarks/vs_datatrove.py on 200 documents: the benchmark runs end to end and its report
holds together. No figures are asserted (speed is measured by the benchmark, not tested).

The tailguard side always runs. The DataTrove side runs only when its virtual environment
(benchmarks/.venv-datatrove) already exists: creating it installs DataTrove, spaCy and their dependencies from
PyPI (about a minute), too slow for the default test run. `python benchmarks/vs_datatrove.py --docs 200`
creates it once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "vs_datatrove.py"
DATATROVE_PYTHON = ROOT / "benchmarks" / ".venv-datatrove" / "bin" / "python"
DOCS = 200


def run_benchmark(work: Path, *extra: str) -> dict:
    result_json = work / "vs_datatrove.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--docs", str(DOCS), "--configs", "lid_dedup_ft", "--workdir",
         str(work / "runs"), "--json", str(result_json), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(result_json.read_text())


def test_tailguard_side_accounts_for_every_document(tmp_path):
    report = run_benchmark(tmp_path, "--skip-datatrove")
    assert report["datatrove_skipped"] == "--skip-datatrove"
    run = report["sizes"][str(DOCS)]["runs"]["tailguard:lid_dedup_ft"]
    assert run["kept"] + run["removed_lid"] + run["removed_dup"] + sum(run["removed_other"].values()) \
        + run["dead_letters"] == DOCS
    # The corpus has injected duplicates and non-language text: both filters must have fired.
    assert run["removed_dup"] > 0 and run["removed_lid"] > 0
    assert run["cpu_s"] > 0 and run["peak_rss_mb"] > 0 and run["docs_per_cpu_s"] > 0


def test_datatrove_side_runs_on_the_same_corpus(tmp_path):
    if not DATATROVE_PYTHON.exists():
        pytest.skip("DataTrove's venv (benchmarks/.venv-datatrove) does not exist and creating it (pip install from "
                    f"PyPI, about a minute) is too slow for the test run; `python benchmarks/vs_datatrove.py --docs "
                    f"{DOCS}` creates it")
    report = run_benchmark(tmp_path, "--no-create-venv")
    assert not report["datatrove_skipped"], report["datatrove_skipped"]
    entry = report["sizes"][str(DOCS)]
    datatrove = entry["runs"]["datatrove"]
    assert datatrove["kept"] + datatrove["removed_lid"] + datatrove["removed_dup"] == DOCS
    assert datatrove["removed_dup"] > 0
    agreement = entry["agreement"]["lid_dedup_ft"]
    # Same model, same threshold: fastText-only language ID must nearly agree document for document.
    assert agreement["lid_removed_only_tailguard"] + agreement["lid_removed_only_datatrove"] <= DOCS * 0.02
    assert agreement["kept_both"] > 0.8 * max(datatrove["kept"], entry["runs"]["tailguard:lid_dedup_ft"]["kept"])
