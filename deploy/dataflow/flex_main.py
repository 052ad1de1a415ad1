"""Dataflow flex-template entry point: check everything, prepare the run directory, submit the job, return.

The flex-template launcher must exit as soon as the job is submitted (it times out if the program waits for
the job), so -- unlike ``tailguard run`` -- this cannot wait and publish. It records what publishing needs in
``<run>/_stats/launch.json``; ``publish_run.py`` publishes (manifest.json, then LATEST) once the job has
succeeded. Until then the run directory has no manifest and is, by definition, incomplete.

Template parameters (deploy/dataflow/metadata.json) arrive as ``--name=value``; every other option is a Beam
pipeline option and passes through (the launcher adds --project, --region, --temp_location, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Optional, Sequence

LAUNCH_RECORD = "launch.json"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flex_main", allow_abbrev=False)
    parser.add_argument("--input", required=True, help="comma-separated file patterns (gs://...)")
    parser.add_argument("--output", required=True, help="output root; the run goes to OUTPUT/RUN_ID/")
    parser.add_argument("--config", default="", help="YAML config (gs:// or a path inside the image)")
    parser.add_argument("--overrides", default="", help="semicolon-separated key=value config overrides")
    parser.add_argument("--run_id", default="", help="run directory name (default: UTC time)")
    parser.add_argument("--previous", default="", help="previous snapshot, or an output root with LATEST")
    return parser


def split_list(value: str, separator: str) -> list[str]:
    return [item.strip() for item in value.split(separator) if item.strip()]


def submit(argv: Optional[Sequence[str]] = None, wait: bool = False) -> dict:
    """Validate, prepare ``OUTPUT/RUN_ID``, start the pipeline; returns the launch record."""
    from tailguard.pipelines import publish, runner
    from tailguard.pipelines.cli import plan_run
    from tailguard.pipelines.config import config_hash, config_to_dict
    from tailguard.pipelines.curate import RunPaths, build_pipeline

    args, beam_args = make_parser().parse_known_args(argv)
    plan = plan_run(config_path=args.config or None, overrides=split_list(args.overrides, ";"),
                    patterns=split_list(args.input, ","), output=args.output, run_id=args.run_id or None,
                    previous=args.previous or None, beam_args=beam_args)
    config, inputs, run_id, previous = plan.config, plan.inputs, plan.run_id, plan.previous
    options, runner_name, run_dir = plan.options, plan.runner_name, plan.run_dir

    publish.prepare_run_dir(run_dir)
    record = {
        "output": args.output, "run_id": run_id, "run_dir": run_dir, "inputs": inputs, "previous": previous,
        "config": config_to_dict(config), "config_sha256": config_hash(config),
        "runner": runner_name or "DirectRunner", "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    publish.write_text(publish.join(run_dir, "_stats", LAUNCH_RECORD), json.dumps(record, indent=1))
    pipeline = runner.make_pipeline(options, runner_name)
    build_pipeline(pipeline, config, sorted(inputs), RunPaths(run_id=run_id, run_dir=run_dir,
                                                              previous_dir=previous))
    result = pipeline.run()
    if wait:
        result.wait_until_finish()
    record["job_id"] = runner.job_id(result)
    print(json.dumps({"run_dir": run_dir, "job_id": record["job_id"]}))
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tailguard.transforms.settings import ConfigError

    try:
        submit(argv)
    except ConfigError as e:
        print(f"tailguard: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
