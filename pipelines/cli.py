"""``tailguard`` command line: ``run`` the curation pipeline, and the helper commands.

Options this parser does not know are Beam pipeline options and pass through unchanged
(``--runner``, ``--direct_running_mode``, ``--direct_num_workers``, ``--temp_location``, ``--project``, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import yaml

import tailguard
from tailguard.pipelines import runner
from tailguard.transforms.settings import ConfigError

STAGE_ORDER = ("ingest", "langid", "synthetic", "dedup", "anchors", "rarity")

RUN_EPILOG = """\
Beam pipeline options not listed above pass through unchanged, e.g.
  --runner DirectRunner|DataflowRunner|FlinkRunner|PortableRunner
  --direct_running_mode in_memory|multi_processing   (never multi_threading: it loses elements with Reshuffle)
  --direct_num_workers 2   --temp_location gs://bucket/tmp   --project P --region R
  --stall_timeout 600   cancel a Flink/portable job whose workers report no progress for this long (0: never)
  --progress_every 5    seconds between progress lines on stderr

The DirectRunner (default) runs on Beam's FnApiRunner directly: Beam 2.77's DirectRunner would first try to
download the Prism runner binary. Pass --runner PrismRunner to use Prism deliberately.

Examples:
  tailguard run --input 'data/*.jsonl.gz' --output out/ --config curate.yaml
  tailguard run --input 'gs://b/crawl/2026-11-20/*.parquet' --output gs://b/snapshots \\
      --previous gs://b/snapshots --set dedup.threshold=0.85 --runner DataflowRunner ...
