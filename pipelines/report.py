"""``tailguard report SNAPSHOT``: the collapse-risk report of a published snapshot, and its trend over earlier ones.

Writes ``<snapshot>/report/``: ``report.json`` (every figure, the sampling used, the history and the drift
flags), self-contained ``report.html`` (plots inlined) and the plots as PNG files. The metrics come from a Beam
pipeline over the snapshot's Parquet files (``transforms.diversity.SnapshotMetrics``); the driver only draws.

History follows each manifest's ``previous`` back ``history`` snapshots. An earlier snapshot's figures come
from its own ``report/report.json`` when it has one; otherwise they are computed here and cached in this
snapshot's ``report/history/<run_id>.json`` (a published snapshot is never modified).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import os
from typing import Any, Optional, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from tailguard.pipelines import publish, runner
from tailguard.transforms.collapse_risk import collapse_risk
from tailguard.transforms.diversity import (
    INPUT, NGRAM_ORDERS, ReportConfig, SnapshotMetrics, assemble, drift_flags, threshold_name, trend_values)
from tailguard.transforms.document import ANCHOR_HOLDOUT, DOCUMENT_SPLITS, REJECTED, TRAIN
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.sink import _atomic_write

log = logging.getLogger(__name__)

REPORT_DIR = "report"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
MANIFEST = "manifest.json"
_COLUMNS = ["doc_id", "text", "lang", "synthetic_score", "sample_weight", "dup_cluster_size", "is_anchor"]
_COLORS = {TRAIN: "#1f77b4", INPUT: "#ff7f0e", ANCHOR_HOLDOUT: "#2ca02c", REJECTED: "#d62728"}


# --------------------------------------------------------------------------------------------------- file helpers


_join, _read_text = publish.join, publish.read_text


def _write_bytes(path: str, payload: bytes) -> None:
    _atomic_write(path, lambda stream: stream.write(payload))


def read_manifest(snapshot_dir: str) -> dict[str, Any]:
    path = _join(snapshot_dir, MANIFEST)
    if not FileSystems.exists(path):
        raise ConfigError("SNAPSHOT", f"{snapshot_dir!r} is not a published snapshot (no {MANIFEST})")
    return json.loads(_read_text(path))


def resolve_snapshot(path: str) -> str:
    """A snapshot directory, or an output root whose ``LATEST`` names one."""
    latest = _join(path, "LATEST")
    if not FileSystems.exists(_join(path, MANIFEST)) and FileSystems.exists(latest):
        return _join(path, _read_text(latest).strip())
    return path


def _locate_previous(snapshot_dir: str, recorded: str) -> Optional[str]:
    """``previous`` as the manifest recorded it; a relative path may have been relative to another cwd,
    so a sibling of this snapshot with the same name is tried too."""
    candidates = [recorded]
    if "://" not in recorded and not os.path.isabs(recorded):
        parent = snapshot_dir.rstrip("/").rsplit("/", 1)[0] if "/" in snapshot_dir.rstrip("/") else "."
        candidates.append(_join(parent, recorded.rstrip("/").rsplit("/", 1)[-1]))
    for candidate in candidates:
        if FileSystems.exists(_join(candidate, MANIFEST)):
            return candidate
    return None


def snapshot_history(snapshot_dir: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``limit`` earlier published snapshots, newest first, following ``previous``."""
    chain, seen = [], {snapshot_dir.rstrip("/")}
    manifest = read_manifest(snapshot_dir)
    current = snapshot_dir
    while len(chain) < limit and manifest.get("previous"):
        earlier = _locate_previous(current, manifest["previous"])
        if earlier is None or earlier.rstrip("/") in seen:
            if earlier is None:
                log.warning("previous snapshot %s of %s not found; history stops there", manifest["previous"], current)
            break
        seen.add(earlier.rstrip("/"))
        manifest = read_manifest(earlier)
        chain.append((earlier, manifest))
        current = earlier
    return chain


# --------------------------------------------------------------------------------------------------- pipeline


