"""The Dataflow job, built offline: DataflowRunner translates the pipeline into its job without submitting it.

``--dry_run True`` (Beam's TestOptions) makes DataflowRunner do everything up to the service call: apply its
overrides, stage the SDK dependencies (tailguard's setup.py is built into an sdist), and produce the Runner API
pipeline it would submit. Option validation still asks Cloud Storage whether the temp bucket has soft delete
enabled, so that one question goes to a local emulator.

The flex template's two halves (submit without waiting, publish afterwards) run here on the local runner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import SetupOptions, StandardOptions, WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2

from tailguard.pipelines.runner import pipeline_options
from tailguard.pipelines.config import load_config
from tailguard.pipelines.curate import RunPaths, build_pipeline
from tests.conftest import EXAMPLES, ROOT, demo_inputs
from tests.emulators import GcsEmulator, gcs_env, write_dummy_adc

DATAFLOW = ROOT / "deploy" / "dataflow"
TEMP_BUCKET = "tailguard-temp"
DATAFLOW_FLAGS = ["--runner", "DataflowRunner", "--project", "tailguard-test", "--region", "europe-west1",
                  "--temp_location", f"gs://{TEMP_BUCKET}/tmp", "--machine_type", "n2-standard-4",
                  "--max_num_workers", "50", "--autoscaling_algorithm", "THROUGHPUT_BASED"]
# The curation stages, by the labels pipelines/curate.py gives them, and the previous snapshot's readers.
CORE_STAGES = {"Ingest", "LanguageID", "SyntheticScoring", "NearDedup", "WriteSnapshot", "ReadPrevious_train",
               "ReadPrevious_anchor_holdout"}


def top_level_labels(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    transforms = proto.components.transforms
    labels = set()
    for root in proto.root_transform_ids:
        for child in transforms[root].subtransforms or [root]:
            labels.add(transforms[child].unique_name.split("/")[0])
    return labels


def all_labels(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    return {t.unique_name for t in proto.components.transforms.values()}


def staged_artifacts(job) -> dict[str, str]:
    """Staged name -> local file, for every artifact the job's environments stage."""
    staged = {}
    for environment in job.proto_pipeline.components.environments.values():
        for artifact in environment.dependencies:
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
            staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload).path
    return staged


def build(options) -> beam.Pipeline:
    config = load_config(str(EXAMPLES / "curate.yaml"), [])
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config, ["gs://crawl/2026-11-20/*.jsonl.gz"],
                   RunPaths("2026-11-20", "gs://snapshots/2026-11-20", "gs://snapshots/2026-11-19"))
    return pipeline


@pytest.fixture(scope="module")
def dataflow_job(tmp_path_factory):
    home = tmp_path_factory.mktemp("dataflow")
    emulator = GcsEmulator(home / "objects", TEMP_BUCKET).start()
    saved = dict(os.environ)
    os.environ.update(gcs_env(emulator.endpoint, write_dummy_adc(home / "adc.json")))
    try:
        options, runner = pipeline_options(DATAFLOW_FLAGS + ["--dry_run", "True"])
        assert runner == "DataflowRunner"
        local = build(pipeline_options([])[0]).to_runner_api()
        result = build(options).run()
        yield result.job, local, options
        staged = {Path(path).parent for path in staged_artifacts(result.job).values()}
        for directory in staged:  # Beam leaves its staging directory behind
            if directory.parent == Path(tempfile.gettempdir()):
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        emulator.stop()


def test_cli_stages_setup_py_for_dataflow_unless_dependencies_are_given_otherwise(tmp_path):
    options, _ = pipeline_options(["--runner", "DataflowRunner"])
    assert options.view_as(SetupOptions).setup_file == str(ROOT / "setup.py")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tailguard\n")
    for flags in (["--requirements_file", str(requirements)], ["--sdk_container_image", "europe-docker.pkg.dev/p/r/i:1"],
                  ["--setup_file", str(tmp_path / "other_setup.py")]):
        options, _ = pipeline_options(["--runner", "DataflowRunner", *flags])
        assert options.view_as(SetupOptions).setup_file in (None, str(tmp_path / "other_setup.py")), flags
    assert pipeline_options([])[0].view_as(SetupOptions).setup_file is None  # local runs stage nothing


