"""Run lifecycle on the driver: prepare the run directory, then publish it -- manifest first, ``LATEST`` last.

A run directory is complete exactly when its ``manifest.json`` exists. Publishing checks that the counts
reconcile (every record read is in exactly one output) and that the files hold the rows the pipeline
counted; a run that fails either check gets no manifest and does not move ``LATEST``.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
import sys
import uuid
from typing import Any, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import tailguard
from tailguard.pipelines import card
from tailguard.transforms.document import ANCHOR_HOLDOUT, DEAD_LETTER, REJECTED, TRAIN
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.sink import CARRIED, COUNTS_FILE, FILES_FILE, STATS_DIR, SinkConfig, _atomic_write, write_empty_documents_file

MANIFEST = "manifest.json"
LATEST = "LATEST"
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunFailed(RuntimeError):
    """The pipeline finished but the run must not be published."""


def default_run_id(now: Optional[dt.datetime] = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError("--run-id", f"{run_id!r} must be 1-128 characters of letters, digits, '.', '_', '-'")
    return run_id


def join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    payload = text.encode("utf-8")
    _atomic_write(path, lambda stream: stream.write(payload))


def check_output_writable(output: str) -> None:
    """Fail before the pipeline starts if the output location cannot be written."""
    probe = join(output, f".tailguard-write-check-{uuid.uuid4().hex}")
    try:
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as e:
        raise ConfigError("--output", f"cannot write to {output!r}: {type(e).__name__}: {e}") from None


def check_previous(previous: str) -> dict[str, Any]:
    """The previous snapshot must be a published run (its manifest says so) whose files are the ones listed."""
    return read_published_manifest(previous, "--previous")


# Folders of a snapshot whose every file the manifest lists (report/, _stats/ and the card are derived views).
DATA_DIRS = (TRAIN, ANCHOR_HOLDOUT, REJECTED, DEAD_LETTER, "index")


def snapshot_file_problems(snapshot_dir: str, manifest: dict[str, Any]) -> list[str]:
    """Files the manifest lists that are missing or of another size, and data files it does not list.

    Sizes, not checksums: this runs before every ``--previous`` and ``report`` and must stay cheap at any size;
    the SHA-256 values in the manifest are there for a full audit."""
    root = snapshot_dir.rstrip("/")
    listed = {f["path"]: f.get("bytes") for f in manifest.get("files", [])}
    found = {}
    for folder in DATA_DIRS:
        for metadata in FileSystems.match([join(root, folder, "**")])[0].metadata_list:
            found[metadata.path[len(root) + 1:]] = metadata.size_in_bytes
    problems = [f"missing file {path}" for path in sorted(set(listed) - set(found))]
    problems += [f"file {path} has {found[path]} bytes, the manifest says {size}"
                 for path, size in sorted(listed.items()) if path in found and size is not None and found[path] != size]
    problems += [f"extra file {path} (not in the manifest)" for path in sorted(set(found) - set(listed))]
    return problems


def read_published_manifest(snapshot_dir: str, key: str) -> dict[str, Any]:
    """The manifest of a published snapshot whose data files are exactly the ones it lists; else a ConfigError
    naming ``key`` (the option that pointed here) and every file that is missing, resized or extra."""
    path = join(snapshot_dir, MANIFEST)
    if not FileSystems.exists(path):
        raise ConfigError(key, f"{snapshot_dir!r} is not a published snapshot (no {MANIFEST})")
    try:
        manifest = json.loads(read_text(path))
    except (ValueError, OSError) as e:
        raise ConfigError(key, f"cannot read {path}: {e}") from None
    problems = snapshot_file_problems(snapshot_dir, manifest)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ConfigError(key, f"snapshot {snapshot_dir!r} does not match its {MANIFEST}: {shown}")
    return manifest


def resolve_previous(previous: str) -> str:
    """``--previous`` may name a snapshot directory or an output root holding ``LATEST``."""
    latest = join(previous, LATEST)
    if not FileSystems.exists(join(previous, MANIFEST)) and FileSystems.exists(latest):
        return join(previous, read_text(latest).strip())
    return previous


def published_run_ids(output: str) -> list[str]:
    root = output.rstrip("/")
    matched = FileSystems.match([join(root, "*", MANIFEST)])[0].metadata_list
    return sorted({m.path[len(root) + 1:].split("/")[0] for m in matched})


def retract_latest(output: str, run_id: str) -> None:
    """Before ``run_id`` is unpublished for a re-run, LATEST falls back to the newest other published run (or
    disappears), so a re-run killed half-way never leaves LATEST naming a directory without a manifest."""
    latest = join(output, LATEST)
    if not FileSystems.exists(latest) or read_text(latest).strip() != run_id:
        return
    others = []
    for other in published_run_ids(output):
        if other != run_id:
            others.append((json.loads(read_text(join(output, other, MANIFEST))).get("finished_at", ""), other))
    if others:
        write_text(latest, max(others)[1] + "\n")
    else:
        FileSystems.delete([latest])


def prepare_run_dir(run_dir: str) -> None:
    """Re-running a run id replaces it: unpublish first (LATEST moved off it, manifest gone), then clear it."""
    output, run_id = run_dir.rstrip("/").rsplit("/", 1)
    retract_latest(output, run_id)
    manifest = join(run_dir, MANIFEST)
    if FileSystems.exists(manifest):
        FileSystems.delete([manifest])
    leftovers = [m.path for m in FileSystems.match([join(run_dir, "**")])[0].metadata_list]
    for start in range(0, len(leftovers), 1000):
        FileSystems.delete(leftovers[start: start + 1000])


def stage_counters(result) -> dict[str, dict[str, int]]:
    """Beam counters grouped by stage (namespace); committed values where the runner has them."""
    out: dict[str, dict[str, int]] = {}
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # a runner without metrics support still publishes data-derived counts
        return out
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        namespace, name = counter.key.metric.namespace, counter.key.metric.name
        if namespace.startswith("apache_beam") or namespace.startswith("beam"):
            continue
        stage = out.setdefault(namespace, {})
        stage[name] = stage.get(name, 0) + int(value or 0)
    return {stage: dict(sorted(values.items())) for stage, values in sorted(out.items())}


def nest_counts(rows: list[list]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for group, key, value in rows:
        nested.setdefault(group, {})[key] = nested.setdefault(group, {}).get(key, 0) + int(value)
    return nested


def reconcile(counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """in = kept + rejected (every reason, duplicates included) + dead letters."""
    splits = counts.get("splits", {})
    inputs = counts.get("input", {})
    read = sum(v for k, v in inputs.items() if k.startswith("read."))
    carried = inputs.get(CARRIED, 0)
    outputs = {name: splits.get(name, 0) for name in (TRAIN, ANCHOR_HOLDOUT, REJECTED, DEAD_LETTER)}
    total_out = sum(outputs.values())
    rejected_reasons = sum(counts.get("rejected_by_reason", {}).values())
    dead_reasons = sum(counts.get("dead_letter_by_reason", {}).values())
    ok = (read + carried == total_out and rejected_reasons == outputs[REJECTED]
          and dead_reasons == outputs[DEAD_LETTER])
    return {
        "records_read": read,
        "carried_forward": carried,
        "in": read + carried,
        "out": outputs,
        "out_total": total_out,
        "reconciled": ok,
        "equation": f"{read} read + {carried} carried = {outputs[TRAIN]} train + {outputs[ANCHOR_HOLDOUT]} "
                    f"anchor_holdout + {outputs[REJECTED]} rejected + {outputs[DEAD_LETTER]} dead_letter"
                    f" ({'holds' if ok else 'DOES NOT HOLD'})",
    }


def _anchor_shortfall(weights: Optional[dict]) -> Optional[str]:
    """With ``anchors.enforce``, a train split below the minimum anchor share must not be published."""
    if not weights or weights.get("anchor_share_met", True) or not weights.get("anchor_enforce"):
        return None
    if weights.get("normalize") == "anchor_mean":
        limit = "even with every other document at rarity.min_weight (lower it, or the share)"
    else:
        limit = "even with anchors at the ceiling min(rarity.max_weight, rarity.max_epochs)"
    return (f"anchor token share {weights['anchor_token_share']:.4f} < anchors.min_share "
            f"{weights['anchor_min_share']} {limit} (anchors.enforce is true)")


def _cap_note(cap: Optional[dict]) -> str:
    if not cap or not cap.get("binds"):
        return ""
    return (f"; repetition cap binds: {cap['capped_documents']:,} documents held at {cap['ceiling']:g} epochs, "
            f"{cap['capped_token_mass_share']:.1%} of the uncapped weighted tokens refused")


def publish(*, output: str, run_dir: str, run_id: str, sink: SinkConfig, resolved_config: dict[str, Any],
            config_digest: str, inputs: dict[str, int], previous: Optional[str], counters: dict,
            started: dt.datetime, finished: dt.datetime, runner: str,
            report: Optional[str] = None) -> dict[str, Any]:
    stats = join(run_dir, STATS_DIR)
    counts = nest_counts(json.loads(read_text(join(stats, COUNTS_FILE))))
    extra_stats = {name: json.loads(read_text(join(stats, f"{name}.json")))
                   for name in ("weights",) if FileSystems.exists(join(stats, f"{name}.json"))}
    files = json.loads(read_text(join(stats, FILES_FILE)))
    present = {f["split"] for f in files}
    wanted = [TRAIN, ANCHOR_HOLDOUT] + ([REJECTED] if sink.write_rejected else [])
    for split in wanted:
        if split not in present:
            files.append(write_empty_documents_file(run_dir, split, sink))
    files.sort(key=lambda f: f["path"])

    balance = reconcile(counts)
    rows_in_files: dict[str, int] = {}
    for f in files:
        rows_in_files[f["split"]] = rows_in_files.get(f["split"], 0) + f["rows"]
    expected_rows = dict(counts.get("splits", {}))
    expected_rows.update(counts.get("rows", {}))  # materialised repeats: files hold more rows than documents
    file_mismatches = {
        split: {"counted": n, "in_files": rows_in_files.get(split, 0)}
        for split, n in expected_rows.items()
        if (split != REJECTED or sink.write_rejected) and rows_in_files.get(split, 0) != n
    }
    for f in files:
        f["path"] = f["path"][len(run_dir.rstrip("/")) + 1:] if f["path"].startswith(run_dir) else f["path"]

    manifest = {
        "run_id": run_id,
        "status": "complete",
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "wall_seconds": round((finished - started).total_seconds(), 3),
        "runner": runner,
        "inputs": inputs,
        "previous": previous,
        "counts": balance,
        "rejected_by_reason": counts.get("rejected_by_reason", {}),
        "dead_letter_by_reason": counts.get("dead_letter_by_reason", {}),
        "index_rows": counts.get("index", {}),
        "languages": {split: counts.get(f"languages.{split}", {}) for split in (TRAIN, ANCHOR_HOLDOUT)},
        "weights": extra_stats.get("weights"),
        # Written right after this manifest (the report reads the published snapshot and its history).
        "report": report,
        "stage_counters": counters,
        "files": files,
        "config": resolved_config,
        "config_sha256": config_digest,
        "versions": {
            "tailguard": tailguard.__version__,
            "apache_beam": beam.__version__,
            "python": platform.python_version(),
        },
    }
    manifest["warnings"] = run_warnings(manifest)
    shortfall = _anchor_shortfall(manifest["weights"])
    if not balance["reconciled"] or file_mismatches or shortfall:
        manifest["status"] = "failed"
        manifest["file_row_mismatches"] = file_mismatches
        write_text(join(stats, "manifest.unpublished.json"), json.dumps(manifest, indent=1, sort_keys=True))
        problem = (balance["equation"] if not balance["reconciled"]
                   else f"file rows differ: {file_mismatches}" if file_mismatches else shortfall)
        raise RunFailed(f"run {run_id} not published: {problem}; details in {stats}/manifest.unpublished.json")
    manifest["card"] = write_card(run_dir, manifest, report)
    write_text(join(run_dir, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False))
    write_text(join(output, LATEST), run_id + "\n")
    return manifest


def write_card(run_dir: str, manifest: dict[str, Any], report: Optional[str]) -> dict[str, dict[str, Any]]:
    """The dataset card and Croissant metadata beside the manifest; their sizes and checksums for it."""
    written = {}
    for name, payload in card.card_files(manifest, report).items():
        writer = _atomic_write(join(run_dir, name), lambda stream, data=payload: stream.write(data))
        written[name] = {"bytes": writer.size, "sha256": writer.sha256.hexdigest()}
    return written


def run_warnings(manifest: dict[str, Any]) -> list[str]:
    """What a user should fix although the run succeeded, each naming the setting to change."""
    warnings = []
    ingest = manifest.get("stage_counters", {}).get("ingest", {})
    documents = ingest.get("in", 0) - sum(n for k, n in ingest.items() if k.startswith("dead_letter."))
    undated = ingest.get("no_timestamp", 0)
    if documents > 0 and undated * 2 > documents:
        warnings.append(
            f"most documents have no timestamp ({undated:,} of {documents:,}): no field of the input was "
            f"recognised as one -- set ingest.sources[].timestamp_field (or a fixed ingest.sources[].timestamp), "
            f"or ingest.format for a known corpus layout; without it anchors come only from verified tags")
    disagree = ingest.get("timestamp_fields_disagree", 0)
    if disagree:
        warnings.append(f"{disagree:,} documents have two recognised timestamp fields that disagree; the first "
                        f"documented one was used (README, 'Common corpus formats'), or map "
                        f"ingest.sources[].timestamp_field explicitly")
    config = manifest.get("config") or {}
    anchors_config = config.get("anchors") or {}
    if anchors_config.get("enabled", True) and manifest["counts"]["out_total"] > 0:
        weights = manifest.get("weights") or {}
        anchors = manifest["counts"]["out"].get(ANCHOR_HOLDOUT, 0) + (
            weights["train_anchors"] if "train_anchors" in weights
            else manifest.get("stage_counters", {}).get("anchors", {}).get("anchors", 0))
        if anchors == 0:
            warnings.append(
                f"no document became an anchor: none is from a source tagged "
                f"{anchors_config.get('verified_tags', ['verified_human'])} (ingest.sources[].tags) or has a "
                f"source_timestamp before anchors.cutoff ({anchors_config.get('cutoff')}); set "
                f"ingest.sources[].tags or timestamps (ingest.sources[].timestamp_field, ingest.format)")
    return warnings


def print_summary(manifest: dict[str, Any], run_dir: str, out=sys.stdout) -> None:
    """Per stage: documents in, out, rejected by reason, busy time, docs/s -- then the balance."""
    counters = manifest["stage_counters"]
    header = ("stage", "in", "out", "busy s", "docs/s", "rejected / dead-lettered (reason: n)")
    rows = []
    for stage, values in counters.items():
        if "in" not in values:
            continue
        busy = values.get("busy_us", 0) / 1e6
        reasons = [f"{name}: {n:,}" for name, n in sorted(values.items())
                   if name.startswith(("rejected.", "dead_letter."))] or ["-"]
        rate = f"{values['in'] / busy:,.0f}" if busy > 0 else "-"
        rows.append((stage, f"{values['in']:,}", f"{values.get('kept', 0):,}", f"{busy:.2f}", rate, reasons))
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(5)]
    line = lambda cells: "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))
    print("", file=out)
    print(line(header[:5]) + "  " + header[5], file=out)
    print(line(["-" * w for w in widths]) + "  " + "-" * len(header[5]), file=out)
    for row in rows:
        print(line(row[:5]) + "  " + row[5][0], file=out)
        for reason in row[5][1:]:
            print(" " * (sum(widths) + 2 * 5) + reason, file=out)
    # The data-derived counts behind the balance, every reason itemised (stage counters may miss some).
    for title, by_reason in (("rejected", manifest.get("rejected_by_reason") or {}),
                             ("dead letters", manifest.get("dead_letter_by_reason") or {})):
        if by_reason:
            print("", file=out)
            print(f"{title} by reason ({sum(by_reason.values()):,}):", file=out)
            width = max(len(reason) for reason in by_reason)
            for reason, n in sorted(by_reason.items(), key=lambda item: (-item[1], item[0])):
                print(f"  {reason.ljust(width)}  {n:>10,}", file=out)
    balance = manifest["counts"]
    print("", file=out)
    print(f"balance: {balance['equation']}", file=out)
    weights = manifest.get("weights")
    if weights and weights.get("train_documents"):
        quantiles = weights.get("weight_quantiles", {})
        met = "met" if weights["anchor_share_met"] else f"SHORT by {weights['anchor_share_shortfall']:.3f}"
        print(f"anchors: {weights['train_anchors']:,} in train, {balance['out'][ANCHOR_HOLDOUT]:,} held out; "
              f"anchor token share {weights['anchor_token_share']:.3f} (min {weights['anchor_min_share']}: {met}, "
              f"anchor multiplier {weights['anchor_multiplier']:.2f})", file=out)
        anchor_mean = weights.get("anchor_mean_weight")
        normalized = (f" (normalize: {weights['normalize']}, anchors' mean {anchor_mean:.4f})"
                      if weights.get("normalize") == "anchor_mean" and anchor_mean is not None else "")
        ceiling = (weights.get("repetition_cap") or {}).get("ceiling", weights["max_weight"])
        print(f"weights: mean {weights['mean_weight']:.4f}{normalized}, "
              f"p10 {quantiles.get('p10', float('nan')):.3g}, "
              f"median {quantiles.get('p50', float('nan')):.3g}, p90 {quantiles.get('p90', float('nan')):.3g}, "
              f"in [{weights['min_weight']}, {ceiling}]"
              f"{_cap_note(weights.get('repetition_cap'))}", file=out)
    for warning in manifest.get("warnings", []):
        print(f"warning: {warning}", file=out)
    print(f"wall time: {manifest['wall_seconds']:.1f} s "
          f"({balance['in'] / max(manifest['wall_seconds'], 1e-9):,.0f} docs/s end to end)", file=out)
    print(f"snapshot: {run_dir}  (manifest.json written; LATEST -> {manifest['run_id']})", file=out)
