"""The synthetic-text stage: throughput (documents per CPU-second, all signals) and detection quality.

    python benchmarks/synthetic.py [--docs 20000] [--chars 2000] [--skip-quality]

Measures (1) ``score_texts`` -- exactly what the stage's DoFn runs per batch: text signals, the language
check, the fastText classifier and the combiner -- over ~2 KB English documents in batches of 512, and
(2) the whole ``ScoreSynthetic`` transform on Beam's in-process FnApiRunner (Beam's per-element overhead
included). Both use CPU time of this process (``time.process_time``), not wall time, because the machine's
cores are shared. Documents are cut from the human and machine texts of ../shared/data/synthetic (falling
back to the repository's test fixture when that is absent).

Quality (when ../shared/data is present), all through the stage's own scoring code with the shipped model:
AUROC, F1 and false-positive rate at the drop threshold on synthetic/dev.jsonl (never trained or calibrated
on), recall on synthetic/paraphrase-attacks.jsonl, and the false-positive rate on human text from other
domains and centuries (../shared/data/human: Wikipedia, a novel, two centuries of speeches) cut into ~2 KB
documents. Writes benchmarks/results/synthetic.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tailguard.transforms.synthetic import (ScoreSynthetic, SyntheticConfig, SyntheticDetector,  # noqa: E402
                                            score_texts, synthetic_downweight)
import numpy as np  # noqa: E402

from tailguard.transforms.text import normalize_text  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

SOURCES = [ROOT.parent / "shared" / "data" / "synthetic" / "dev.jsonl",
           ROOT.parent / "shared" / "data" / "synthetic" / "train.jsonl",
           ROOT / "tests" / "fixtures" / "synthetic_tiny.jsonl"]


def documents(n: int, chars: int) -> list[dict]:
    """``n`` documents of about ``chars`` characters: source texts concatenated, cut at a word boundary."""
    texts = []
    for path in SOURCES:
        if path.exists():
            texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
            break
    docs, buffer, i = [], "", 0
    while len(docs) < n:
        buffer = (buffer + "\n\n" + texts[i % len(texts)]).strip()
        i += 1
        if len(buffer) >= chars:
            cut = buffer.rfind(" ", 0, chars)
            # As the stage receives them in the default pipeline: language already identified.
            docs.append({"text": normalize_text(buffer[:cut if cut > 0 else chars])[0], "lang": "en"})
            buffer = ""
    return docs


def bench_scoring(docs: list[dict], config: SyntheticConfig, detector: SyntheticDetector) -> dict:
    score_texts(docs[:512], detector, config)  # warm-up
    start = time.process_time()
    for i in range(0, len(docs), 512):
        score_texts(docs[i:i + 512], detector, config)
    cpu = time.process_time() - start
    return {"docs": len(docs), "cpu_seconds": cpu, "docs_per_cpu_second": len(docs) / cpu}


def bench_pipeline(docs: list[dict], config: SyntheticConfig) -> dict:
    import apache_beam as beam

    start = time.process_time()
    with beam.Pipeline(runner="FnApiRunner") as p:
        scored = p | beam.Create(docs) | ScoreSynthetic(config)
        _ = scored.kept | beam.combiners.Count.Globally()
    cpu = time.process_time() - start
    return {"docs": len(docs), "cpu_seconds": cpu, "docs_per_cpu_second": len(docs) / cpu}


HUMAN_CORPORA = {
    "wikitext2-test": "wikitext2-test.txt",
    "pride-and-prejudice": "gutenberg-1342-pride-and-prejudice.txt",
    "state-of-the-union-1945-2006": "state_union.jsonl",
    # Used by train-detector to set the drop threshold: not independent.
    "wikitext2-valid (threshold set)": "wikitext2-valid.txt",
    "inaugural-1789-2009 (threshold set)": "inaugural.jsonl",
}
# What broad-dev holds that no training set does (../shared/data/README.md).
UNSEEN_GENERATORS = ("gemini-1.0-pro", "gemini-1.0-pro+paraphrase", "gemini-1.5-pro")
UNSEEN_DOMAINS = ("news-xsum", "qa-pubmed")


def human_corpus_documents() -> dict[str, list[dict]]:
    """Human text of other domains, cut into ~2 KB documents the way ``train-detector`` cuts them."""
    from tailguard.pipelines.train_detector import read_human_documents

    return {name: [{"text": t, "lang": "en"} for t in read_human_documents(SHARED / "human" / file)]
            for name, file in HUMAN_CORPORA.items() if (SHARED / "human" / file).exists()}


def human_report(scored: list, config: SyntheticConfig, threshold: float) -> dict:
    """Per human set: how much of it the detector would act on. Unreliable documents are never acted on, so
    they count as not flagged (the denominator is every document)."""
    from statistics import median

    n = max(len(scored), 1)
    downweights = [synthetic_downweight(s.score, config) if s.reliable else 1.0 for s in scored]
    return {"docs": len(scored), "reliable": sum(s.reliable for s in scored),
            "share_above_drop": sum(s.reliable and s.score > threshold for s in scored) / n,
            "share_above_0.5": sum(s.reliable and s.score > 0.5 for s in scored) / n,
            "median_score": median(s.score for s in scored) if scored else float("nan"),
            "median_downweight": median(downweights) if scored else float("nan"),
            "mean_downweight": sum(downweights) / n}


def unreliable_report(rows: list[dict], scored: list, config: SyntheticConfig) -> dict:
    """Share of a set the detector declines to score, and why: too short, or not English (the stage's
    fallback test; no ``lang`` field)."""
    from tailguard.transforms.synthetic_signals import LEAKAGE, N_WORDS

    n = max(len(rows), 1)
    short = sum(1 for s in scored if not s.reliable and s.signals[N_WORDS] < config.min_words
                and not s.signals[LEAKAGE])
    unreliable = sum(1 for s in scored if not s.reliable)
    return {"unreliable": unreliable / n, "short": short / n, "not_english": (unreliable - short) / n}


def cell_aurocs(rows: list[dict], scores: list[float]) -> dict:
    """AUROC per generator (its texts against the human texts of the (dataset, domain) cells it appears in)
    and per domain (every text of the domain)."""
    from tailguard.pipelines.train_detector import auroc

    cells: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        cells.setdefault((r.get("dataset"), r.get("domain")), []).append(i)
    out: dict[str, dict] = {"generator": {}, "domain": {}}
    for gen in sorted({r.get("generator") for r in rows if r["label"] == "machine"}):
        idx = [i for i, r in enumerate(rows) if r["label"] == "machine" and r.get("generator") == gen]
        where = {(rows[i].get("dataset"), rows[i].get("domain")) for i in idx}
        idx += [i for cell in where for i in cells[cell] if rows[i]["label"] == "human"]
        out["generator"][gen] = {"n": len(idx), "auroc": auroc([rows[i]["label"] == "machine" for i in idx],
                                                               [scores[i] for i in idx])}
    for domain in sorted({r.get("domain") for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.get("domain") == domain]
        out["domain"][domain] = {"n": len(idx), "auroc": auroc([rows[i]["label"] == "machine" for i in idx],
                                                               [scores[i] for i in idx])}
    return out


def score_rows(rows: list[dict], detector: SyntheticDetector, config: SyntheticConfig, extra=()) -> list:
    scored = []
    for start in range(0, len(rows), 512):
        scored.extend(score_texts([{"text": r["text"]} for r in rows[start:start + 512]], detector, config, extra))
    return scored


def bench_quality(detector: SyntheticDetector, extra=()) -> dict:
    """Every quality figure of benchmarks/README.md, through the stage's own scoring code (no ``lang``: the
    stage's English fallback decides the domain) with the default policy."""
    from tailguard.pipelines.train_detector import auroc, rates_at, read_labelled

    threshold = detector.combiner.drop_threshold
    config = SyntheticConfig(model_dir=str(detector.model_dir))  # the default policy: downweight
    result: dict = {"drop_threshold": threshold, "sets": {}, "human": {}}
    for name in ("broad-dev", "dev", "paraphrase-attacks"):
        rows = read_labelled(SHARED / "synthetic" / f"{name}.jsonl")
        scored = score_rows(rows, detector, config, extra)
        scores = [s.score for s in scored]
        labels = [r["label"] == "machine" for r in rows]
        entry = {"n": len(rows), "unreliable": unreliable_report(rows, scored, config),
                 "at_drop": rates_at(np.array(labels), np.array(scores),
                                     threshold)}
        if not all(labels):
            entry["auroc"] = auroc(labels, scores)
            entry.update(cell_aurocs(rows, scores))
            humans = [s for s, r in zip(scored, rows) if r["label"] == "human"]
            result["human"][f"{name} (human rows)"] = human_report(humans, config, threshold)
        else:
            entry["recall_at_drop"] = sum(s.score > threshold for s in scored) / len(scored)
            entry["recall_at_0.5"] = sum(s.score > 0.5 for s in scored) / len(scored)
        if name == "broad-dev":
            entry["worst_unseen_generator"] = min(entry["generator"][g]["auroc"] for g in UNSEEN_GENERATORS)
            entry["worst_unseen_domain"] = min(entry["domain"][d]["auroc"] for d in UNSEEN_DOMAINS)
        result["sets"][name] = entry
    for name, docs in human_corpus_documents().items():
        result["human"][name] = human_report(score_texts(docs, detector, config, extra), config, threshold)
    return result