def test_the_dataflow_job_graph_holds_every_stage_of_the_pipeline(dataflow_job):
    job, local, _ = dataflow_job
    submitted = job.proto_pipeline
    assert CORE_STAGES <= top_level_labels(submitted)
    # Nothing the local graph has is missing from the Dataflow one (overrides may add, never drop).
    assert top_level_labels(local) <= top_level_labels(submitted)
    for label in ("Ingest/MatchFiles", "Ingest/ReadRecords", "NearDedup", "WriteSnapshot/Write_train",
                  "WriteSnapshot/WriteCounts", "WriteSnapshot/WriteFileList"):
        assert any(name.startswith(label) for name in all_labels(submitted)), label
    # A batch job: every collection is bounded, so Dataflow will not switch to streaming.
    assert all(p.is_bounded == beam_runner_api_pb2.IsBounded.BOUNDED
               for p in submitted.components.pcollections.values())


def test_workers_get_the_pinned_beam_image_and_the_tailguard_package_from_setup_py(dataflow_job):
    job, _, options = dataflow_job
    environments = list(job.proto_pipeline.components.environments.values())
    assert environments and all(e.urn == "beam:env:docker:v1" for e in environments)
    images = {beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image for e in environments}
    assert images == {f"gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:{beam.__version__}"}
    staged = staged_artifacts(job)
    assert "workflow.tar.gz" in staged  # the sdist of setup.py: workers pip-install tailguard from it
    with tarfile.open(staged["workflow.tar.gz"]) as tar:  # it must carry the models the stages load
        names = tar.getnames()
    for needed in ("setup.py", "pipelines/curate.py", "transforms/models/synthetic_fasttext.ftz",
                   "transforms/langid_data/iso639-1.tsv"):
        assert any(n.endswith(needed) for n in names), needed
    worker = options.view_as(WorkerOptions)
    assert (worker.machine_type, worker.max_num_workers, worker.autoscaling_algorithm) == (
        "n2-standard-4", 50, "THROUGHPUT_BASED")
    assert not options.view_as(StandardOptions).streaming


def test_flex_template_metadata_names_every_parameter_flex_main_accepts():
    sys.path.insert(0, str(DATAFLOW))
    try:
        import flex_main
    finally:
        sys.path.remove(str(DATAFLOW))
    metadata = json.loads((DATAFLOW / "metadata.json").read_text())
    declared = {p["name"]: p for p in metadata["parameters"]}
    accepted = {a.dest: a for a in flex_main.make_parser()._actions if a.dest != "help"}
    assert set(declared) == set(accepted)
    assert {n for n, p in declared.items() if not p.get("isOptional")} == {
        n for n, a in accepted.items() if a.required}
    assert all(p["helpText"] and p["label"] for p in metadata["parameters"])
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    assert f"apache/beam_python3.11_sdk:{beam.__version__}" in dockerfile
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/deploy/dataflow/flex_main.py" in dockerfile


def test_flex_template_submits_without_publishing_and_publish_run_publishes_after(tmp_path):
    sys.path.insert(0, str(DATAFLOW))
    try:
        import flex_main
        import publish_run
    finally:
        sys.path.remove(str(DATAFLOW))
    output = tmp_path / "snapshots"
    record = flex_main.submit(["--input", ",".join(demo_inputs()), "--output", str(output),
                               "--config", str(EXAMPLES / "curate.yaml"), "--overrides", "sink.num_shards=2",
                               "--run_id", "2026-11-20"])
    assert record["config"]["sink"]["num_shards"] == 2
    # The job has run (the local runner blocks) but nothing is published until publish_run.
    assert (output / "2026-11-20" / "_stats" / "counts.json").exists()
    assert not (output / "2026-11-20" / "manifest.json").exists() and not (output / "LATEST").exists()
    assert publish_run.main(["--output", str(output), "--run_id", "2026-11-20"]) == 0
    manifest = json.loads((output / "2026-11-20" / "manifest.json").read_text())
    assert manifest["counts"]["reconciled"] and manifest["counts"]["out"]["train"] > 100
    assert len([f for f in manifest["files"] if f["split"] == "train"]) == 2
    assert (output / "LATEST").read_text().strip() == "2026-11-20"
    # A run whose job never produced its stats is not published.
    assert publish_run.main(["--output", str(output), "--run_id", "never-ran"]) == 1
    assert (output / "LATEST").read_text().strip() == "2026-11-20"