"""


def _run_parser(sub) -> argparse.ArgumentParser:
    run = sub.add_parser(
        "run", help="curate inputs into a published snapshot", allow_abbrev=False, epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ingest -> language ID -> synthetic scoring -> near-dedup -> sharded Parquet snapshot "
                    "<output>/<run-id>/ with manifest.json; <output>/LATEST names the last complete run.")
    run.add_argument("--input", action="append", required=True, metavar="PATTERN",
                     help="file glob, local or gs:// (repeatable); formats by extension: .jsonl, .jsonl.gz, "
                          ".jsonl.zst, .parquet, .txt (one document per file)")
    run.add_argument("--output", required=True, metavar="DIR",
                     help="output root (local or gs://); the run is written to DIR/RUN_ID/")
    run.add_argument("--config", metavar="FILE", help="YAML config (every key has a default)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override one config key, value parsed as YAML, e.g. --set langid.min_score=0.5 "
                          "--set 'langid.languages=[en, fr]' (repeatable)")
    run.add_argument("--run-id", metavar="ID",
                     help="name of this run's directory (default: UTC time, e.g. 20261120T031500Z); "
                          "re-using an id replaces that run")
    run.add_argument("--previous", metavar="SNAPSHOT_DIR",
                     help="previous published snapshot (or an output root with LATEST): its documents are "
                          "carried forward and new documents are deduplicated against it")
    run.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return run


def _config_parser(sub) -> argparse.ArgumentParser:
    cfg = sub.add_parser("config", help="print the resolved config (defaults + file + --set) and its hash",
                         allow_abbrev=False)
    cfg.add_argument("--config", metavar="FILE")
    cfg.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    return cfg


def _train_detector_parser(sub) -> argparse.ArgumentParser:
    from tailguard.pipelines import train_detector

    parser = sub.add_parser("train-detector", help="train the synthetic-text detector reproducibly",
                            allow_abbrev=False)
    train_detector.add_arguments(parser)
    return parser


def _report_parser(sub) -> argparse.ArgumentParser:
    from tailguard.pipelines import report

    parser = sub.add_parser(
        "report", allow_abbrev=False,
        help="collapse-risk report of a published snapshot: report.html, report.json and PNG plots",
        description="Writes SNAPSHOT/report/: language, synthetic-score, anchor, weight and near-duplicate "
                    "distributions, diversity and tail metrics of train against the input, and their trends "
                    "over earlier snapshots with drift flags. Beam pipeline options pass through.")
    report.add_arguments(parser)
    return parser


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailguard", allow_abbrev=False,
                                     description="Curate LLM training sets that resist model collapse.")
    parser.add_argument("--version", action="version", version=f"tailguard {tailguard.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _config_parser(sub)
    _train_detector_parser(sub)
    _report_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser()
    args, beam_args = parser.parse_known_args(argv)
    if args.command not in ("run", "report") and beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    try:
        if args.command == "run":
            return run_command(args, beam_args)
        if args.command == "config":
            return config_command(args)
        if args.command == "report":
            from tailguard.pipelines import report

            return report.main(args, beam_args)
        from tailguard.pipelines import train_detector

        return train_detector.main(args)
    except ConfigError as e:
        print(f"tailguard: error: {e}", file=sys.stderr)
        return 2


def config_command(args) -> int:
    from tailguard.pipelines.config import config_hash, config_to_dict, load_config

    config = load_config(args.config, args.overrides)
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    print(f"# sha256: {config_hash(config)}")
    return 0


def run_command(args, beam_args: list[str]) -> int:
    from tailguard.pipelines import publish, report
    from tailguard.pipelines.config import config_hash, config_to_dict
    from tailguard.pipelines.curate import RunPaths, build_pipeline

    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    mode = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--direct_running_mode=")), None)
    if mode is None and "--direct_running_mode" in beam_args:
        i = beam_args.index("--direct_running_mode")
        mode = beam_args[i + 1] if i + 1 < len(beam_args) else None
    if mode == "multi_threading":
        raise ConfigError("--direct_running_mode", "multi_threading loses elements when the pipeline contains a "
                                                   "Reshuffle (Beam 2.77); use in_memory or multi_processing")

    plan = plan_run(config_path=args.config, overrides=args.overrides, patterns=args.input, output=args.output,
                    run_id=args.run_id, previous=args.previous, beam_args=beam_args)
    config, inputs, run_id, previous = plan.config, plan.inputs, plan.run_id, plan.previous
    options, runner_name, run_dir = plan.options, plan.runner_name, plan.run_dir
    paths = RunPaths(run_id=run_id, run_dir=run_dir, previous_dir=previous)

    publish.prepare_run_dir(run_dir)
    started = dt.datetime.now(dt.timezone.utc)
    pipeline = runner.make_pipeline(options, runner_name)
    build_pipeline(pipeline, config, sorted(inputs), paths)
    try:
        result = runner.run_and_wait(pipeline, runner_name,
                                     progress_dir=runner.progress_dir_for(args.output, run_id, runner_name))
    except runner.JobFailed as e:
        print(f"tailguard: error: {e}; run {run_id} not published", file=sys.stderr)
        return 1
    finished = dt.datetime.now(dt.timezone.utc)
    counters = publish.stage_counters(result)
    ordered = {s: counters[s] for s in STAGE_ORDER if s in counters}
    ordered.update({s: v for s, v in counters.items() if s not in ordered})
    try:
        manifest = publish.publish(
            output=args.output, run_dir=run_dir, run_id=run_id, sink=config.sink,
            resolved_config=config_to_dict(config), config_digest=config_hash(config), inputs=inputs,
            previous=previous, counters=ordered, started=started, finished=finished,
            runner=runner_name or "DirectRunner",
            report=f"{report.REPORT_DIR}/{report.REPORT_JSON}" if config.report.enabled else None)
    except publish.RunFailed as e:
        print(f"tailguard: error: {e}", file=sys.stderr)
        return 1
    publish.print_summary(manifest, run_dir)
    if config.report.enabled:
        try:
            written = report.write_report(run_dir, config=config.report, pipeline_args=beam_args)
        except Exception as e:  # the snapshot is published; its report can be regenerated from it
            print(f"tailguard: warning: report not written ({type(e).__name__}: {e}); the snapshot is published, "
                  f"regenerate the report with: tailguard report {run_dir}", file=sys.stderr)
        else:
            print(f"report: {publish.join(run_dir, report.REPORT_DIR, report.REPORT_HTML)} "
                  f"({len(written['drift'])} drift flag(s))")
    return 0


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked before any pipeline exists."""

    config: Any
    inputs: dict
    run_id: str
    previous: Optional[str]
    options: Any
    runner_name: Optional[str]
    run_dir: str


def plan_run(*, config_path: Optional[str], overrides: Sequence[str], patterns: Sequence[str], output: str,
             run_id: Optional[str], previous: Optional[str], beam_args: list[str]) -> RunPlan:
    """Config, models, inputs, run id, output and previous snapshot: each fails here, naming what is wrong.

    Shared by ``tailguard run`` and the Dataflow flex template (deploy/dataflow/flex_main.py).
    """
    from tailguard.pipelines import publish
    from tailguard.pipelines.config import load_config
    from tailguard.transforms.ingest import check_inputs

    config = load_config(config_path, list(overrides))
    _check_stage_resources(config)
    inputs = check_inputs(list(patterns))
    run_id = publish.check_run_id(run_id or publish.default_run_id())
    publish.check_output_writable(output)
    resolved_previous = None
    if previous:
        resolved_previous = publish.resolve_previous(previous)
        publish.check_previous(resolved_previous)
    options, runner_name = runner.pipeline_options(beam_args)
    return RunPlan(config, inputs, run_id, resolved_previous, options, runner_name, publish.join(output, run_id))


def _check_stage_resources(config) -> None:
    """Models and other files a stage needs must exist and load before the pipeline is built."""
    if config.langid.enabled:
        from tailguard.transforms.langid import check_model

        check_model(config.langid)
    if config.synthetic.enabled:
        from tailguard.transforms.synthetic import check_models

        check_models(config.synthetic)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
