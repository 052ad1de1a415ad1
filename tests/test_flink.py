"""The whole pipeline on Apache Flink, through Beam's FlinkRunner and a real Flink job server.

The job server is the one `make flink-job-server` installs (pipelines/flink.py); it runs jobs on an embedded
Flink cluster (``--flink_master [local]``), parallelism 2, with the SDK workers LOOPBACK in the submitting
process or in an EXTERNAL worker pool the test starts: no Docker. One job server is shared by the tests of this
module; the first run lets FlinkRunner start its own from ``--flink_job_server_jar``, as a user's run does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import re
import time
from pathlib import Path

import apache_beam as beam
import pytest

from tailguard.pipelines import flink, runner
from tests.conftest import EXAMPLES, ROOT, demo_inputs
from tests.emulators import BeamService, FlinkJobServer, free_port

# One xdist worker runs them all (`make test` passes --dist loadgroup), so they share one job server JVM.
pytestmark = pytest.mark.xdist_group("flink")

DEMO_CONFIG = str(EXAMPLES / "curate.yaml")
RUN_TIMEOUT = 600  # the stall bound fails a stuck job long before this; this only keeps a broken test finite
FLINK = ["--runner", "FlinkRunner", "--flink_master", "[local]", "--parallelism", "2"]


def tailguard(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tailguard.pipelines.cli", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def demo_argv(output: Path, run_id: str, *extra: str) -> list[str]:
    argv = ["run", "--output", str(output), "--run-id", run_id, "--config", DEMO_CONFIG, *extra]
    for pattern in demo_inputs():
        argv += ["--input", pattern]
    return argv


def checksums(manifest: dict) -> dict:
    return {f["path"]: (f["rows"], f["sha256"]) for f in manifest["files"]}


@pytest.fixture(scope="module")
def job_server(tmp_path_factory):
    problems = flink.verify()
    if problems:
        pytest.fail(f"Beam's Flink job server is not installed ({problems[0]}): run `make flink-job-server`")
    home = tmp_path_factory.mktemp("flink")
    with FlinkJobServer(flink.jar_path(), home / "work", home / "job-server.log") as server:
        yield server


def test_the_full_pipeline_on_flink_publishes_the_local_runners_bytes_over_two_nightly_runs(tmp_path, job_server):
    on_flink, local = tmp_path / "flink", tmp_path / "local"
    # Night 1: FlinkRunner starts its own job server from the installed jar (no --job_endpoint).
    first = tailguard(*demo_argv(on_flink, "night-1", "--set", "report.enabled=false"), *FLINK,
                      "--flink_job_server_jar", str(flink.jar_path()), "--environment_type", "LOOPBACK")
    assert first.returncode == 0, first.stderr[-4000:]
    assert "job submitted to FlinkRunner" in first.stderr and " read (" in first.stderr  # progress while it ran
    # Night 2 carries night 1 forward, on the shared job server; its collapse-risk report runs on Flink too.
    second = tailguard(*demo_argv(on_flink, "night-2", "--previous", str(on_flink)), *FLINK,
                       "--job_endpoint", job_server.address, "--environment_type", "LOOPBACK")
    assert second.returncode == 0, second.stderr[-4000:]

    for run_id, extra in (("night-1", ["--set", "report.enabled=false"]), ("night-2", ["--previous", str(local)])):
        done = tailguard(*demo_argv(local, run_id, *extra))
        assert done.returncode == 0, done.stderr[-4000:]
    for run_id in ("night-1", "night-2"):
        flink_manifest = json.loads((on_flink / run_id / "manifest.json").read_text())
        local_manifest = json.loads((local / run_id / "manifest.json").read_text())
        assert flink_manifest["runner"] == "FlinkRunner" and flink_manifest["counts"]["reconciled"]
        assert checksums(flink_manifest) == checksums(local_manifest), run_id
        assert flink_manifest["counts"] == local_manifest["counts"], run_id
        # Counters travel back through the job API: every stage's documents, as on the local runner (busy time
        # is the one counter that measures the machine, not the data).
        documents = lambda m: {stage: {k: v for k, v in counters.items() if k != "busy_us"}
                               for stage, counters in m["stage_counters"].items()}
        assert documents(flink_manifest) == documents(local_manifest), run_id
    night_2 = json.loads((on_flink / "night-2" / "manifest.json").read_text())
    assert night_2["counts"]["carried_forward"] > 0  # night 1's documents were carried forward
    assert (on_flink / "LATEST").read_text().strip() == "night-2"
    assert sorted(p.name for p in on_flink.iterdir()) == ["LATEST", "night-1", "night-2"]  # progress files gone
    flink_report = json.loads((on_flink / "night-2" / "report" / "report.json").read_text())
    local_report = json.loads((local / "night-2" / "report" / "report.json").read_text())
    assert flink_report["metrics"] == local_report["metrics"]


def test_a_failing_flink_job_publishes_nothing(tmp_path, job_server):
    output, good = tmp_path / "out", tmp_path / "in.jsonl"
    good.write_text(json.dumps({"text": "A perfectly ordinary human sentence that is long enough to keep."}) + "\n")
    # The workers cannot create the run directory (a file is in its place): the job fails inside Flink's
    # workers after the driver's own checks passed.
    output.mkdir()
    (output / "LATEST").write_text("before\n")
    (output / "broken").write_text("a file where the run directory should be")
    result = tailguard("run", "--input", str(good), "--output", str(output), "--run-id", "broken",
                       "--set", "langid.enabled=false", *FLINK, "--job_endpoint", job_server.address,
                       "--environment_type", "LOOPBACK")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not published" in result.stderr
    assert (output / "LATEST").read_text() == "before\n"
    assert not list(output.rglob("manifest.json"))


@pytest.fixture
def pool_without_beam(tmp_path):
    """An EXTERNAL worker pool whose SDK workers run a python that cannot import apache_beam."""
    worker = tmp_path / "worker.sh"
    worker.write_text("#!/bin/sh\nexec /usr/bin/env -i /usr/bin/python3 -c 'import apache_beam' \"$@\"\n")
    worker.chmod(0o755)
    log = tmp_path / "pool.log"
    with BeamService("apache_beam.runners.worker.worker_pool_main", "--service_port",
                     extra=["--container_executable", str(worker)], log=log) as pool:
        yield pool


@pytest.mark.parametrize("pool", ["python without apache_beam", "nobody listening"])
def test_a_flink_job_whose_workers_never_start_is_cancelled_within_the_stall_bound(tmp_path, job_server, pool,
                                                                                   request):
    address = (request.getfixturevalue("pool_without_beam").address if pool.startswith("python")
               else f"localhost:{free_port()}")
    output, good = tmp_path / "out", tmp_path / "in.jsonl"
    good.write_text(json.dumps({"text": "A perfectly ordinary human sentence that is long enough to keep."}) + "\n")
    # tailguard() runs under a subprocess timeout: a hang fails the test; what ended the job is checked below.
    result = tailguard("run", "--input", str(good), "--output", str(output), "--run-id", "stuck",
                       "--set", "langid.enabled=false", *FLINK, "--job_endpoint", job_server.address,
                       "--environment_type", "EXTERNAL", "--environment_config", address, "--stall_timeout", "15")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not published" in result.stderr
    if pool.startswith("python"):  # Flink waits for ever for such workers: only the watchdog ends it
        assert "no SDK worker started within 15 s" in result.stderr and "environment_config" in result.stderr
    assert not list(output.rglob("manifest.json")) and not (output / "LATEST").exists()


class _Slow(beam.DoFn):
    def process(self, element):
        time.sleep(0.5)
        yield element


# LOOPBACK workers live in this process; when the job ends Flink hangs up their data stream mid-read.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_flink_job_slower_than_the_stall_bound_runs_to_the_end_while_it_progresses(tmp_path, job_server):
    options, name = runner.pipeline_options([*FLINK, "--job_endpoint", job_server.address, "--environment_type",
                                             "LOOPBACK", "--stall_timeout", "10", "--progress_every", "1"])
    pipeline = runner.make_pipeline(options, name)
    out = tmp_path / "out"
    _ = (pipeline | beam.Create(range(80)) | "Slow" >> beam.ParDo(_Slow())
         | beam.Map(str) | beam.io.WriteToText(str(out / "n"), shard_name_template=""))
    lines = tmp_path / "progress.txt"
    with open(lines, "w") as stream:
        result = runner.run_and_wait(pipeline, name, progress_dir=str(tmp_path / "progress"), out=stream)
    # The work is 80 x 0.5 s on at most 2 workers, twice the 10 s bound by construction: the job outlived the bound
    # because the watchdog saw its count rise, line after line.
    assert "DONE" in str(result.state)
    assert sorted(int(n) for n in (out / "n").read_text().split()) == list(range(80))
    counts = [int(n.replace(",", "")) for n in re.findall(r"Slow=([\d,]+)", lines.read_text())]
    assert len(set(counts)) >= 3 and counts == sorted(counts), counts


def _children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (started from any of its threads)."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def test_a_worker_killed_mid_job_never_publishes_a_wrong_snapshot(tmp_path, job_server):
    """SIGKILL every SDK harness once documents flow. Flink may fail the job (exit 1, nothing published) or have
    the pool start new workers and re-run the failed tasks; then what it publishes must be the local runner's."""
    import os
    import signal

    output = tmp_path / "out"
    output.mkdir()
    (output / "LATEST").write_text("before\n")
    with BeamService("apache_beam.runners.worker.worker_pool_main", "--service_port",
                     log=tmp_path / "pool.log") as pool:
        argv = [sys.executable, "-m", "tailguard.pipelines.cli", *demo_argv(output, "killed"), *FLINK,
                "--set", "report.enabled=false", "--job_endpoint", job_server.address,
                "--environment_type", "EXTERNAL", "--environment_config", pool.address, "--stall_timeout", "60",
                "--progress_every", "0.5"]
        run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline, killed = time.monotonic() + RUN_TIMEOUT, []
            while not killed and time.monotonic() < deadline and run.poll() is None:
                if any('"counts": {"' in p.read_text() for p in output.glob("_progress/*/*.json")):
                    for pid in _children_of(pool.process.pid):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                time.sleep(0.2)
            _, stderr = run.communicate(timeout=RUN_TIMEOUT)
        finally:
            if run.poll() is None:
                run.kill()
    assert killed, "no SDK harness was running while the job reported progress"
    if run.returncode != 0:
        assert run.returncode == 1 and "not published" in stderr, stderr[-3000:]
        assert (output / "LATEST").read_text() == "before\n"
        assert not list(output.rglob("manifest.json"))
        return
    local = tmp_path / "local"
    assert tailguard(*demo_argv(local, "killed", "--set", "report.enabled=false")).returncode == 0
    recovered = json.loads((output / "killed" / "manifest.json").read_text())
    expected = json.loads((local / "killed" / "manifest.json").read_text())
    assert recovered["counts"]["reconciled"] and recovered["counts"] == expected["counts"]
    assert checksums(recovered) == checksums(expected)