class ReadSplitFileFn(beam.DoFn):
    """The columns the metrics need from one Parquet file of a split (never the provenance columns).

    Copies written by ``rarity.materialize`` (``repeats`` > 1) sit next to each other (files are sorted by
    ``doc_id``); they are one document, counted once. Exact duplicates in ``rejected/`` share a ``doc_id`` too,
    but each is a document that entered curation, so each counts.
    """

    def process(self, item: tuple[str, str]):
        path, split = item
        with FileSystems.open(path) as stream:
            parquet = pq.ParquetFile(stream)
            columns = [c for c in _COLUMNS + ["repeats"] if c in parquet.schema_arrow.names]
            last_id = None
            for batch in parquet.iter_batches(batch_size=1024, columns=columns):
                for row in batch.to_pylist():
                    repeats = row.pop("repeats", None)
                    if repeats and repeats > 1 and row["doc_id"] == last_id:
                        continue
                    last_id = row["doc_id"]
                    doc = {k: v for k, v in row.items() if v is not None}
                    doc["split"] = split
                    yield doc


def _split_files(snapshot_dir: str) -> list[tuple[str, str]]:
    files = []
    for split in DOCUMENT_SPLITS:
        pattern = _join(snapshot_dir, split, "*.parquet")
        files += [(m.path, split) for m in FileSystems.match([pattern])[0].metadata_list]
    return sorted(files)


def _write_metrics(items: list, path: str) -> str:
    payload = json.dumps(assemble(items), sort_keys=True, indent=1, default=float).encode("utf-8")
    _write_bytes(path, payload)
    return path


