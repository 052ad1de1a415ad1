"""The opt-in language-model tier: fit its combiner on training data, then measure what it adds on broad-dev.

    python benchmarks/synthetic_lm.py [--fit-per-cell 150] [--max-tokens 128] [--write-combiner]

1. **Fit** (training sets only): the calibration part of the pooled training sets (the group-disjoint share the
   fastText classifier never saw, as ``train-detector`` splits it), at most ``--fit-per-cell`` texts per
   (dataset, domain, label) cell by stable hash. For each reliable text: the shipped cheap detector's log-odds
   and the LM statistics (``benchmarks/synthetic_lm_scorer.py``). A logistic regression over the standardised
   statistics with the cheap log-odds as a fixed offset -- so the LM tier learns only what the cheap tier
   does not already say, and ``cheap + logit(p_lm)`` is the fitted joint model (``weight: 1``). With
   ``--write-combiner`` it is written to ``transforms/models/synthetic_lm_combiner.json``.
2. **Measure** on broad-dev (never fitted): AUROC overall, per unseen generator and unseen domain, for the
   cheap tier alone, the LM tier on every reliable document, and the LM tier only in ``--band`` on at most
   ``--max-share`` of the documents; the share of documents the LM saw; human false-positive rate at the
   drop threshold.
3. **Speed**: LM statistics per document in CPU-seconds (``time.process_time``, one thread) on ~2 KB
   documents.

LM statistics are cached by text hash in ``--cache`` so reruns cost nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.synthetic import UNSEEN_DOMAINS, UNSEEN_GENERATORS, cell_aurocs, documents  # noqa: E402
from tailguard.pipelines.train_detector import (SPLIT_SALT, auroc, fit_logistic, read_labelled,  # noqa: E402
                                                read_training_sets, split_by_group)
from tailguard.transforms.synthetic import (COMBINED_LOGIT, ExtraScorerConfig, SyntheticConfig,  # noqa: E402
                                            SyntheticDetector, score_texts, sigmoid)
from benchmarks.synthetic_lm_scorer import (LM_COMBINER_FILE, LM_STATISTICS, LikelihoodScorer,  # noqa: E402
                                               default_model_path)
from tailguard.transforms.synthetic_signals import MODELS_DIR  # noqa: E402
from tailguard.transforms.text import stable_fraction  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "synthetic"
LM_L2 = 10.0


class StatsCache:
    def __init__(self, path: Path, scorer: "RawScorer"):
        self.path, self.scorer = path, scorer
        self.data: dict[str, dict] = {}
        if path.exists():
            for line in path.open(encoding="utf-8"):
                entry = json.loads(line)
                self.data[entry["key"]] = entry["stats"]

    def get(self, texts: list[str]) -> list[dict]:
        out = []
        with self.path.open("a", encoding="utf-8") as f:
            for text in texts:
                key = hashlib.sha256(f"{self.scorer.max_tokens}\x00{text}".encode()).hexdigest()[:24]
                if key not in self.data:
                    self.data[key] = self.scorer.statistics(text)
                    f.write(json.dumps({"key": key, "stats": self.data[key]}) + "\n")
                out.append(self.data[key])
        return out


class RawScorer(LikelihoodScorer):
    """The scorer's statistics without a combiner (the combiner is what this script fits)."""

    def __init__(self, max_tokens: int):
        self.model_path = default_model_path()
        self.max_tokens, self.threads, self._llm = max_tokens, 1, None
        self.combiner, self.coefficients, self.intercept = {}, [], 0.0


