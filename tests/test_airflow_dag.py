"""The nightly Airflow DAG, loaded by a real Airflow and executed with ``airflow dags test`` on the bundled corpus.

Airflow runs in its own processes with a throw-away ``AIRFLOW_HOME`` (SQLite metadata DB); the DAG's curate task
runs ``tailguard run`` through ``BeamRunPythonPipelineOperator`` with the DirectRunner. The helper functions
the DAG plans and verifies with are tested directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.apache.beam", reason="the [airflow] extra is not installed")

from tailguard.pipelines.cli import main as tailguard  # noqa: E402
from tests.conftest import EXAMPLES, ROOT  # noqa: E402

DAGS = ROOT / "deploy" / "airflow" / "dags"
DAG_FILE = DAGS / "tailguard_nightly.py"
DAG_TIMEOUT = 300


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TAILGUARD_PYTHON": sys.executable,
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=180)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return airflow, env


@pytest.fixture(scope="module")
def dag_module(airflow_env):
    """The DAG file imported in this process (its helpers), with Airflow pointed at the throw-away home."""
    _, env = airflow_env
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__CORE__LOAD_EXAMPLES"):
        os.environ.setdefault(key, env[key])
    spec = importlib.util.spec_from_file_location("tailguard_nightly", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish_small_snapshot(output: Path, run_id: str, text: str) -> None:
    source = output.parent / f"src-{run_id}"
    source.mkdir(parents=True)
    (source / "day.jsonl").write_text(json.dumps({"text": text}) + "\n")
    assert tailguard(["run", "--input", str(source / "*.jsonl"), "--output", str(output), "--run-id", run_id,
                      "--set", "langid.enabled=false"]) == 0


def test_the_dag_loads_in_airflow_with_its_schedule_tasks_and_retries(dag_module):
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {} and sorted(bag.dags) == ["tailguard_nightly"]  # the launcher is ignored
    dag = dag_module.dag
    tasks = {t.task_id: t for t in dag.tasks}
    assert sorted(tasks) == ["curate", "plan", "verify_publication"]
    assert type(tasks["curate"]).__name__ == "BeamRunPythonPipelineOperator"
    assert {k: sorted(t.upstream_task_ids) for k, t in tasks.items()} == {
        "plan": [], "curate": ["plan"], "verify_publication": ["curate", "plan"]}
    assert dag.timetable.expression == "0 2 * * *" and dag.catchup is False and dag.max_active_runs == 1
    assert tasks["curate"].retries == 2 and tasks["verify_publication"].retries == 0
    assert set(dag.params.get_param("runner").schema["enum"]) >= {"DirectRunner", "DataflowRunner", "FlinkRunner"}


def test_inputs_are_partitioned_by_the_logical_date(dag_module):
    import datetime as dt

    when = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    assert dag_module.partitioned(["gs://b/crawl/{ds}/*.jsonl.gz", "gs://b/books/{ds_nodash}-*.txt"], when) == [
        "gs://b/crawl/2026-11-20/*.jsonl.gz", "gs://b/books/20261120-*.txt"]


def test_previous_is_the_newest_published_snapshot_before_the_date_even_on_a_rerun(dag_module, tmp_path):
    for run_id, published in (("2026-11-17", True), ("2026-11-18", True), ("2026-11-19", False),
                              ("2026-11-20", True)):
        (tmp_path / run_id).mkdir()
        if published:
            (tmp_path / run_id / "manifest.json").write_text("{}")
    # 11-19 never published (no manifest); 11-20 is the date being (re-)run: neither may be --previous.
    assert dag_module.previous_snapshot(str(tmp_path), "2026-11-20") == f"{tmp_path}/2026-11-18"
    assert dag_module.previous_snapshot(str(tmp_path), "2026-11-17") is None


def test_verification_rejects_unpublished_unreconciled_and_stale_runs(dag_module, tmp_path):
    output = tmp_path / "out"
    publish_small_snapshot(output, "2026-11-19", "A person wrote this account of the harbour at dawn, "
                                                 "with boats coming in and nets hung out to dry.")
    assert dag_module.verify(str(output), "2026-11-19")["run_id"] == "2026-11-19"
    with pytest.raises(ValueError, match="not published"):
        dag_module.verify(str(output), "2026-11-20")
    shutil.copytree(output / "2026-11-19", output / "2026-11-20")
    manifest = json.loads((output / "2026-11-20" / "manifest.json").read_text())
    with pytest.raises(ValueError, match="LATEST"):  # complete, but LATEST still names the day before
        dag_module.verify(str(output), "2026-11-20")
    manifest["counts"]["reconciled"] = False
    (output / "2026-11-20" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not reconcile"):
        dag_module.verify(str(output), "2026-11-20")


def test_dags_test_curates_the_bundled_corpus_and_a_rerun_of_the_date_is_idempotent(airflow_env, tmp_path):
    airflow, env = airflow_env
    day = tmp_path / "crawl" / "2026-11-20"
    shutil.copytree(EXAMPLES / "corpus", day)
    output = tmp_path / "snapshots"
    publish_small_snapshot(output, "2026-11-19", "Notes kept by a lighthouse keeper on the northern coast "
                                                 "about the winter storms and the ships that passed.")
    conf = {
        "runner": "DirectRunner",
        "input_patterns": [f"{tmp_path}/crawl/{{ds}}/*.*", f"{tmp_path}/crawl/{{ds}}/gutenberg/*.txt"],
        "output_root": str(output),
        "config": str(EXAMPLES / "curate.yaml"),
        "beam_options": {"DirectRunner": {"direct_running_mode": "in_memory"}},
    }

    def dags_test() -> dict:
        result = subprocess.run([airflow, "dags", "test", "tailguard_nightly", "2026-11-20", "-c", json.dumps(conf)],
                                env=env, capture_output=True, text=True, timeout=DAG_TIMEOUT)
        log = result.stdout + result.stderr
        assert result.returncode == 0 and "state=success" in log, log[-5000:]
        return json.loads((output / "2026-11-20" / "manifest.json").read_text())

    first = dags_test()
    assert (output / "LATEST").read_text().strip() == "2026-11-20"
    assert first["counts"]["reconciled"] and first["counts"]["out"]["train"] > 100
    assert first["previous"] == f"{output}/2026-11-19" and first["counts"]["carried_forward"] == 1
    assert sorted(first["inputs"]) == sorted(conf["input_patterns"][i].replace("{ds}", "2026-11-20")
                                             for i in range(2))

    second = dags_test()  # the same date again: same previous, same documents, same bytes
    assert second["previous"] == first["previous"]
    checksums = lambda m: {f["path"]: f["sha256"] for f in m["files"]}
    assert checksums(second) == checksums(first) and second["counts"] == first["counts"]
    assert (output / "LATEST").read_text().strip() == "2026-11-20"