def test_dataflow_gets_worker_defaults_only_for_flags_not_given():
    worker = pipeline_options(["--runner", "DataflowRunner"])[0].view_as(WorkerOptions)
    assert (worker.machine_type, worker.autoscaling_algorithm, worker.max_num_workers) == (
        "n2-standard-4", "THROUGHPUT_BASED", 50)
    given = ["--runner", "DataflowRunner", "--machine_type", "c3-highmem-8", "--autoscaling_algorithm", "NONE",
             "--max_num_workers", "7"]
    worker = pipeline_options(given)[0].view_as(WorkerOptions)
    assert (worker.machine_type, worker.autoscaling_algorithm, worker.max_num_workers) == (
        "c3-highmem-8", "NONE", 7)
    assert pipeline_options([])[0].view_as(WorkerOptions).machine_type is None  # local runs untouched


# Run in a fresh venv where tailguard is installed from its wheel: Dataflow's dry run, printing what it stages.
WHEEL_DRY_RUN = r"""
import json, os, sys, zipfile
import apache_beam as beam
import tailguard
from apache_beam.portability.api import beam_runner_api_pb2
from tailguard.pipelines.config import load_config
from tailguard.pipelines.curate import RunPaths, build_pipeline
from tailguard.pipelines.runner import pipeline_options

assert "site-packages" in tailguard.__file__, tailguard.__file__
options, _ = pipeline_options(json.loads(sys.argv[1]))
pipeline = beam.Pipeline(options=options)
build_pipeline(pipeline, load_config(sys.argv[2], []), ["gs://crawl/2026-11-20/*.jsonl.gz"],
               RunPaths("2026-11-20", "gs://snapshots/2026-11-20"))
job = pipeline.run().job
staged = {}
for environment in job.proto_pipeline.components.environments.values():
    for artifact in environment.dependencies:
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(artifact.role_payload).staged_name
        staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload).path
wheels = {n: sorted(zipfile.ZipFile(p).namelist()) for n, p in staged.items() if n.endswith(".whl")}
metadata = {n: zipfile.ZipFile(p).read(next(f for f in wheels[n] if f.endswith("METADATA"))).decode()
            for n, p in staged.items() if n.endswith(".whl")}
print(json.dumps({"staged": sorted(staged), "wheels": wheels, "metadata": metadata,
                  "setup_file": options.view_as(beam.options.pipeline_options.SetupOptions).setup_file}))
"""


def test_dataflow_from_an_installed_wheel_stages_tailguard_itself(tmp_path, dataflow_job, installed_wheel):
    # The source checkout stages setup.py (workflow.tar.gz, the test above); a wheel has no setup.py beside
    # the code, so the installed distribution is packed back into a wheel and staged as an extra package.
    fresh, wheel = installed_wheel  # tests/conftest.py: the wheel in a fresh venv with its own dependencies
    # The dataflow_job fixture points Cloud Storage at its emulator through the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    flags = DATAFLOW_FLAGS + ["--dry_run", "True"]
    done = subprocess.run([str(fresh), "-c", WHEEL_DRY_RUN, json.dumps(flags), str(EXAMPLES / "curate.yaml")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["setup_file"] is None and "workflow.tar.gz" not in result["staged"]
    (name,) = [n for n in result["wheels"] if n.startswith("tailguard-")]
    files = result["wheels"][name]
    for needed in ("tailguard/__init__.py", "tailguard/pipelines/curate.py", "tailguard/pipelines/runner.py",
                   "tailguard/transforms/models/synthetic_fasttext.ftz", "tailguard/transforms/langid_data/iso639-1.tsv"):
        assert needed in files, needed
    assert "Requires-Dist: apache-beam[gcp]==2.77.*" in result["metadata"][name]  # workers get the pinned deps
    assert "extra_packages.txt" in result["staged"]
