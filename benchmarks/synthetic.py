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
                                  score_texts)
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


def human_corpus_documents() -> dict[str, list[dict]]:
    """Human text of other domains, cut into ~2 KB documents the way ``train-detector`` cuts them."""
    from tailguard.pipelines.train_detector import read_human_documents

    human = SHARED / "human"
    files = {
        "wikitext2-test": human / "wikitext2-test.txt",
        "pride-and-prejudice": human / "gutenberg-1342-pride-and-prejudice.txt",
        "state-of-the-union-1945-2006": human / "state_union.jsonl",
        # Used by train-detector to set the drop threshold (with wikitext2-valid): not independent.
        "inaugural-1789-2009 (threshold set)": human / "inaugural.jsonl",
    }
    return {name: [{"text": t, "lang": "en"} for t in read_human_documents(path)] for name, path in files.items()}


def bench_quality(detector: SyntheticDetector) -> dict:
    from tailguard.pipelines.train_detector import measure, read_labelled

    threshold = detector.combiner.drop_threshold
    thresholds = {"drop": threshold, "0.5": 0.5}
    dev = measure(read_labelled(SHARED / "synthetic" / "dev.jsonl"), detector.model_dir, thresholds)
    attacks = measure(read_labelled(SHARED / "synthetic" / "paraphrase-attacks.jsonl"), detector.model_dir,
                      thresholds, breakdown_keys=("generator",))
    config = SyntheticConfig()  # the default policy: downweight
    human = {}
    for name, docs in human_corpus_documents().items():
        scored = score_texts(docs, detector, config)
        reliable = [s for s in scored if s.reliable]
        human[name] = {"docs": len(docs), "reliable": len(reliable),
                       "fpr_at_drop": sum(s.score > threshold for s in reliable) / max(len(reliable), 1),
                       "share_above_0.5": sum(s.score > 0.5 for s in reliable) / max(len(reliable), 1),
                       "mean_score": sum(s.score for s in reliable) / max(len(reliable), 1),
                       "mean_downweight": sum(s.signals["downweight"] for s in scored) / max(len(scored), 1)}
    dev_rows = read_labelled(SHARED / "synthetic" / "dev.jsonl")
    dev_scored = score_texts([{"text": r["text"]} for r in dev_rows], detector, config)
    for label in ("human", "machine"):
        weights = [s.signals["downweight"] for s, r in zip(dev_scored, dev_rows) if r["label"] == label]
        dev[f"mean_downweight_{label}"] = sum(weights) / len(weights)
    return {"drop_threshold": threshold, "dev": dev, "attacks": attacks, "human_other_domains": human}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--pipeline-docs", type=int, default=5000)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    docs = documents(args.docs, args.chars)
    mean_bytes = sum(len(d["text"].encode()) for d in docs) / len(docs)
    config = SyntheticConfig()
    detector = SyntheticDetector(config.models_path())
    scoring = bench_scoring(docs, config, detector)
    pipeline = bench_pipeline(docs[:args.pipeline_docs], config)
    result = {"mean_doc_bytes": mean_bytes, "score_texts": scoring, "beam_fnapi": pipeline,
              "detector": detector.name, "timing": "process CPU time (time.process_time), one process"}
    print(f"documents: {len(docs)} of {mean_bytes:.0f} bytes on average; detector {detector.name}")
    print(f"score_texts (stage DoFn work):  {scoring['docs_per_cpu_second']:,.0f} docs per CPU-second")
    print(f"ScoreSynthetic on FnApiRunner:   {pipeline['docs_per_cpu_second']:,.0f} docs per CPU-second "
          f"({pipeline['docs']} docs, Beam overhead included)")
    if not args.skip_quality and (SHARED / "synthetic" / "dev.jsonl").exists():
        quality = bench_quality(detector)
        result["quality"] = quality
        dev, attacks = quality["dev"], quality["attacks"]
        at = dev["at"]["drop"]
        print(f"dev.jsonl: AUROC {dev['auroc']:.4f} (reliable only {dev['auroc_reliable']:.4f}); at the drop "
              f"threshold {quality['drop_threshold']:.2f}: F1 {at['f1']:.4f}, recall {at['recall']:.4f}, "
              f"false-positive rate on human {at['fpr']:.4f}")
        print(f"dev.jsonl: mean downweight (default policy) human {dev['mean_downweight_human']:.3f}, "
              f"machine {dev['mean_downweight_machine']:.3f}")
        print(f"paraphrase-attacks.jsonl: recall at drop {attacks['at']['drop']['recall']:.4f}, "
              f"at 0.5 {attacks['at']['0.5']['recall']:.4f}")
        for name, h in quality["human_other_domains"].items():
            print(f"human, {name}: {h['docs']} docs, false-positive rate at drop {h['fpr_at_drop']:.4f}, "
                  f"share above 0.5 {h['share_above_0.5']:.4f}, mean score {h['mean_score']:.3f}, "
                  f"mean downweight {h['mean_downweight']:.3f}")
    out = ROOT / "benchmarks" / "results" / "synthetic.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
