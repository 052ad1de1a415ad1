"""Runner plumbing (pipelines/runner.py, pipelines/flink.py): progress, the stall bound's messages, checks that
fail before a pipeline exists, and progress lines from the local runner in both of its modes."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import apache_beam as beam
import pytest

from tailguard.pipelines import flink, runner
from tailguard.transforms.settings import ConfigError
from tests.conftest import EXAMPLES, ROOT, demo_inputs
from tests.emulators import free_port


def test_progress_line_reports_documents_read_rate_and_each_stage_in_pipeline_order():
    progress = runner.Progress(["Ingest", "LanguageID", "NearDedup", "WriteSnapshot"])
    progress.started -= 10
    progress.update(({"Ingest": 2000, "Ingest/ReadRecords": 2000, "NearDedup": 40, "LanguageID": 1500}, 2))
    line = progress.line("RUNNING")
    assert line.startswith("[0:00:10] RUNNING 2,000 read (200/s)")
    assert line.index("LanguageID=1,500") < line.index("NearDedup=40") and "WriteSnapshot" not in line
    assert progress.workers == 2
    changed = progress.changed
    progress.update(({"Ingest": 1000}, 1))  # one worker's file unreadable at this instant: no step backwards
    assert progress.counts["Ingest"] == 2000 and progress.counts["NearDedup"] == 40 and progress.changed == changed


def test_progress_sums_every_worker_file_and_skips_one_being_rewritten(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"counts": {"Ingest": 5, "NearDedup": 1}, "at": 0}))
    (tmp_path / "b.json").write_text(json.dumps({"counts": {"Ingest": 7}, "at": 0}))
    (tmp_path / "c.json").write_text('{"counts": {"Ing')
    assert runner.read_progress(str(tmp_path)) == ({"Ingest": 12, "NearDedup": 1}, 3)
    assert runner.read_progress(str(tmp_path / "nothing-yet")) == ({}, 0)


def test_stall_messages_name_the_likely_cause():
    never = runner.Progress(["Ingest"])
    message = runner.stall_message(never, 600, "FlinkRunner")
    assert "no SDK worker started within 600 s" in message and "--environment_config" in message
    assert "import apache_beam" in message and "--stall_timeout" in message
    stuck = runner.Progress(["Ingest"])
    stuck.update(({"Ingest": 10}, 1))
    message = runner.stall_message(stuck, 60, "FlinkRunner")
    assert "no stage's document count moved for 60 s" in message and "Ingest=10" in message


def test_counting_leaves_the_pipeline_output_unchanged(tmp_path):
    options, name = runner.pipeline_options(["--progress_every", "0.2"])
    pipeline = runner.make_pipeline(options, name)

    class Double(beam.PTransform):
        def expand(self, pcoll):
            return pcoll | "Times2" >> beam.Map(lambda x: 2 * x) | "Group" >> beam.GroupBy(lambda x: x % 3)

    _ = (pipeline | "Numbers" >> beam.Create(range(3000)) | "Double" >> Double()
         | "Sizes" >> beam.MapTuple(lambda k, v: f"{k} {len(list(v))}")
         | "Write" >> beam.io.WriteToText(str(tmp_path / "out"), shard_name_template=""))
    lines = tmp_path / "progress.txt"
    with open(lines, "w") as out:
        runner.run_and_wait(pipeline, name, progress_dir=str(tmp_path / "progress"), out=out)
    assert sorted((tmp_path / "out").read_text().split("\n")[:-1]) == ["0 1000", "1 1000", "2 1000"]
    assert not (tmp_path / "progress").exists()  # the workers' files are gone with the job


def test_counted_pipelines_survive_the_portable_runners_rewrites(tmp_path):
    # Portable runners replace Reshuffle and pack or lift combines before submitting; a counter attached inside
    # one of them referenced a collection that no longer existed (KeyError at submission, found on Flink).
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.portable_runner import PortableRunner

    from tailguard.pipelines import report
    from tailguard.pipelines.config import load_config
    from tailguard.pipelines.curate import RunPaths, build_pipeline

    for build in (lambda p: build_pipeline(p, load_config(str(EXAMPLES / "curate.yaml"), []), demo_inputs(),
                                           RunPaths("r", str(tmp_path / "r"), str(tmp_path / "previous"))),
                  lambda p: report.build_metrics_pipeline(p, str(tmp_path), report.ReportConfig(), "m.json")):
        pipeline = beam.Pipeline(options=PipelineOptions([]))
        build(pipeline)
        stages = runner.watch_progress(pipeline, str(tmp_path / "progress"), 1.0, depth=3)
        assert stages
        optimized = PortableRunner._optimize_pipeline(pipeline.to_runner_api(), pipeline.options)
        assert any(t.unique_name.startswith("Progress/") for t in optimized.components.transforms.values())


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_a_local_run_prints_progress_while_it_runs(tmp_path, mode):
    argv = [sys.executable, "-m", "tailguard.pipelines.cli", "run", "--output", str(tmp_path), "--run-id", "r",
            "--config", str(EXAMPLES / "curate.yaml"), "--set", "report.enabled=false", "--progress_every", "0.5",
            "--direct_running_mode", mode, "--direct_num_workers", "2"]
    for pattern in demo_inputs():
        argv += ["--input", pattern]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("[0:") and " read (" in line]
    assert len(lines) >= 2, done.stderr[-3000:]
    counts = [int(line.split("] ")[1].split(" read")[0].replace(",", "")) for line in lines]
    read = json.loads((tmp_path / "r" / "manifest.json").read_text())["counts"]["records_read"]
    assert counts == sorted(counts) and 0 < counts[-1] <= read  # records read so far, never more than exist


# ------------------------------------------------------------------------------- checks before a pipeline


def test_flink_fails_before_the_pipeline_without_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="`java`, which is not on PATH: install a JDK"):
        runner.pipeline_options(["--runner", "FlinkRunner", "--flink_master", "[local]"])


def test_flink_fails_before_the_pipeline_with_a_missing_corrupt_or_foreign_jar(tmp_path):
    flags = ["--runner", "FlinkRunner", "--flink_master", "[local]", "--flink_job_server_jar"]
    with pytest.raises(ConfigError, match="does not exist: run `make flink-job-server`"):
        runner.pipeline_options(flags + [str(tmp_path / "absent.jar")])
    corrupt = tmp_path / "corrupt.jar"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="is not a usable jar"):
        runner.pipeline_options(flags + [str(corrupt)])
    foreign = tmp_path / "foreign.jar"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nMain-Class: org.example.Other\r\n\r\n")
    with pytest.raises(ConfigError, match="does not start org.apache.beam.runners.flink.FlinkJobServerDriver"):
        runner.pipeline_options(flags + [str(foreign)])


def test_a_damaged_installed_job_server_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(flink.CACHE_ENV, str(tmp_path))
    flags = ["--runner", "FlinkRunner", "--flink_master", "[local]"]
    with pytest.raises(ConfigError, match="not installed at .*: run `make flink-job-server`"):
        runner.pipeline_options(flags)
    home = flink.install_dir()
    (home / "lib").mkdir(parents=True)
    (home / "lib" / "a.jar").write_bytes(b"one")
    with zipfile.ZipFile(flink.jar_path(), "w") as z:
        z.writestr("META-INF/MANIFEST.MF", flink._manifest(["lib/a.jar"]))
    digest = flink._sha(home / "lib" / "a.jar", "sha256")
    (home / flink.SUMS).write_text(f"{digest}  lib/a.jar\n")
    assert runner.pipeline_options(flags)[0].view_as(
        beam.options.pipeline_options.FlinkRunnerOptions).flink_job_server_jar == str(flink.jar_path())
    (home / "lib" / "a.jar").write_bytes(b"changed")
    with pytest.raises(ConfigError, match="damaged .*does not match its SHA-256"):
        runner.pipeline_options(flags + ["--flink_job_server_jar", str(flink.jar_path())])


def test_an_unreachable_job_server_or_a_taken_port_fails_before_the_pipeline():
    with pytest.raises(ConfigError, match="nothing answers at localhost:.*start the job server"):
        runner.pipeline_options(["--runner", "FlinkRunner", "--job_endpoint", f"localhost:{free_port()}"])
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is already in use"):
            runner.pipeline_options(["--runner", "FlinkRunner", "--flink_master", "[local]", "--job_port", str(port)])


def test_bad_runner_settings_fail_naming_the_flag():
    with pytest.raises(ConfigError, match="--stall_timeout"):
        runner.pipeline_options(["--stall_timeout", "-5"])
    with pytest.raises(ConfigError, match="--progress_every"):
        runner.pipeline_options(["--progress_every", "-1"])


def test_the_job_server_manifest_wraps_long_class_paths_as_the_jar_spec_requires():
    manifest = flink._manifest([f"lib/dependency-number-{i}.jar" for i in range(50)]).decode()
    assert all(len(line.encode()) <= 72 for line in manifest.split("\r\n"))
    joined = manifest.replace("\r\n ", "")
    assert f"Main-Class: {flink.MAIN_CLASS}" in joined and "lib/dependency-number-49.jar" in joined