def print_quality(q: dict) -> None:
    print(f"drop threshold {q['drop_threshold']:.2f}")
    for name, e in q["sets"].items():
        u = e["unreliable"]
        head = (f"{name}: {e['n']} texts, unreliable {u['unreliable']:.1%} (short {u['short']:.1%}, "
                f"not English {u['not_english']:.1%})")
        if "auroc" in e:
            print(f"{head}; AUROC {e['auroc']:.4f}; at drop: recall {e['at_drop']['recall']:.4f}, "
                  f"FPR {e['at_drop']['fpr']:.4f}")
            for kind in ("generator", "domain"):
                print("  " + kind + ": " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in e[kind].items()))
        else:
            print(f"{head}; recall at drop {e['recall_at_drop']:.4f}, at 0.5 {e['recall_at_0.5']:.4f}")
        if "worst_unseen_generator" in e:
            print(f"  worst unseen generator {e['worst_unseen_generator']:.4f}, "
                  f"worst unseen domain {e['worst_unseen_domain']:.4f}")
    for name, h in q["human"].items():
        print(f"human, {name}: {h['docs']} docs, above drop {h['share_above_drop']:.4f}, above 0.5 "
              f"{h['share_above_0.5']:.4f}, median score {h['median_score']:.3f}, median downweight "
              f"{h['median_downweight']:.3f}, mean downweight {h['mean_downweight']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--pipeline-docs", type=int, default=5000)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--model-dir", default="", help="score with this model directory (default: shipped)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "synthetic.json"))
    args = parser.parse_args()
    docs = documents(args.docs, args.chars)
    mean_bytes = sum(len(d["text"].encode()) for d in docs) / len(docs)
    config = SyntheticConfig(model_dir=args.model_dir)
    detector = SyntheticDetector(config.models_path())
    result = {"mean_doc_bytes": mean_bytes, "detector": detector.name,
              "timing": "process CPU time (time.process_time), one process"}
    print(f"documents: {len(docs)} of {mean_bytes:.0f} bytes on average; detector {detector.name}")
    if not args.skip_speed:
        scoring = bench_scoring(docs, config, detector)
        pipeline = bench_pipeline(docs[:args.pipeline_docs], config)
        result.update({"score_texts": scoring, "beam_fnapi": pipeline})
        print(f"score_texts (stage DoFn work):  {scoring['docs_per_cpu_second']:,.0f} docs per CPU-second")
        print(f"ScoreSynthetic on FnApiRunner:   {pipeline['docs_per_cpu_second']:,.0f} docs per CPU-second "
              f"({pipeline['docs']} docs, Beam overhead included)")
    if not args.skip_quality and (SHARED / "synthetic" / "broad-dev.jsonl").exists():
        quality = bench_quality(detector)
        result["quality"] = quality
        print_quality(quality)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
