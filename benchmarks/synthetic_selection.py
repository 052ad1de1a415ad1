"""Choosing the detector's classifier input by its *worst* unseen generator and domain, on training data only.

    python benchmarks/synthetic_selection.py [--candidates full,masked] [--out FILE]

Leave-one-generator-out (LOGO): the pooled training sets are split by group (70 / 30, stable hash); the
classifier is trained on the 70 % without one chat generator (and its paraphrases) and scored on the 30 %:
that generator's texts against the human texts of the same groups. Leave-one-domain-out (LODO): trained without
one chat-model domain of broad-train (all its groups), scored on that domain. Each cell is the AUROC of the
classifier's P(machine) alone -- the part of the detector that can learn topic -- so a candidate is judged by
min(LOGO) and min(LODO), not the pooled figure. The dev files are never read here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tailguard.pipelines.train_detector import (FASTTEXT_PARAMS, auroc, classifier_training_inputs,  # noqa: E402
                                                classifier_training_lines, corpus_repeats, read_training_sets)
from tailguard.transforms.synthetic import classifier_machine_probabilities  # noqa: E402
from tailguard.transforms.synthetic_signals import classifier_view, tokenize  # noqa: E402
from tailguard.transforms.text import stable_fraction  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "synthetic"
CHAT_GENERATORS = ("gpt-3.5-turbo", "gpt-4-turbo-preview", "claude-3-sonnet", "claude-3-opus")
CHAT_DOMAINS = ("abstract-arxiv", "review-yelp", "story-writingprompts")


def base_generator(row: dict) -> str:
    return str(row.get("generator", "")).split("+")[0]


def _fit(train_file: str, model_file: str, params: dict) -> None:
    import fasttext

    fasttext.train_supervised(input=train_file, verbose=0, seed=1, thread=1, **params).save_model(model_file)


def train_and_score(train_rows: list[dict], test_rows: list[dict], view: str, lr: float) -> list[float]:
    import fasttext

    repeats = corpus_repeats(train_rows)
    inputs, _ = classifier_training_inputs(train_rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(classifier_training_lines(train_rows, inputs, repeats, view)), encoding="utf-8")
        params = dict(FASTTEXT_PARAMS, lr=lr)
        # fastText's trainer must start from a clean process (a second training in one process diverges to
        # NaN on these sets), as in train-detector.
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=_fit, args=(str(path), str(Path(tmp) / "model.bin"), params))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"fastText training failed (exit code {child.exitcode})")
        model = fasttext.load_model(str(Path(tmp) / "model.bin"))
    test_inputs = [classifier_view(tokenize(r["text"]).classifier_input, view) for r in test_rows]
    return classifier_machine_probabilities(model, test_inputs)


def folds(rows: list[dict]):
    held = [stable_fraction(r["group"], "selection") < 0.3 for r in rows]
    for gen in CHAT_GENERATORS:
        train = [r for r, h in zip(rows, held) if not h and base_generator(r) != gen]
        test = [r for r, h in zip(rows, held) if h and r.get("dataset") == "biscope"
                and (r["label"] == "human" or base_generator(r) == gen)]
        yield f"logo:{gen}", train, test
    for domain in CHAT_DOMAINS:
        train = [r for r in rows if not (r.get("dataset") == "biscope" and r.get("domain") == domain)]
        test = [r for r in rows if r.get("dataset") == "biscope" and r.get("domain") == domain]
        yield f"lodo:{domain}", train, test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", default="full,masked")
    parser.add_argument("--lr", type=float, default=FASTTEXT_PARAMS["lr"])
    parser.add_argument("--shuffle-all", action="store_true",
                        help="one shuffle of all training sets, instead of the sets in order")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "synthetic_selection.json"))
    args = parser.parse_args()
    rows = read_training_sets([SHARED / "train.jsonl", SHARED / "broad-train.jsonl"])
    if args.shuffle_all:
        rows = [dict(r, training_set=0) for r in rows]
    variant = "shuffled" if args.shuffle_all else "ordered"
    results: dict[str, dict[str, float]] = defaultdict(dict)
    for name, train, test in folds(rows):
        labels = [r["label"] == "machine" for r in test]
        for view in args.candidates.split(","):
            value = auroc(labels, train_and_score(train, test, view, args.lr))
            results[f"{view}@lr{args.lr:g}/{variant}"][name] = value
            print(f"{view:10s} lr {args.lr:g} {variant} {name:32s} {value:.4f}", flush=True)
    for view, cells in results.items():
        logo = [v for k, v in cells.items() if k.startswith("logo")]
        lodo = [v for k, v in cells.items() if k.startswith("lodo")]
        print(f"{view:10s} worst LOGO {min(logo):.4f}  worst LODO {min(lodo):.4f}  "
              f"mean LOGO {sum(logo) / len(logo):.4f}  mean LODO {sum(lodo) / len(lodo):.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