def cheap_scores(rows: list[dict], detector: SyntheticDetector) -> list:
    config = SyntheticConfig(action="tag", model_dir=str(detector.model_dir))
    out = []
    for i in range(0, len(rows), 512):
        out.extend(score_texts([{"text": r["text"]} for r in rows[i:i + 512]], detector, config))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit-per-cell", type=int, default=150)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--band", type=float, nargs=2, default=(0.2, 0.95))
    parser.add_argument("--max-share", type=float, default=1.0)
    parser.add_argument("--dev-limit", type=int, default=0, help="score only this many broad-dev rows (stable hash)")
    parser.add_argument("--unseen-only", action="store_true",
                        help="measure only the unseen generators and the human texts of their cells")
    parser.add_argument("--cache", default="/tmp/tailguard-lm-stats.jsonl")
    parser.add_argument("--write-combiner", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "synthetic_lm.json"))
    args = parser.parse_args()
    detector = SyntheticDetector(MODELS_DIR)
    raw = RawScorer(args.max_tokens)
    raw.setup()
    cache = StatsCache(Path(args.cache), raw)
    result: dict = {"model": Path(raw.model_path).name, "max_tokens": args.max_tokens, "detector": detector.name}

    # 1. Fit on the calibration part of the training sets.
    rows = read_training_sets([SHARED / "train.jsonl", SHARED / "broad-train.jsonl"])
    _, calibration = split_by_group(rows, 0.3)
    cells: dict = {}
    for r in sorted(calibration, key=lambda r: stable_fraction(r["text"], SPLIT_SALT + "-lm")):
        key = (r.get("dataset"), r.get("domain"), r["label"])
        if len(cells.setdefault(key, [])) < args.fit_per_cell:
            cells[key].append(r)
    fit_rows = [r for members in cells.values() for r in members]
    scored = cheap_scores(fit_rows, detector)
    keep = [i for i, s in enumerate(scored) if s.reliable]
    fit_rows = [fit_rows[i] for i in keep]
    offset = np.array([scored[i].signals[COMBINED_LOGIT] for i in keep])
    t0 = time.time()
    stats = cache.get([r["text"] for r in fit_rows])
    print(f"fit: {len(fit_rows)} texts, LM statistics in {time.time() - t0:.0f} s wall", flush=True)
    x = np.array([[s[name] for name in LM_STATISTICS] for s in stats])
    y = np.array([r["label"] == "machine" for r in fit_rows], dtype=np.float64)
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    # Every (dataset, label) cell weighs the same, as in the cheap combiner.
    counts: dict = {}
    for r in fit_rows:
        counts[(r.get("dataset"), r["label"])] = counts.get((r.get("dataset"), r["label"]), 0) + 1
    weights = np.array([len(fit_rows) / len(counts) / counts[(r.get("dataset"), r["label"])] for r in fit_rows])
    coefficients, intercept = fit_logistic((x - means) / scales, y, weights, l2=LM_L2, offset=offset)
    combiner = {"name": "tailguard-synthetic-lm", "version": "1", "model": Path(raw.model_path).name,
                "max_tokens": args.max_tokens, "l2_penalty": LM_L2, "fit_rows": len(fit_rows),
                "features": [{"name": n, "mean": float(m), "scale": float(s), "coefficient": float(c)}
                             for n, m, s, c in zip(LM_STATISTICS, means, scales, coefficients)],
                "intercept": intercept}
    result["combiner"] = combiner
    print("LM combiner:", json.dumps(combiner["features"]), f"intercept {intercept:.4f}")
    solo = auroc(y, x @ (coefficients / scales))
    print(f"fit set: cheap AUROC {auroc(y, offset):.4f}, LM statistics alone {solo:.4f}, "
          f"joint {auroc(y, offset + ((x - means) / scales) @ coefficients + intercept):.4f}")
    for name, column in zip(LM_STATISTICS, x.T):
        print(f"  {name}: AUROC alone {auroc(y, column):.4f}")
    if args.write_combiner:
        (MODELS_DIR / LM_COMBINER_FILE).write_text(json.dumps(combiner, indent=2) + "\n", encoding="utf-8")

    # 2. Measure on broad-dev.
    dev = read_labelled(SHARED / "broad-dev.jsonl")
    if args.unseen_only:
        # The unseen generators' texts and the human texts of the cells they occur in: what the +0.03 is about.
        cells = {(r.get("dataset"), r.get("domain")) for r in dev if r.get("generator") in UNSEEN_GENERATORS}
        dev = [r for r in dev if r.get("generator") in UNSEEN_GENERATORS
               or (r["label"] == "human" and (r.get("dataset"), r.get("domain")) in cells)]
    if args.dev_limit:
        dev = sorted(dev, key=lambda r: stable_fraction(r["text"], "lm-dev"))[:args.dev_limit]
    dev_scored = cheap_scores(dev, detector)
    reliable = [s.reliable for s in dev_scored]
    cheap_logit = np.array([s.signals.get(COMBINED_LOGIT, 0.0) for s in dev_scored])
    t0 = time.time()
    dev_stats = cache.get([r["text"] for r, ok in zip(dev, reliable) if ok])
    print(f"broad-dev: {sum(reliable)} reliable texts, LM statistics in {time.time() - t0:.0f} s wall", flush=True)
    z_lm = np.zeros(len(dev))
    it = iter(dev_stats)
    for i, ok in enumerate(reliable):
        if ok:
            s = next(it)
            z_lm[i] = intercept + sum(c * (s[n] - m) / sc for n, m, sc, c in
                                      zip(LM_STATISTICS, means, scales, coefficients))
    spec = ExtraScorerConfig(class_path="x.y", score_band=list(args.band), max_share=args.max_share)
    cheap = np.array([s.score for s in dev_scored])
    in_band = np.array([ok and spec.selects(sigmoid(z), r["text"]) for ok, z, r in zip(reliable, cheap_logit, dev)])
    variants = {
        "cheap": cheap,
        "lm_everywhere": np.array([sigmoid(z + zl) if ok else 0.5 for z, zl, ok in zip(cheap_logit, z_lm, reliable)]),
        "lm_in_band": np.array([sigmoid(z + zl) if b else c for z, zl, b, c in zip(cheap_logit, z_lm, in_band, cheap)]),
    }
    threshold = detector.combiner.drop_threshold
    labels = np.array([r["label"] == "machine" for r in dev])
    result["broad_dev"] = {"lm_share_in_band": float(in_band.mean()), "band": list(args.band),
                           "max_share": args.max_share}
    for name, scores in variants.items():
        cellwise = cell_aurocs(dev, list(scores))
        entry = {"auroc": auroc(labels, scores),
                 "unseen_generators": {g: cellwise["generator"][g]["auroc"] for g in UNSEEN_GENERATORS
                                       if g in cellwise["generator"]},
                 "unseen_domains": {d: cellwise["domain"][d]["auroc"] for d in UNSEEN_DOMAINS},
                 "human_fpr_at_drop": float(np.mean(scores[~labels] > threshold)),
                 "recall_at_drop": float(np.mean(scores[labels] > threshold))}
        result["broad_dev"][name] = entry
        print(f"{name:14s} AUROC {entry['auroc']:.4f}  unseen generators "
              + ", ".join(f"{k} {v:.4f}" for k, v in entry["unseen_generators"].items())
              + "  unseen domains " + ", ".join(f"{k} {v:.4f}" for k, v in entry["unseen_domains"].items())
              + f"  human FPR@drop {entry['human_fpr_at_drop']:.4f}  recall@drop {entry['recall_at_drop']:.4f}")
    print(f"LM saw {in_band.mean():.1%} of broad-dev (band {args.band}, max_share {args.max_share})")

    # 3. Speed on ~2 KB documents.
    docs = [d["text"] for d in documents(40, 2000)]
    start = time.process_time()
    for text in docs:
        raw.statistics(text)
    cpu = time.process_time() - start
    result["speed"] = {"docs": len(docs), "cpu_seconds": cpu, "docs_per_cpu_second": len(docs) / cpu,
                       "threads": 1}
    print(f"LM statistics: {len(docs) / cpu:.2f} docs per CPU-second (~2 KB docs, first {args.max_tokens} tokens)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
