"""Nightly tailguard refresh: curate the day's crawl into a new snapshot that carries the previous one forward.

    plan ──► curate (BeamRunPythonPipelineOperator: tailguard run) ──► verify_publication

* **plan** turns the logical date into paths: the day's input patterns (``{ds}`` / ``{ds_nodash}`` in the
  configured patterns), the run id (the date itself, so the snapshot lands in ``<output_root>/<ds>/``), and
  ``--previous``: the newest *published* snapshot dated before the logical date. Choosing by date, not by
  ``LATEST``, makes a re-run of the same date idempotent -- it never carries its own earlier output forward.
* **curate** runs ``tailguard run`` on the runner the operator chose (``runner`` param, else the
  ``tailguard_runner`` Variable): DirectRunner, DataflowRunner, FlinkRunner or PortableRunner. tailguard itself
  writes ``manifest.json`` then ``LATEST`` only when the counts reconcile; re-running a run id replaces it.
* **verify_publication** fails the DAG run unless the manifest exists, says ``complete``, reconciles, lists only
  files that exist, and ``LATEST`` names this run.

Settings, each a DAG param (per run: ``airflow dags trigger -c '{...}'``) falling back to an Airflow Variable,
then to the default below -- see deploy/README.md:

    tailguard_input_patterns  JSON list, e.g. ["gs://B/crawl/{ds}/*.jsonl.gz", "gs://B/books/{ds}/*.txt"]
    tailguard_output_root     e.g. gs://B/snapshots
    tailguard_config          YAML config path (local to the worker or gs://), optional
    tailguard_overrides       JSON list of "key=value" config overrides, optional
    tailguard_runner          DirectRunner | DataflowRunner | FlinkRunner | PortableRunner
    tailguard_beam_options    JSON object: runner name -> Beam options for that runner

and the environment variable TAILGUARD_PYTHON: the interpreter with tailguard installed (default: Airflow's own).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any, Optional

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.sdk import DAG, Param, Variable, task

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "tailguard_beam_main.py")
# Not a template field of the operator, so read when the DAG is parsed: an environment variable, not a Variable.
PYTHON = os.environ.get("TAILGUARD_PYTHON", sys.executable)
RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "PortableRunner")

# Defaults per runner; the tailguard_beam_options Variable and the beam_options param override them key by key.
DEFAULT_BEAM_OPTIONS: dict[str, dict[str, Any]] = {
    "DirectRunner": {"direct_running_mode": "multi_processing", "direct_num_workers": 2},
    "DataflowRunner": {"machine_type": "n2-standard-4", "max_num_workers": 50,
                       "autoscaling_algorithm": "THROUGHPUT_BASED", "experiments": ["use_runner_v2"]},
    "FlinkRunner": {"flink_master": "flink-jobmanager:8081", "environment_type": "EXTERNAL",
                    "environment_config": "localhost:50000", "parallelism": 4},
    "PortableRunner": {"job_endpoint": "localhost:8099", "environment_type": "EXTERNAL",
                       "environment_config": "localhost:50000"},
}


# ------------------------------------------------------------------------------------------------ pure helpers


def partitioned(patterns: list[str], logical_date: dt.datetime) -> list[str]:
    """Input patterns of one day: ``{ds}`` -> 2026-11-20, ``{ds_nodash}`` -> 20261120."""
    ds = logical_date.strftime("%Y-%m-%d")
    return [p.replace("{ds}", ds).replace("{ds_nodash}", ds.replace("-", "")) for p in patterns]


def published_run_ids(output_root: str) -> list[str]:
    """Run ids under the output root that have a manifest (published = has a manifest)."""
    from apache_beam.io.filesystems import FileSystems

    root = output_root.rstrip("/")
    matched = FileSystems.match([f"{root}/*/manifest.json"])[0].metadata_list
    return sorted({m.path[len(root) + 1:].split("/")[0] for m in matched})


def previous_snapshot(output_root: str, run_id: str) -> Optional[str]:
    """The newest published snapshot dated before ``run_id`` (run ids are ISO dates, so they sort by date)."""
    earlier = [r for r in published_run_ids(output_root) if r < run_id]
    return f"{output_root.rstrip('/')}/{earlier[-1]}" if earlier else None


def merged_beam_options(runner: str, *layers: Optional[dict]) -> dict[str, Any]:
    options = dict(DEFAULT_BEAM_OPTIONS.get(runner, {}))
    for layer in layers:
        if layer and runner in layer:
            options.update(layer[runner])
    return options


def verify(output_root: str, run_id: str) -> dict[str, Any]:
    """Raise ValueError unless ``run_id`` is published, reconciled, complete, and ``LATEST`` names it."""
    from apache_beam.io.filesystems import FileSystems

    root = output_root.rstrip("/")
    run_dir = f"{root}/{run_id}"
    manifest_path = f"{run_dir}/manifest.json"
    if not FileSystems.exists(manifest_path):
        raise ValueError(f"{manifest_path} does not exist: run {run_id} was not published")
    with FileSystems.open(manifest_path) as f:
        manifest = json.loads(f.read().decode("utf-8"))
    counts = manifest.get("counts", {})
    if manifest.get("status") != "complete" or not counts.get("reconciled"):
        raise ValueError(f"run {run_id} does not reconcile: {counts.get('equation')}")
    missing = [e["path"] for e in manifest.get("files", []) if not FileSystems.exists(f"{run_dir}/{e['path']}")]
    if missing:
        raise ValueError(f"run {run_id}: files listed in the manifest are missing: {missing[:5]}")
    with FileSystems.open(f"{root}/LATEST") as f:
        latest = f.read().decode("utf-8").strip()
    if latest != run_id:
        raise ValueError(f"LATEST names {latest!r}, not this run {run_id!r}: it was not advanced")
    return {"run_id": run_id, "equation": counts.get("equation"), "files": len(manifest.get("files", []))}


def _setting(params: dict, name: str, default: Any, as_json: bool = False) -> Any:
    """A DAG param if set, else the ``tailguard_<name>`` Variable, else the default."""
    value = params.get(name)
    if value not in (None, "", [], {}):
        return value
    return Variable.get(f"tailguard_{name}", default=default, deserialize_json=as_json)


# ------------------------------------------------------------------------------------------------------- DAG

with DAG(
    dag_id="tailguard_nightly",
    description="Curate the day's crawl into a tailguard snapshot that carries the previous one forward",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs share LATEST and --previous: one at a time, in date order
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10), "retry_exponential_backoff": True},
    params={
        "runner": Param(None, type=["null", "string"], enum=[None, *RUNNERS]),
        "input_patterns": Param(None, type=["null", "array"], items={"type": "string"}),
        "output_root": Param(None, type=["null", "string"]),
        "config": Param(None, type=["null", "string"]),
        "overrides": Param(None, type=["null", "array"], items={"type": "string"}),
        "beam_options": Param(None, type=["null", "object"]),
    },
    tags=["tailguard"],
) as dag:

    @task
    def plan(params: dict, logical_date: Optional[dt.datetime] = None, dag_run=None) -> dict[str, Any]:
        when = logical_date or dag_run.run_after
        run_id = when.strftime("%Y-%m-%d")
        runner = _setting(params, "runner", "DirectRunner")
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
        output_root = _setting(params, "output_root", None)
        patterns = _setting(params, "input_patterns", None, as_json=True)
        if not output_root or not patterns:
            raise ValueError("set tailguard_output_root and tailguard_input_patterns (Variables or params)")
        options: dict[str, Any] = {
            "input": partitioned(list(patterns), when),
            "output": output_root,
            "run-id": run_id,
            "previous": previous_snapshot(output_root, run_id),
            "config": _setting(params, "config", None),
            "set": list(_setting(params, "overrides", [], as_json=True) or []),
        }
        beam_options = merged_beam_options(runner, _setting({}, "beam_options", {}, as_json=True),
                                           params.get("beam_options"))
        dataflow_config = None
        if runner == "DataflowRunner":
            dataflow_config = {"job_name": f"tailguard-{run_id}", "append_job_name": False,
                               "project_id": beam_options.pop("project", None),
                               "location": beam_options.pop("region", None),
                               "wait_until_finished": True}
        options.update(beam_options)
        return {"run_id": run_id, "runner": runner, "output_root": output_root,
                "pipeline_options": {k: v for k, v in options.items() if v not in (None, [])},
                "dataflow_config": dataflow_config}

    planned = plan()

    curate = BeamRunPythonPipelineOperator(
        task_id="curate",
        py_file=LAUNCHER,
        py_interpreter=PYTHON,
        runner="{{ ti.xcom_pull(task_ids='plan')['runner'] }}",
        pipeline_options="{{ ti.xcom_pull(task_ids='plan')['pipeline_options'] }}",
        dataflow_config="{{ ti.xcom_pull(task_ids='plan')['dataflow_config'] }}",
        execution_timeout=dt.timedelta(hours=12),
    )

    @task(retries=0)
    def verify_publication(planned: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return verify(planned["output_root"], planned["run_id"])
        except ValueError as e:  # a run that did not publish will not publish on a retry of this check
            raise AirflowFailException(str(e)) from None

    planned >> curate >> verify_publication(planned)
