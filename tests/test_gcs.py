"""`tailguard run` on Cloud Storage: gs:// inputs, output, LATEST and --previous, against gcp-storage-emulator.

Beam's own gs:// filesystem follows ``STORAGE_EMULATOR_HOST``; every run is a separate process with that
environment (as a worker would be), so nothing in this test process is re-pointed at the emulator. The test
reads and writes objects with its own anonymous client.

Failure modes a real bucket shows are reproduced on the loopback: ``503`` answers (transient errors the client
must retry) from a proxy in front of the emulator, and the emulator itself going away and coming back in the
middle of a run. Either the run retries and publishes a complete snapshot, or it fails and publishes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.emulators import FaultyProxy, GcsEmulator, gcs_env, write_dummy_adc

BUCKET = "tailguard"
DEMO_CONFIG = str(EXAMPLES / "curate.yaml")
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    home = tmp_path_factory.mktemp("gcs")
    emulator = GcsEmulator(home / "objects", BUCKET).start()
    adc = write_dummy_adc(home / "adc.json")
    client = storage.Client(project="tailguard-test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": emulator.endpoint})
    bucket = client.bucket(BUCKET)
    corpus = EXAMPLES / "corpus"
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.name != "CORPUS.md":
            bucket.blob(f"corpus/{path.relative_to(corpus).as_posix()}").upload_from_filename(str(path))
    try:
        yield SimpleNamespace(emulator=emulator, adc=adc, bucket=bucket, home=home)
    finally:
        emulator.stop()


def tailguard(gcs, *argv: str, endpoint: str | None = None, wait: bool = True):
    env = dict(os.environ, **gcs_env(endpoint or gcs.emulator.endpoint, gcs.adc))
    command = [sys.executable, "-m", "tailguard.pipelines.cli", "run", *argv]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def demo_inputs() -> list[str]:
    return ["--input", f"gs://{BUCKET}/corpus/*.*", "--input", f"gs://{BUCKET}/corpus/gutenberg/*.txt"]


def small_inputs() -> list[str]:
    return ["--input", f"gs://{BUCKET}/corpus/inaugural.jsonl", "--input", f"gs://{BUCKET}/corpus/gutenberg/*.txt"]


def read_object(gcs, name: str) -> bytes:
    return gcs.bucket.blob(name).download_as_bytes()


def object_exists(gcs, name: str) -> bool:
    return gcs.bucket.blob(name).exists()


def verify_published(gcs, root: str, run_id: str) -> dict:
    """The run has a manifest, it reconciles, and every file it lists is there with its rows and SHA-256."""
    manifest = json.loads(read_object(gcs, f"{root}/{run_id}/manifest.json"))
    assert manifest["status"] == "complete" and manifest["counts"]["reconciled"]
    for entry in manifest["files"]:
        payload = read_object(gcs, f"{root}/{run_id}/{entry['path']}")
        assert hashlib.sha256(payload).hexdigest() == entry["sha256"], entry["path"]
        assert len(payload) == entry["bytes"]
        if entry["path"].endswith(".parquet"):
            assert pq.read_table(io.BytesIO(payload)).num_rows == entry["rows"]
        else:
            assert len(payload.splitlines()) == entry["rows"]
    return manifest


def train_doc_ids(gcs, root: str, run_id: str, manifest: dict) -> list[str]:
    ids = []
    for entry in manifest["files"]:
        if entry["split"] == "train":
            table = pq.read_table(io.BytesIO(read_object(gcs, f"{root}/{run_id}/{entry['path']}")))
            ids += table.column("doc_id").to_pylist()
    return sorted(ids)


def test_a_whole_run_reads_and_publishes_on_gcs_and_the_next_run_carries_it_forward(gcs):
    root = "snapshots"
    first = tailguard(gcs, *demo_inputs(), "--output", f"gs://{BUCKET}/{root}", "--config", DEMO_CONFIG,
                      "--run-id", "2026-11-19")
    assert first.returncode == 0, first.stderr[-4000:]
    manifest = verify_published(gcs, root, "2026-11-19")
    assert read_object(gcs, f"{root}/LATEST").decode().strip() == "2026-11-19"
    counts = manifest["counts"]
    # The bundled corpus, read from the bucket: every format, every dead-letter kind, nothing lost.
    assert counts["out"]["train"] > 100 and counts["out"]["dead_letter"] >= 5
    assert set(manifest["inputs"]) == {f"gs://{BUCKET}/corpus/*.*", f"gs://{BUCKET}/corpus/gutenberg/*.txt"}
    train = pq.read_table(io.BytesIO(read_object(gcs, f"{root}/2026-11-19/" + next(
        f["path"] for f in manifest["files"] if f["split"] == "train"))))
    assert all(uri.startswith(f"gs://{BUCKET}/corpus/") for uri in train.column("source_uri").to_pylist())
    assert not any(".tmp-" in name for name in gcs.emulator.object_names())

    gcs.bucket.blob("day2/fresh.jsonl").upload_from_string(json.dumps({
        "text": "A new paragraph written by a person about lighthouse keepers and the long winter nights "
                "they spent trimming wicks on the northern coast."}) + "\n")
    second = tailguard(gcs, "--input", f"gs://{BUCKET}/day2/*.jsonl", "--output", f"gs://{BUCKET}/{root}",
                       "--previous", f"gs://{BUCKET}/{root}", "--config", DEMO_CONFIG, "--run-id", "2026-11-20")
    assert second.returncode == 0, second.stderr[-4000:]
    following = verify_published(gcs, root, "2026-11-20")
    assert following["previous"] == f"gs://{BUCKET}/{root}/2026-11-19"
    carried = counts["out"]["train"] + counts["out"]["anchor_holdout"]
    assert following["counts"]["carried_forward"] == carried
    assert following["counts"]["out"]["train"] + following["counts"]["out"]["anchor_holdout"] == carried + 1
    assert read_object(gcs, f"{root}/LATEST").decode().strip() == "2026-11-20"


def test_transient_503s_are_retried_and_the_snapshot_is_byte_identical(gcs):
    clean = tailguard(gcs, *small_inputs(), "--output", f"gs://{BUCKET}/clean", "--run-id", "r")
    assert clean.returncode == 0, clean.stderr[-4000:]
    with FaultyProxy(gcs.emulator.port, lambda n, method, path: n % 5 == 0) as proxy:
        flaky = tailguard(gcs, *small_inputs(), "--output", f"gs://{BUCKET}/flaky", "--run-id", "r",
                          endpoint=proxy.endpoint)
    assert proxy.failed >= 10  # reads, listings, uploads, renames and deletes all met errors
    assert flaky.returncode == 0, flaky.stderr[-4000:]
    checksums = lambda m: {f["path"]: f["sha256"] for f in m["files"]}
    assert checksums(verify_published(gcs, "flaky", "r")) == checksums(verify_published(gcs, "clean", "r"))
    assert read_object(gcs, "flaky/LATEST").decode().strip() == "r"


def test_an_emulator_restart_mid_run_never_publishes_a_partial_snapshot(gcs):
    root = "restart"
    assert tailguard(gcs, *small_inputs(), "--output", f"gs://{BUCKET}/{root}", "--run-id",
                     "before").returncode == 0
    reference = verify_published(gcs, root, "before")

    run = tailguard(gcs, *small_inputs(), "--output", f"gs://{BUCKET}/{root}", "--run-id", "during", wait=False)
    try:
        # Restart once the pipeline has begun writing the snapshot's files: storage vanishes mid-write.
        deadline = time.monotonic() + RUN_TIMEOUT
        while not any(name.startswith(f"{root}/during/") for name in gcs.emulator.object_names()):
            assert run.poll() is None, "the run ended before it wrote anything"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert run.poll() is None
        gcs.emulator.restart(down_for=1.0)
        _, stderr = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    print(f"run interrupted by an emulator restart exited {run.returncode}")
    if run.returncode == 0:  # the client retried through the outage: the snapshot must be whole
        verify_published(gcs, root, "during")
        assert read_object(gcs, f"{root}/LATEST").decode().strip() == "during"
    else:
        assert not object_exists(gcs, f"{root}/during/manifest.json"), stderr[-3000:]
        assert read_object(gcs, f"{root}/LATEST").decode().strip() == "before"

    # Re-running the same id on healthy storage replaces whatever the interrupted run left.
    again = tailguard(gcs, *small_inputs(), "--output", f"gs://{BUCKET}/{root}", "--run-id", "during")
    assert again.returncode == 0, again.stderr[-4000:]
    replaced = verify_published(gcs, root, "during")
    assert read_object(gcs, f"{root}/LATEST").decode().strip() == "during"
    assert train_doc_ids(gcs, root, "during", replaced) == train_doc_ids(gcs, root, "before", reference)
    listed = {f"{root}/during/{f['path']}" for f in replaced["files"]} | {
        f"{root}/during/{name}" for name in replaced["card"]}  # the dataset card, listed with its checksums
    leftovers = [name for name in gcs.emulator.object_names() if name.startswith(f"{root}/during/")
                 and name not in listed and "/_stats/" not in name and "/report/" not in name
                 and not name.endswith("manifest.json")]
    assert leftovers == []
