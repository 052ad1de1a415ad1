"""Publish a run that a flex-template job wrote: manifest.json, then LATEST -- or nothing, with exit 1.

Run it after the Dataflow job reached JOB_STATE_DONE (``launch.sh`` does): it reads the launch record that
``flex_main.py`` left in ``<run>/_stats/``, and publishes exactly as ``tailguard run`` would at the end of a
run -- the data-derived counts must reconcile and the files must hold the rows counted. A job that failed
part-way left no complete ``_stats/`` and is not published.

    python deploy/dataflow/publish_run.py --output gs://BUCKET/snapshots --run_id 2026-11-20
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from typing import Optional, Sequence

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from flex_main import LAUNCH_RECORD  # noqa: E402


def publish_run(output: str, run_id: str) -> dict:
    from tailguard.pipelines import publish
    from tailguard.pipelines.config import load_config

    run_dir = publish.join(output, run_id)
    record = json.loads(publish.read_text(publish.join(run_dir, "_stats", LAUNCH_RECORD)))
    with tempfile.TemporaryDirectory(prefix="tailguard-publish-") as scratch:
        path = os.path.join(scratch, "resolved.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(record["config"], f)
        config = load_config(path)
    manifest = publish.publish(
        output=output, run_dir=run_dir, run_id=run_id, sink=config.sink, resolved_config=record["config"],
        config_digest=record["config_sha256"], inputs=record["inputs"], previous=record["previous"],
        counters={}, started=dt.datetime.fromisoformat(record["started_at"]),
        finished=dt.datetime.now(dt.timezone.utc), runner=record["runner"])
    publish.print_summary(manifest, run_dir)
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="publish_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--run_id", required=True)
    args = parser.parse_args(argv)
    from tailguard.pipelines.publish import RunFailed

    try:
        publish_run(args.output, args.run_id)
    except (RunFailed, OSError, ValueError, KeyError) as e:
        print(f"tailguard: error: run {args.run_id} not published: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
