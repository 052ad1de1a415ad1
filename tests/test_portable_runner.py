"""The whole pipeline through Beam's portable job API -- the path a Flink job server takes.

A local job service (`local_job_service_main`) receives the pipeline as a Runner API proto, and an EXTERNAL SDK
worker pool (`worker_pool_main`) executes it in other processes: nothing the DirectRunner shares in memory
(pickled closures, module state, the driver's file handles) is available. Flink would sit behind the same job
API; its job-server jar cannot be fetched here, so this stands in for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, demo_inputs
from tests.emulators import BeamService

DEMO_CONFIG = str(EXAMPLES / "curate.yaml")
RUN_TIMEOUT = 300  # a worker that cannot start makes Beam wait 300 s per bundle; fail well before a hang


def tailguard(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tailguard.pipelines.cli", "run", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def demo_argv(output: Path, run_id: str) -> list[str]:
    argv = ["--output", str(output), "--run-id", run_id, "--config", DEMO_CONFIG]
    for pattern in demo_inputs():
        argv += ["--input", pattern]
    return argv


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    log = tmp_path_factory.mktemp("portable") / "services.log"
    with BeamService("apache_beam.runners.worker.worker_pool_main", "--service_port", log=log) as pool, \
         BeamService("apache_beam.runners.portability.local_job_service_main", "--port", log=log) as jobs:
        yield jobs, pool, log


def test_demo_runs_end_to_end_on_the_portable_runner_with_an_external_worker_pool(tmp_path, portable_services):
    jobs, pool, log = portable_services
    portable_out, direct_out = tmp_path / "portable", tmp_path / "direct"
    result = tailguard(*demo_argv(portable_out, "nightly"), "--runner", "PortableRunner",
                       "--job_endpoint", jobs.address, "--environment_type", "EXTERNAL",
                       "--environment_config", pool.address)
    assert result.returncode == 0, result.stderr[-4000:] + "\n" + log.read_text()[-4000:]
    # The job really ran in the worker pool's SDK harness, not in the submitting process.
    assert "Completed job" in log.read_text() and "SdkHarness" in log.read_text()

    manifest = json.loads((portable_out / "nightly" / "manifest.json").read_text())
    assert manifest["runner"] == "PortableRunner"
    assert manifest["counts"]["reconciled"] and manifest["counts"]["out"]["train"] > 100
    assert (portable_out / "LATEST").read_text().strip() == "nightly"
    # Counters travel back through the job API: every stage that ran reports its documents.
    assert manifest["stage_counters"]["ingest"]["in"] == manifest["counts"]["records_read"]

    # Same input, same config, same run id on the local runner: the same bytes.
    assert tailguard(*demo_argv(direct_out, "nightly")).returncode == 0
    local = json.loads((direct_out / "nightly" / "manifest.json").read_text())
    checksums = lambda m: {f["path"]: (f["rows"], f["sha256"]) for f in m["files"]}
    assert checksums(manifest) == checksums(local)
    assert manifest["counts"] == local["counts"]


def test_a_failing_portable_job_publishes_nothing(tmp_path, portable_services):
    jobs, pool, _ = portable_services
    output = tmp_path / "out"
    good = tmp_path / "in.jsonl"
    good.write_text(json.dumps({"text": "A perfectly ordinary human sentence that is long enough to keep."}) + "\n")
    # An output directory the workers cannot create: the job fails inside the worker pool, after the driver's
    # own checks passed -- the run must end with exit 1 and no manifest, LATEST untouched.
    (output).mkdir()
    (output / "LATEST").write_text("before\n")
    (output / "broken").write_text("a file where the run directory should be")
    result = tailguard("--input", str(good), "--output", str(output), "--run-id", "broken",
                       "--set", "langid.enabled=false", "--runner", "PortableRunner",
                       "--job_endpoint", jobs.address, "--environment_type", "EXTERNAL",
                       "--environment_config", pool.address)
    assert result.returncode != 0
    assert (output / "LATEST").read_text() == "before\n"
    assert not list(output.rglob("manifest.json"))


def test_flink_deployment_pins_the_flink_and_job_server_the_suite_runs():
    import re

    import apache_beam as beam
    import yaml
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    from tailguard.pipelines import flink

    deploy = ROOT / "deploy" / "flink"
    compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
    manifests = [doc for path in sorted((deploy / "k8s").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text())]
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    for doc in manifests:
        spec = doc.get("spec", {})
        images += [spec["image"]] if "image" in spec else []
        pod = spec.get("template", spec.get("taskManager", {}).get("podTemplate", {})).get("spec", {})
        images += [c["image"] for c in pod.get("containers", []) if "image" in c]
    flink_versions = {m.group(1) for i in images for m in [re.match(r"flink:(\d+\.\d+)", i)] if m}
    job_servers = [i for i in images if "job_server" in i]
    # The Flink and job server the test suite runs (tests/test_flink.py), everywhere.
    assert flink_versions == {flink.FLINK_VERSION} <= set(FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
    version = flink.FLINK_VERSION
    assert job_servers and all(i == f"apache/beam_flink{version}_job_server:{flink.JOB_SERVER_BEAM_VERSION}"
                               for i in job_servers)
    deployment = next(d for d in manifests if d["kind"] == "FlinkDeployment")
    assert deployment["spec"]["flinkVersion"] == "v" + version.replace(".", "_")
    sidecar = [c for c in deployment["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
               if c["name"] == "sdk-worker-pool"]
    assert sidecar and sidecar[0]["ports"][0]["containerPort"] == 50000
    worker = (deploy / "Dockerfile.worker").read_text()
    assert f"FROM apache/beam_python3.11_sdk:{beam.__version__}" in worker


class _RecordingJobService:
    """Stands in for the job service stub: records the timeout each job-API call was opened with."""

    def __init__(self):
        self.timeouts = {}

    def GetStateStream(self, request, timeout=None):
        self.timeouts["state"] = timeout
        return iter([object()])

    def GetMessageStream(self, request, timeout=None):
        self.timeouts["messages"] = timeout
        return iter([])

    def Run(self, request, timeout=None):
        self.timeouts["run"] = timeout
        return type("RunResponse", (), {"job_id": "job-1"})()


def test_job_state_streams_outlive_the_job_server_timeout():
    # Beam opens the driver's state and message streams with job_server_timeout (300 s by default): a longer
    # job would fail the driver with DEADLINE_EXCEEDED. tailguard run gives those two streams a week.
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    from tailguard.pipelines import runner

    service = _RecordingJobService()
    handle = JobServiceHandle(service, PipelineOptions([]))
    assert handle.timeout == 300
    handle.run("prep-1")
    assert service.timeouts["state"] == 300  # Beam's own behaviour, which the fix works around

    with runner.long_job_streams():
        job_id, _, _ = handle.run("prep-1")
    assert job_id == "job-1"
    assert service.timeouts["state"] == service.timeouts["messages"] == runner.JOB_STREAM_TIMEOUT_S >= 24 * 3600
    assert handle.timeout == 300  # preparing and staging keep failing fast
    handle.run("prep-1")
    assert service.timeouts["state"] == 300  # the patch is gone outside the context