def build_metrics_pipeline(pipeline: beam.Pipeline, snapshot_dir: str, config: ReportConfig, out_path: str):
    files = _split_files(snapshot_dir)
    docs = (pipeline
            | "SnapshotFiles" >> beam.Create(files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadDocuments" >> beam.ParDo(ReadSplitFileFn()))
    return (docs
            | "Metrics" >> SnapshotMetrics(config)
            | "Collect" >> beam.combiners.ToList()
            | "WriteMetrics" >> beam.Map(_write_metrics, out_path))


def compute_metrics(snapshot_dir: str, config: ReportConfig, out_path: str,
                    pipeline_args: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the metrics pipeline over one snapshot; the figures land in ``out_path`` and are returned."""
    options, runner_name = runner.pipeline_options(list(pipeline_args or []))
    pipeline = runner.make_pipeline(options, runner_name)
    build_metrics_pipeline(pipeline, snapshot_dir, config, out_path)
    parent, name = snapshot_dir.rstrip("/").rsplit("/", 1) if "/" in snapshot_dir.rstrip("/") else (".", snapshot_dir)
    try:
        runner.run_and_wait(pipeline, runner_name, progress_dir=runner.progress_dir_for(parent, f"report-{name}",
                                                                                      runner_name))
    except runner.JobFailed as e:
        raise RuntimeError(f"report pipeline for {snapshot_dir}: {e}") from e
    return json.loads(_read_text(out_path))


# --------------------------------------------------------------------------------------------------- the report


def _values_for(manifest: dict, config: ReportConfig, metrics: dict) -> dict:
    return trend_values(metrics, config.synthetic_thresholds, manifest)


def _earlier_values(earlier_dir: str, manifest: dict, config: ReportConfig, cache_dir: str,
                    pipeline_args) -> dict:
    own = _join(earlier_dir, REPORT_DIR, REPORT_JSON)
    if FileSystems.exists(own):
        return json.loads(_read_text(own))["trend_values"]
    cached = _join(cache_dir, f"{manifest['run_id']}.json")
    if FileSystems.exists(cached):
        return json.loads(_read_text(cached))["trend_values"]
    metrics = compute_metrics(earlier_dir, config, _join(cache_dir, f"{manifest['run_id']}.metrics.json"),
                              pipeline_args)
    values = _values_for(manifest, config, metrics)
    _write_bytes(cached, json.dumps({"run_id": manifest["run_id"], "snapshot": earlier_dir,
                                     "trend_values": values}, indent=1, sort_keys=True).encode("utf-8"))
    return values


def write_report(snapshot_dir: str, previous: Optional[int] = None, config: Optional[ReportConfig] = None,
                 pipeline_args: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Compute, draw and write the report of a published snapshot; returns the ``report.json`` content.

    ``previous``: how many earlier snapshots to show in the trends (default ``config.history``).
    """
    config = config or ReportConfig()
    config.validate()
    manifest = read_manifest(snapshot_dir)
    limit = config.history if previous is None else previous
    out_dir = _join(snapshot_dir, REPORT_DIR)
    metrics_path = _join(out_dir, "metrics.json")
    metrics = compute_metrics(snapshot_dir, config, metrics_path, pipeline_args)

    history = []
    for earlier_dir, earlier_manifest in reversed(snapshot_history(snapshot_dir, limit)):
        history.append({"run_id": earlier_manifest["run_id"], "snapshot": earlier_dir,
                        "values": _earlier_values(earlier_dir, earlier_manifest, config,
                                                  _join(out_dir, "history"), pipeline_args)})
    values = _values_for(manifest, config, metrics)
    history.append({"run_id": manifest["run_id"], "snapshot": snapshot_dir, "values": values})
    flags = drift_flags([(h["run_id"], h["values"]) for h in history], config.max_rise, config.max_fall)

    report = {
        "run_id": manifest["run_id"],
        "snapshot": snapshot_dir,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "views": {INPUT: "train + anchor_holdout + rejected (every document that entered curation)",
                  TRAIN: "the train split", ANCHOR_HOLDOUT: "reserved human anchors",
                  REJECTED: "documents a stage rejected"},
        "rejected_written": bool(((manifest.get("config") or {}).get("sink") or {}).get("write_rejected", True)),
        "metrics": metrics,
        "manifest_weights": manifest.get("weights"),
        "trend_values": values,
        "history": history,
        "drift": flags,
        # One line that names the risk (anchor share of sampled tokens, est. synthetic share, trend), with its
        # thresholds: transforms/collapse_risk.py.
        "collapse_risk": collapse_risk(values, history[-2]["values"] if len(history) > 1 else None),
        "sampling": _sampling_statement(metrics, config),
        # What the run found wrong with its inputs or settings (no anchors, missing timestamps, ...).
        "warnings": list(manifest.get("warnings") or []),
    }
    plots = render_plots(report, config)
    for name, png in plots.items():
        _write_bytes(_join(out_dir, name), png)
    report["plots"] = sorted(plots)
    _write_bytes(_join(out_dir, REPORT_HTML), render_html(report, plots).encode("utf-8"))
    _write_bytes(_join(out_dir, REPORT_JSON),
                 json.dumps(report, indent=1, sort_keys=True, default=float, ensure_ascii=False).encode("utf-8"))
    FileSystems.delete([metrics_path])
    return report


def _sampling_statement(metrics: dict, config: ReportConfig) -> dict[str, Any]:
    out = {"method": "hash-based: documents with stable_fraction(doc_id, 'report-sample') < rate, "
                     f"rate = min(1, sample_size / documents in the view); each cut to its first "
                     f"{config.max_tokens_per_document} words",
           "sampled_metrics": [f"distinct_{n}" for n in NGRAM_ORDERS] + ["compression_ratio"],
           "exact_metrics": ["languages", "synthetic", "anchors", "sample_weight", "cluster_sizes",
                             "unigram_entropy", "tail_mass", "rare_vocabulary_coverage"]}
    for view in (INPUT, TRAIN):
        sample = metrics["sample"].get(view) or {}
        out[view] = {"rate": metrics["sampling"].get(view), "documents": sample.get("documents", 0),
                     "of_documents": (metrics["documents"].get(view) or {}).get("documents", 0),
                     "tokens": sample.get("tokens", 0)}
    return out


# --------------------------------------------------------------------------------------------------- drawing


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    # Fixed metadata keeps the PNG bytes a function of the figures alone.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def render_plots(report: dict[str, Any], config: ReportConfig) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    documents = report["metrics"]["documents"]
    train, inp = documents.get(TRAIN) or {}, documents.get(INPUT) or {}
    plots: dict[str, bytes] = {}

    # Composition: what the input became, and the anchors inside train.
    fig, ax = plt.subplots(figsize=(8, 2.8))
    anchors = (train.get("anchors") or {}).get("documents", 0)
    parts = [("train: anchors", anchors, "#2a6fb0"), ("train: other", train.get("documents", 0) - anchors, "#9ecae1"),
             ("anchor_holdout", (documents.get(ANCHOR_HOLDOUT) or {}).get("documents", 0), _COLORS[ANCHOR_HOLDOUT]),
             ("rejected", (documents.get(REJECTED) or {}).get("documents", 0), _COLORS[REJECTED])]
    left = 0
    for label, n, color in parts:
        ax.barh([0], [n], left=left, color=color, label=f"{label}: {n:,}")
        left += n
    ax.set_yticks([])
    ax.set_xlabel("documents")
    ax.set_title(f"Input composition ({inp.get('documents', 0):,} documents)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    plots["composition.png"] = _figure_png(fig)

    # Languages: document shares, train against input.
    fig, ax = plt.subplots(figsize=(8, 3.5))
    langs = list((inp.get("languages") or {}).keys())[:15]
    x = np.arange(len(langs))
    for offset, (view, stats) in zip((-0.2, 0.2), ((INPUT, inp), (TRAIN, train))):
        total = max(stats.get("documents", 0), 1)
        ax.bar(x + offset, [(stats.get("languages") or {}).get(l, 0) / total for l in langs], width=0.4,
               color=_COLORS[view], label=view)
    ax.set_xticks(x, langs, rotation=45, fontsize=8)
    ax.set_ylabel("share of documents")
    ax.set_title(f"Language distribution (top {len(langs)} of {len(inp.get('languages') or {})})")
    ax.legend()
    fig.tight_layout()
    plots["languages.png"] = _figure_png(fig)

    # Synthetic scores.
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for view, stats in ((INPUT, inp), (TRAIN, train)):
        synthetic = stats.get("synthetic") or {}
        hist = synthetic.get("histogram")
        if not hist or not synthetic.get("scored_documents"):
            continue
        edges, counts = np.array(hist["edges"]), np.array(hist["counts"], dtype=float)
        ax.stairs(counts / counts.sum(), edges, color=_COLORS[view], linewidth=2, label=view)
    for t in config.synthetic_thresholds:
        share = ((train.get("synthetic") or {}).get("share_above") or {}).get(threshold_name(t))
        ax.axvline(t, color="grey", linestyle="--", linewidth=1)
        if share is not None:
            ax.text(t, ax.get_ylim()[1] * 0.95, f" >{t:g}: {share:.1%}", fontsize=8, va="top")
    ax.set_xlabel("synthetic_score")
    ax.set_ylabel("share of documents")
    ax.set_title("Synthetic-score histogram (shares above thresholds: train)")
    ax.legend(loc="center left")
    fig.tight_layout()
    plots["synthetic.png"] = _figure_png(fig)

    # Sample weights.
    fig, ax = plt.subplots(figsize=(8, 3.2))
    weights = train.get("sample_weight") or {}
    if weights.get("documents"):
        hist = weights["histogram"]
        ax.stairs(hist["counts"], hist["edges"], fill=True, color=_COLORS[TRAIN], alpha=0.8)
        occupied = [i for i, c in enumerate(hist["counts"]) if c]
        ax.set_xlim(hist["edges"][occupied[0]] / 1.5, hist["edges"][occupied[-1] + 1] * 1.5)
        ax.set_title(f"Sample-weight distribution (train, mean {weights['mean']:.3f}, "
                     f"range {weights['min']:.3g}..{weights['max']:.3g})")
    else:
        ax.set_title("Sample-weight distribution: no weights (rarity stage off)")
    ax.set_xscale("log")
    ax.set_xlabel("sample_weight")
    ax.set_ylabel("documents")
    fig.tight_layout()
    plots["weights.png"] = _figure_png(fig)

    # Near-duplicate cluster sizes.
    fig, ax = plt.subplots(figsize=(8, 3.2))
    sizes = train.get("cluster_sizes") or {}
    if sizes:
        keys = sorted(sizes, key=int)
        ax.bar([str(k) for k in keys], [sizes[k] for k in keys], color=_COLORS[TRAIN])
        ax.set_yscale("log")
        ax.set_title("Near-duplicate cluster size of train documents (1 = unique)")
    else:
        ax.set_title("Near-duplicate cluster sizes: none recorded (dedup stage off)")
    ax.set_xlabel("cluster size")
    ax.set_ylabel("documents")
    fig.tight_layout()
    plots["clusters.png"] = _figure_png(fig)

    # Diversity and tail, train against input.
    vocabulary = report["metrics"].get("vocabulary") or {}
    sample = report["metrics"]["sample"]
    panels = [("distinct-n\n(sampled)", [f"distinct_{n}" for n in NGRAM_ORDERS], sample),
              ("unigram entropy\n(bits)", ["unigram_entropy"], vocabulary),
              ("Zipf tail mass", ["tail_mass"], vocabulary),
              ("rare-vocabulary\ncoverage", ["rare_vocabulary_coverage"], vocabulary),
              ("compression ratio\n(sampled)", ["compression_ratio"], sample)]
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.2), gridspec_kw={"width_ratios": [3, 1, 1, 1, 1]})
    for ax, (title, keys, source) in zip(axes, panels):
        x = np.arange(len(keys))
        for offset, view in ((-0.2, INPUT), (0.2, TRAIN)):
            stats = source.get(view) or {}
            ax.bar(x + offset, [stats.get(k) or 0 for k in keys], width=0.4, color=_COLORS[view], label=view)
        ax.set_xticks(x, [k.replace("distinct_", "n=") for k in keys] if len(keys) > 1 else [""])
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle("Diversity and tail: train against input")
    fig.tight_layout()
    plots["diversity.png"] = _figure_png(fig)

    history = report["history"]
    if len(history) >= 2:
        metrics = list(config.trend_metrics())
        flagged = {f["metric"] for f in report["drift"]}
        columns = 4
        rows = -(-len(metrics) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(12, 2.2 * rows), squeeze=False)
        labels = [h["run_id"] for h in history]
        for ax, metric in zip(axes.flat, metrics):
            ys = [h["values"].get(metric) for h in history]
            xs = [i for i, y in enumerate(ys) if y is not None]
            color = "#d62728" if metric in flagged else _COLORS[TRAIN]
            ax.plot(xs, [ys[i] for i in xs], marker="o", color=color)
            ax.set_title(metric + ("  DRIFT" if metric in flagged else ""), fontsize=9, color=color)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        fig.suptitle(f"Trends over {len(history)} snapshots (train split; red = beyond its drift bound)")
        fig.tight_layout()
        plots["trends.png"] = _figure_png(fig)
    return plots


def _fmt(value: Any) -> str:
    """Numbers as the report shows them; the template escapes the result."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_CAPTIONS = {
    "composition.png": "Where the input went, and the human anchors inside train.",
    "languages.png": "Language distribution, share of documents.",
    "synthetic.png": "Synthetic-score histogram; dashed lines are the configured thresholds.",
    "weights.png": "Distribution of training weights in train.",
    "clusters.png": "Near-duplicate cluster sizes of the surviving train documents.",
    "diversity.png": "Diversity and tail metrics of train against the input.",
    "trends.png": "Each train metric across snapshots, oldest first.",
}
TEMPLATE = "report.html.j2"


def _template():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("tailguard.pipelines", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template(TEMPLATE)


def _verdict(risk: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The collapse-risk verdict as the template shows it: its line, flagged unless the risk is low."""
    if not risk:
        return None
    return {"at_risk": risk.get("level") != "low", "line": risk.get("line", "")}


def render_html(report: dict[str, Any], plots: dict[str, bytes]) -> str:
    """One file, no external resources: plots are inlined as data URIs (templates/report.html.j2)."""
    sampling = report["sampling"]
    vocabulary = report["metrics"].get("vocabulary") or {}
    sample = report["metrics"]["sample"]
    diversity_rows = [
        (label, (source.get(INPUT) or {}).get(key), (source.get(TRAIN) or {}).get(key))
        for label, key, source in (
            [("unigram entropy (bits)", "unigram_entropy", vocabulary), ("Zipf tail mass", "tail_mass", vocabulary),
             ("rare-vocabulary coverage", "rare_vocabulary_coverage", vocabulary),
             ("compression ratio (sampled)", "compression_ratio", sample)]
            + [(f"distinct-{n} (sampled)", f"distinct_{n}", sample) for n in NGRAM_ORDERS])]
    figures = [(name, "data:image/png;base64," + base64.b64encode(png).decode("ascii"), _CAPTIONS.get(name, ""))
               for name, png in sorted(plots.items(), key=lambda kv: list(_CAPTIONS).index(kv[0]))]
    sample_note = " ".join(
        f"{view}: {sampling[view]['documents']:,} of {sampling[view]['of_documents']:,} documents "
        f"({sampling[view]['tokens']:,} words)." for view in (INPUT, TRAIN))
    return _template().render(
        report=report, fmt=_fmt, diversity_rows=diversity_rows, figures=figures, sample_note=sample_note,
        tracked=sorted(report["trend_values"].items()), verdict=_verdict(report.get("collapse_risk")),
        warnings=report.get("warnings") or [])


# --------------------------------------------------------------------------------------------------- command line


def add_arguments(parser) -> None:
    parser.add_argument("snapshot", metavar="SNAPSHOT",
                        help="published snapshot directory (or an output root whose LATEST names one)")
    parser.add_argument("--previous", type=int, metavar="N",
                        help="earlier snapshots to show in the trends, following each manifest's `previous` "
                             "(default: report.history)")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML config whose `report` section to use (default: the snapshot's own config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a report key, e.g. --set report.sample_size=5000 (repeatable)")


def load_report_config(snapshot_dir: str, path: Optional[str], overrides: Sequence[str]) -> ReportConfig:
    """The ``report`` section: from ``--config`` if given, else the snapshot's resolved config; then ``--set``."""
    import yaml

    from tailguard.pipelines.config import apply_override, build

    if path:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError("--config", f"cannot read {path}: {e.strerror}") from None
    else:
        raw = {"report": dict((read_manifest(snapshot_dir).get("config") or {}).get("report") or {})}
    if not isinstance(raw, dict):
        raise ConfigError("<root>", "the config must be a mapping of sections")
    section = {"report": dict(raw.get("report") or {})}
    for item in overrides:
        if not item.startswith("report."):
            raise ConfigError(item.partition("=")[0], "`tailguard report` takes only report.* overrides")
        apply_override(section, item)
    return build(ReportConfig, section["report"], "report")


def main(args, pipeline_args: Optional[Sequence[str]] = None) -> int:
    snapshot = resolve_snapshot(args.snapshot)
    publish.read_published_manifest(snapshot, "SNAPSHOT")
    config = load_report_config(snapshot, args.config, args.overrides)
    if args.previous is not None and args.previous < 0:
        raise ConfigError("--previous", f"must be >= 0, got {args.previous}")
    report = write_report(snapshot, previous=args.previous, config=config, pipeline_args=pipeline_args)
    out_dir = _join(snapshot, REPORT_DIR)
    print(f"report: {out_dir}/{REPORT_HTML}  ({len(report['plots'])} plots, "
          f"{len(report['history'])} snapshot(s) in the trends, {len(report['drift'])} drift flag(s))")
    for flag in report["drift"]:
        print(f"  DRIFT {flag['metric']}: {flag['from']:.4f} -> {flag['to']:.4f} against the {flag['against']} "
              f"snapshot {flag['against_run_id']} (bound {flag['bound']})")
    return 0
