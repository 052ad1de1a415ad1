"""``tailguard train-detector``: build the synthetic-text detector the ``synthetic`` stage ships, reproducibly.

    tailguard train-detector --train train.jsonl --dev dev.jsonl --output transforms/models \
        [--threshold-human human.txt ...] [--attacks attacks.jsonl]

Rows are ``{text, label: human|machine, group, ...}``; ``group`` ties a machine text to the human text or
prompt it came from. What the command does:

1. Splits ``--train`` by group (a stable hash of ``group``, never a random draw) into a *fit* part for the
   fastText classifier and a *calibration* part (``--calibration-fraction``) that the classifier never sees,
   so no group is on both sides.
2. Trains the supervised fastText classifier on the fit part -- one thread, fixed seed, in a fresh process
   (fastText's trainer must start from a clean process to be repeatable) -- and quantises it. The opening a
   machine continuation shares with the human text it was prompted with is left out of its training input
   (it is evidence of neither label).
3. Fits the combiner (logistic regression in numpy, Newton iterations from zero, every (corpus, label) cell
   weighted equally, so the classes are at a 50 % prior) on the calibration part, using the *quantised* classifier's outputs, exactly as the stage sees them,
   and picks the drop threshold that keeps false positives on the calibration human text of every corpus at
   ``--target-fpr`` -- then raises it, if needed, until human prose of other domains (``--threshold-human``)
   keeps that budget too.
4. Writes ``synthetic_fasttext.ftz``, ``synthetic_combiner.json`` and the two word lists to ``--output`` (a
   complete ``synthetic.model_dir``), then scores ``--dev`` (and ``--attacks``) through the stage's own code
   and prints AUROC, F1, false-positive rates at the thresholds and a calibration table. The dev set is only
   measured, never fitted.

Same inputs and arguments give byte-identical artefacts on the same platform (see tests/test_synthetic_train.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tailguard.transforms.synthetic import (COMBINER_FEATURES, COMBINER_FILE, FASTTEXT_FILE, Combiner, SyntheticConfig,
                                  SyntheticDetector, classifier_machine_probabilities, combiner_features,
                                  score_texts, sigmoid)
from tailguard.transforms.fasttext_models import load_classifier, require_training
from tailguard.transforms.synthetic_signals import (CLASSIFIER_VIEWS, EXCESS_VOCABULARY_FILE, LEAKAGE, LEAKAGE_FILE,
                                          MODELS_DIR, SignalLexicons, classifier_view, fasttext_input,
                                          text_signals, tokenize)
from tailguard.transforms.text import normalize_text, stable_fraction

DETECTOR_NAME = "tailguard-synthetic"
DETECTOR_VERSION = "2"
SPLIT_SALT = "tailguard-synthetic-calibration"

# Longer training (lr 0.05, 40 epochs) fits the training generators better -- calibration-split AUROC 0.781
# vs 0.736, OUTFOX dev 0.983 vs 0.952 -- but does worse on generators it never saw (fast-detect-gpt dev
# 0.752 vs 0.777). lr 0.1 ranks unseen generators a little better (classifier trained without GPT-NeoX-20B,
# SeqXGPT's GPT-3 and text-davinci-003, scored on them: combiner AUROC 0.764 vs 0.756; dev 0.883 vs 0.876)
# but fattens the tail of human prose from other domains: at its drop threshold 5.5-5.8 % of Pride and
# Prejudice and 4 % of dev's PubMed abstracts are flagged (lr 0.2: 0.9 % and 0.6 %), breaking the 2 % budget
# the threshold exists for. Fewer epochs, word unigrams only, minCount 5, dim 64 and word trigrams did not
# help.
FASTTEXT_PARAMS: dict[str, Any] = {
    "lr": 0.2, "epoch": 10, "wordNgrams": 2, "dim": 32, "minCount": 2, "bucket": 200_000, "loss": "softmax",
}
# Product quantisation keeps the model ~1.5 MB: only the most useful embedding rows survive (cutoff -- or
# fewer, when fewer rows were ever trained), and the classifier is briefly retrained around them.
# What of each text the classifier reads (synthetic_signals.CLASSIFIER_VIEWS), chosen by its worst unseen
# generator and domain on the training data (benchmarks/synthetic_selection.py; figures in benchmarks/README.md).
CLASSIFIER_VIEW = "full"
QUANTIZE_PARAMS: dict[str, Any] = {"cutoff": 50_000, "retrain": True, "qnorm": True, "dsub": 2}

# Leakage tells are near-certain evidence but too rare in any training set to fit a weight: each tell adds
# this many log-odds (two or more: the cap), enough to carry a text the classifier calls human (p ~ 0.1)
# past the drop threshold on one clear tell.
LEAKAGE_LOGIT_PER_TELL = 5.0
LEAKAGE_MAX_TELLS = 2
# Strong shrinkage: the text statistics point in different directions for different generator families
# (sampled GPT-2-era continuations are *more* varied than human text, chat models less), so only a
# consistent effect should earn a weight.
L2_PENALTY = 100.0
NEWTON_STEPS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, action="append", metavar="FILE",
                        help="JSONL: text, label (human|machine), group; repeatable: the files are pooled, each "
                             "group keyed by its content (group ids are only unique within one file)")
    parser.add_argument("--dev", required=True, action="append", metavar="FILE",
                        help="JSONL measured (never fitted) after training; repeatable")
    parser.add_argument("--output", required=True, metavar="DIR", help="model directory to write")
    parser.add_argument("--attacks", metavar="FILE", help="JSONL of machine texts after evasion (e.g. paraphrase): "
                                                          "recall is reported")
    parser.add_argument("--calibration-fraction", type=float, default=0.3,
                        help="share of groups held out of classifier training to fit the combiner (0.3)")
    parser.add_argument("--target-fpr", type=float, default=0.01,
                        help="false-positive rate on calibration human text the drop threshold allows (0.01)")
    parser.add_argument("--seed", type=int, default=1, help="fastText seed (1)")
    parser.add_argument("--threshold-human", action="append", default=[], metavar="FILE",
                        help="verified human text of other domains (.txt, or .jsonl with a text field), cut into "
                             "~2,000-character documents: the drop threshold is raised until at most "
                             "--target-fpr of each file's documents lie above it too; repeatable")
    parser.add_argument("--classifier-view", choices=CLASSIFIER_VIEWS, default=CLASSIFIER_VIEW,
                        help=f"what of each text the classifier reads ({CLASSIFIER_VIEW})")
    parser.add_argument("--report", metavar="FILE", help="also write the measurements as JSON here")


# ----------------------------------------------------------------------------------------------------------
# Data


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("label") not in ("human", "machine") or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{n}: needs text and label human|machine")
            rows.append(row)
    return rows


HUMAN_DOCUMENT_CHARS = 2000


def read_human_documents(path: str | Path, chars: int = HUMAN_DOCUMENT_CHARS) -> list[str]:
    """Verified human text cut at paragraph boundaries into documents of about ``chars`` characters.

    ``.jsonl`` files give one text per line (``text`` field); other files are plain text, one paragraph per
    line. WikiText's tokenisation marks (`` @-@ ``, ``<unk>``) are undone and its ``= Heading =`` lines
    skipped, so the text reads as published.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f if line.strip()]
    else:
        texts = [path.read_text(encoding="utf-8")]
    documents = []
    for text in texts:
        for mark, plain in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" <unk>", "")):
            text = text.replace(mark, plain)
        buffer = ""
        for paragraph in text.split("\n"):
            paragraph = paragraph.strip()
            if not paragraph or paragraph.startswith("= "):
                continue
            buffer = f"{buffer}\n{paragraph}" if buffer else paragraph
            if len(buffer) >= chars:
                documents.append(normalize_text(buffer)[0])
                buffer = ""
    return documents


def content_group_key(rows: Sequence[dict[str, Any]]) -> str:
    """A group id derived from the group's texts: the human text(s) if it has any, else all of them.

    Group ids of the shared files are only unique within a file (the older sets number their groups, and
    300 ids of train.jsonl and dev.jsonl collide), so pooled files are keyed by content instead: the same
    passage gets the same key whichever file it came from, and two files never merge unrelated groups.
    """
    humans = sorted(r["text"] for r in rows if r["label"] == "human")
    basis = humans or sorted(r["text"] for r in rows)
    return "c-" + hashlib.sha256("\x00".join(basis).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def read_training_sets(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of every file, in file order, with ``group`` replaced by :func:`content_group_key` and
    ``training_set`` the file's position among ``paths``."""
    pooled = []
    for index, path in enumerate(paths):
        rows = read_labelled(path)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[str(row.get("group") if row.get("group") is not None else row["text"])].append(row)
        keys = {group: content_group_key(members) for group, members in groups.items()}
        for row in rows:
            original = str(row.get("group") if row.get("group") is not None else row["text"])
            pooled.append(dict(row, group=keys[original], training_set=index))
    return pooled


def is_calibration_group(row: dict[str, Any], fraction: float) -> bool:
    group = str(row.get("group") or row["text"])
    return stable_fraction(group, SPLIT_SALT) < fraction


def split_by_group(rows: list[dict[str, Any]], fraction: float) -> tuple[list[dict], list[dict]]:
    fit, calibration = [], []
    for row in rows:
        (calibration if is_calibration_group(row, fraction) else fit).append(row)
    return fit, calibration


# ----------------------------------------------------------------------------------------------------------
# fastText, in a fresh process


def _train_fasttext(train_file: str, model_file: str, params: dict[str, Any], quantize: dict[str, Any]) -> None:
    fasttext = require_training()
    model = fasttext.train_supervised(input=train_file, verbose=0, **params)
    # Rows never touched by training are exactly zero; keeping them would only slow the quantiser down.
    trained_rows = int(np.count_nonzero(np.abs(model.get_input_matrix()).sum(axis=1)))
    quantize = dict(quantize, cutoff=min(quantize["cutoff"], trained_rows))
    model.quantize(input=train_file, thread=params["thread"], verbose=0, **quantize)
    model.save_model(model_file)


def corpus_of(row: dict[str, Any]) -> str:
    return str(row.get("dataset") or "")


def domain_cell(row: dict[str, Any]) -> str:
    return f"{corpus_of(row)}/{row.get('domain') or ''}"


def corpus_repeats(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How often each source corpus's rows are written to the classifier's training file.

    The training set pools corpora of very different sizes (one of them, sampled continuations from
    GPT-2-era models, is 70 % of the rows); repeating the smaller corpora until each weighs about as much as
    the largest keeps the classifier from learning one corpus's quirks as "machine".
    """
    sizes: dict[str, int] = defaultdict(int)
    for row in rows:
        sizes[corpus_of(row)] += 1
    largest = max(sizes.values())
    return {corpus: max(1, round(largest / size)) for corpus, size in sorted(sizes.items())}


def _common_prefix_length(a: list[str], b: list[str]) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def classifier_training_inputs(rows: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Each row as the classifier reads it, minus the opening a machine text shares with its group's human text.

    Continuation corpora (fast-detect-gpt) prompt the generator with the human passage's first ~30 tokens, so
    one human opening appears once labelled human and five times labelled machine: left in, the classifier
    learns that passage's topic words as machine evidence. The shared opening -- the longest common token
    prefix of a machine text and a human text of its group -- is cut from the machine texts, and the longest
    such cut from the group's human texts. Groups without a shared opening are untouched. Returns the inputs
    and the number of tokens removed in all.
    """
    tokens = [tokenize(row["text"]) for row in rows]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.get("group") is not None:
            groups[str(row["group"])].append(i)
    skip = [0] * len(rows)
    for members in groups.values():
        humans = [i for i in members if rows[i]["label"] == "human"]
        machines = [i for i in members if rows[i]["label"] == "machine"]
        if not humans or not machines:
            continue
        for i in machines:
            skip[i] = max(_common_prefix_length(tokens[h].tokens, tokens[i].tokens) for h in humans)
        longest = max(skip[i] for i in machines)
        for h in humans:
            skip[h] = longest
    inputs = [t.classifier_input if n == 0 else " ".join(t.tokens[n:]) for t, n in zip(tokens, skip)]
    return inputs, sum(skip)


def classifier_training_lines(rows: Sequence[dict[str, Any]], inputs: Sequence[str], repeats: dict[str, int],
                              view: str) -> list[str]:
    """fastText's training file: each row ``repeats[corpus]`` times; the training sets in the order given,
    each one's lines in a stable pseudo-random order.

    One thread reads the file front to back, so the order is the order of the updates. Within a training
    set, sorting by a hash of (repeat, text) interleaves its corpora and spreads each row's repeats (in a run
    they are nine identical steps in a row). Across sets the given order is kept, so the set given last --
    the current chat models -- shapes the final weights most: on the training data's leave-one-generator-out
    folds that ranks an unseen chat model better than one shuffle of everything (benchmarks/README.md).
    """
    keyed = []
    for row, text in zip(rows, inputs):
        text = classifier_view(text, view)
        if not text.strip():
            continue
        line = f"__label__{row['label']} {text}\n"
        for r in range(repeats[corpus_of(row)]):
            keyed.append((row.get("training_set", 0), stable_fraction(f"{r}\x00{line}", SPLIT_SALT + "-order"),
                          line))
    keyed.sort()
    return [line for _, _, line in keyed]


def train_classifier(fit_rows: list[dict[str, Any]], model_file: Path, seed: int,
                     view: str = "full") -> dict[str, Any]:
    """Train and quantise the classifier; returns the parameters used (recorded in the combiner JSON)."""
    params = dict(FASTTEXT_PARAMS, seed=seed, thread=1)
    repeats = corpus_repeats(fit_rows)
    inputs, removed = classifier_training_inputs(fit_rows)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "fasttext-train.txt"
        train_file.write_text("".join(classifier_training_lines(fit_rows, inputs, repeats, view)), encoding="utf-8")
        # fastText's trainer is repeatable only from a clean process (a second training in the same process
        # can start from stale memory), so it always runs in a freshly spawned one.
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=_train_fasttext, args=(str(train_file), str(model_file), params,
                                                              QUANTIZE_PARAMS))
        child.start()
        child.join()
        if child.exitcode != 0 or not model_file.exists():
            raise RuntimeError(f"fastText training failed (exit code {child.exitcode})")
    return {"train": params, "quantize": QUANTIZE_PARAMS, "corpus_repeats": repeats,
            "shared_prompt_tokens_removed": removed, "view": view}


# ----------------------------------------------------------------------------------------------------------
# The combiner


def fit_logistic(features: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray,
                 l2: float = L2_PENALTY, steps: int = NEWTON_STEPS,
                 offset: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method from zero: deterministic, no learning rate.

    ``offset`` (log-odds per row) is added to the linear term and not fitted: the model learns only what the
    offset -- another model's opinion -- does not already say."""
    design = np.hstack([features, np.ones((len(features), 1))])
    penalty = np.diag(np.r_[np.full(features.shape[1], l2), 0.0])
    beta = np.zeros(design.shape[1])
    base = np.zeros(len(features)) if offset is None else np.asarray(offset, dtype=np.float64)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(base + design @ beta)))
        gradient = design.T @ (sample_weights * (p - labels)) + penalty @ beta
        hessian = (design * (sample_weights * p * (1.0 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian, gradient)
        beta = beta - step
        if np.max(np.abs(step)) < 1e-12:
            break
    return beta[:-1], float(beta[-1])


def balanced_weights(rows: list[dict[str, Any]], labels: np.ndarray) -> np.ndarray:
    """Sample weights giving every (corpus, label) cell the same total weight.

    Both labels count equally, so the combiner's probabilities are at a 50 % prior; every corpus counts
    equally, so the signals' weights are not set by whichever corpus happens to be largest.
    """
    cells: dict[tuple[str, float], int] = defaultdict(int)
    for row, label in zip(rows, labels):
        cells[(corpus_of(row), float(label))] += 1
    per_cell = len(rows) / len(cells)
    return np.array([per_cell / cells[(corpus_of(row), float(label))] for row, label in zip(rows, labels)])


def threshold_for_fpr(rows: list[dict[str, Any]], labels: np.ndarray, scores: np.ndarray,
                      target_fpr: float) -> float:
    """Smallest score on a 0.01 grid (at least 0.5) above which at most ``target_fpr`` of the human texts of
    *every* (corpus, domain) cell lie: a threshold that holds in each domain, not only on average, is likelier
    to hold in the next one (per corpus alone, the pooled sets' thresholds let 2-3 % of unseen domains' human
    text through)."""
    cells = sorted({domain_cell(row) for row in rows})
    human_scores = []
    for cell in cells:
        mask = np.array([domain_cell(row) == cell for row in rows]) & (labels == 0)
        if np.any(mask):
            human_scores.append(scores[mask])
    for hundredths in range(50, 100):
        threshold = hundredths / 100
        if all(np.mean(s > threshold) <= target_fpr for s in human_scores):
            return threshold
    return 0.99


def fit_combiner(calibration: list[dict[str, Any]], probabilities: list[float], lexicons: SignalLexicons,
                 target_fpr: float) -> tuple[dict[str, Any], np.ndarray]:
    signals = [text_signals(row["text"], tokenize(row["text"]), lexicons) for row in calibration]
    features = np.array([combiner_features(s, p) for s, p in zip(signals, probabilities)], dtype=np.float64)
    labels = np.array([row["label"] == "machine" for row in calibration], dtype=np.float64)
    means = features.mean(axis=0)
    scales = features.std(axis=0)
    scales[scales == 0] = 1.0
    coefficients, intercept = fit_logistic((features - means) / scales, labels, balanced_weights(calibration, labels))
    combiner = {
        "features": [
            {"name": name, "mean": float(m), "scale": float(s), "coefficient": float(c)}
            for name, m, s, c in zip(COMBINER_FEATURES, means, scales, coefficients)
        ],
        "intercept": intercept,
        "leakage": {"logit_per_tell": LEAKAGE_LOGIT_PER_TELL, "max_tells": LEAKAGE_MAX_TELLS},
        "prior": 0.5,
        "thresholds": {"drop": 1.0},
    }
    # Scores exactly as the stage computes them, from the description just written.
    fitted = Combiner.from_json(combiner)
    scores = np.array([sigmoid(fitted.logit(row, s[LEAKAGE])) for row, s in zip(features.tolist(), signals)])
    combiner["thresholds"] = {"drop": threshold_for_fpr(calibration, labels, scores, target_fpr),
                              "target_fpr": target_fpr}
    return combiner, scores


# ----------------------------------------------------------------------------------------------------------
# Measurements


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve by the rank-sum formula, ties counted half."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_scores = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = scores > threshold
    machine = labels == 1
    tp = int(np.sum(flagged & machine))
    fp = int(np.sum(flagged & ~machine))
    fn = int(np.sum(~flagged & machine))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    fpr = fp / int(np.sum(~machine)) if np.any(~machine) else float("nan")
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1, "fpr": fpr}


def calibration_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    rows = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    for b in range(bins):
        mask = index == b
        if not np.any(mask):
            continue
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(mask.sum()),
                     "mean_score": float(scores[mask].mean()), "machine_share": float(labels[mask].mean())})
    return rows


def measure(rows: list[dict[str, Any]], model_dir: Path, thresholds: dict[str, float],
            breakdown_keys: Sequence[str] = ("dataset", "domain", "generator")) -> dict[str, Any]:
    """Score ``rows`` through the stage's own code (no ``lang`` field: the stage's fallback decides English)."""
    detector = SyntheticDetector(model_dir)
    config = SyntheticConfig(action="tag", model_dir=str(model_dir))
    scored = []
    for start in range(0, len(rows), 512):
        batch = [{"text": row["text"]} for row in rows[start:start + 512]]
        scored.extend(score_texts(batch, detector, config))
    labels = np.array([row["label"] == "machine" for row in rows], dtype=np.int64)
    scores = np.array([s.score for s in scored])
    reliable = np.array([s.reliable for s in scored])
    result: dict[str, Any] = {
        "n": len(rows), "machine": int(labels.sum()), "reliable_share": float(reliable.mean()),
        "auroc": auroc(labels, scores),
        "auroc_reliable": auroc(labels[reliable], scores[reliable]),
        "at": {name: rates_at(labels, scores, t) for name, t in thresholds.items()},
        "calibration": calibration_table(labels, scores),
        "by": {},
    }
    for key in breakdown_keys:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            groups[str(row.get(key, "?"))].append(i)
        if len(groups) < 2:
            continue
        for value, idx in sorted(groups.items()):
            sel = np.array(idx)
            entry = {"n": len(idx), "auroc": auroc(labels[sel], scores[sel])}
            for name, t in thresholds.items():
                rates = rates_at(labels[sel], scores[sel], t)
                entry[f"recall@{name}"] = rates["recall"]
                entry[f"fpr@{name}"] = rates["fpr"]
            result["by"][f"{key}={value}"] = entry
    # Same-generator comparisons: human rows against one generator's rows, so each AUROC says how well
    # that generator is told apart from the human text of the same corpus.
    if "generator" in breakdown_keys and any("dataset" in row for row in rows):
        pairs: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            if row["label"] == "machine":
                pairs[f"{row.get('dataset')}:{row.get('generator')}"].append(i)
        for name, idx in sorted(pairs.items()):
            dataset = name.split(":")[0]
            humans = [i for i, row in enumerate(rows) if row["label"] == "human" and row.get("dataset") == dataset]
            if humans:
                sel = np.array(humans + idx)
                result["by"][f"vs_human={name}"] = {"n": len(sel), "auroc": auroc(labels[sel], scores[sel])}
    return result


def format_report(name: str, m: dict[str, Any]) -> str:
    lines = [f"== {name}: {m['n']} texts ({m['machine']} machine), {m['reliable_share']:.1%} in the detector's "
             f"domain", f"AUROC {m['auroc']:.4f} (reliable only: {m['auroc_reliable']:.4f})"]
    for label, r in m["at"].items():
        lines.append(f"at {label} threshold {r['threshold']:.2f}: F1 {r['f1']:.4f}  precision {r['precision']:.4f}  "
                     f"recall {r['recall']:.4f}  false-positive rate on human {r['fpr']:.4f}")
    lines.append("calibration (score bin: n, mean score, observed machine share)")
    for row in m["calibration"]:
        lines.append(f"  {row['bin']}: {row['n']:5d}  {row['mean_score']:.3f}  {row['machine_share']:.3f}")
    if m["by"]:
        lines.append("breakdown: n, AUROC, recall/FPR at each threshold")
        for key, entry in m["by"].items():
            extras = "  ".join(f"{k} {v:.3f}" for k, v in entry.items() if k not in ("n", "auroc"))
            lines.append(f"  {key:40s} {entry['n']:5d}  {entry['auroc']:.4f}  {extras}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# The command


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def human_threshold(model_dir: Path, threshold: float, human_files: Sequence[str | Path],
                    target_fpr: float) -> tuple[float, dict[str, dict[str, float]]]:
    """Raise ``threshold`` (0.01 steps) until at most ``target_fpr`` of each file's documents score above it.

    The labelled pairs come from a few corpora; human prose of other domains and centuries (a novel,
    speeches) is further from their human side than from their machine side, and scores higher. This
    holds the drop threshold to the same false-positive budget there, using the stage's own scoring code.
    """
    detector = SyntheticDetector(model_dir)
    config = SyntheticConfig(action="tag", model_dir=str(model_dir))
    corpora = {}
    for path in human_files:
        scored = score_texts([{"text": t} for t in read_human_documents(path)], detector, config)
        corpora[Path(path).name] = np.array([s.score for s in scored if s.reliable])
    while threshold < 0.99 and any(np.mean(s > threshold) > target_fpr for s in corpora.values() if len(s)):
        threshold = round(threshold + 0.01, 2)
    report = {name: {"documents": int(len(s)), "fpr_at_drop": float(np.mean(s > threshold)) if len(s) else 0.0}
              for name, s in corpora.items()}
    return threshold, report


def train(train_paths: Sequence[str | Path], output: str | Path, calibration_fraction: float = 0.3,
          target_fpr: float = 0.01, seed: int = 1, threshold_human: Sequence[str | Path] = (),
          view: str = CLASSIFIER_VIEW) -> dict[str, Any]:
    """Write a complete model directory to ``output``; returns the combiner description."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rows = read_training_sets(train_paths)
    fit_rows, calibration = split_by_group(rows, calibration_fraction)
    for part, name in ((fit_rows, "fit"), (calibration, "calibration")):
        if len({r["label"] for r in part}) < 2:
            raise ValueError(f"the {name} split has only one label; use more groups or another "
                             f"--calibration-fraction")
    # The word lists travel with the model: the output directory is a complete synthetic.model_dir.
    for list_file in (LEAKAGE_FILE, EXCESS_VOCABULARY_FILE):
        source, target = MODELS_DIR / list_file, output / list_file
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
    lexicons = SignalLexicons.load(output)
    model_file = output / FASTTEXT_FILE
    fasttext_params = train_classifier(fit_rows, model_file, seed, view)

    classifier = load_classifier(str(model_file))
    probabilities = classifier_machine_probabilities(
        classifier, [classifier_view(fasttext_input(r["text"]), view) for r in calibration])
    combiner, calibration_scores = fit_combiner(calibration, probabilities, lexicons, target_fpr)
    y = np.array([r["label"] == "machine" for r in calibration], dtype=np.int64)
    description = {
        "name": DETECTOR_NAME,
        "version": DETECTOR_VERSION,
        "fasttext_model": FASTTEXT_FILE,
        "classifier_view": view,
        **combiner,
        "training": {
            "train_files_sha256": {Path(p).name: file_sha256(p) for p in train_paths},
            "rows": len(rows), "fit_rows": len(fit_rows), "calibration_rows": len(calibration),
            "calibration_fraction": calibration_fraction, "split_salt": SPLIT_SALT,
            "fasttext": fasttext_params, "l2_penalty": L2_PENALTY,
            "lexicons": lexicons.version,
        },
        "calibration_metrics": {
            "auroc": auroc(y, calibration_scores),
            "at_drop": rates_at(y, calibration_scores, combiner["thresholds"]["drop"]),
        },
    }
    write_description(output, description)
    if threshold_human:
        calibrated = combiner["thresholds"]["drop"]
        drop, report = human_threshold(output, calibrated, threshold_human, target_fpr)
        description["thresholds"].update({"drop": drop, "labelled_pairs": calibrated, "human_corpora": report})
        description["training"]["threshold_human_sha256"] = {Path(p).name: file_sha256(p) for p in threshold_human}
        description["calibration_metrics"]["at_drop"] = rates_at(y, calibration_scores, drop)
        write_description(output, description)
    return description


def write_description(output: Path, description: dict[str, Any]) -> None:
    (output / COMBINER_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    if not 0 < args.calibration_fraction < 1:
        print("train-detector: --calibration-fraction must be between 0 and 1", file=sys.stderr)
        return 2
    if not 0 < args.target_fpr < 1:
        print("train-detector: --target-fpr must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        description = train(args.train, args.output, args.calibration_fraction, args.target_fpr, args.seed,
                            args.threshold_human, args.classifier_view)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"train-detector: error: {e}", file=sys.stderr)
        return 1
    output = Path(args.output)
    drop = description["thresholds"]["drop"]
    thresholds = {"drop": drop, "0.5": 0.5}
    training = description["training"]
    print(f"trained {DETECTOR_NAME}/{DETECTOR_VERSION}: classifier on {training['fit_rows']} rows, combiner on "
          f"{training['calibration_rows']} (group-disjoint); drop threshold {drop:.2f} "
          f"(calibration FPR {description['calibration_metrics']['at_drop']['fpr']:.4f}, "
          f"AUROC {description['calibration_metrics']['auroc']:.4f})")
    for f in sorted(output.iterdir()):
        if f.name in (FASTTEXT_FILE, COMBINER_FILE, LEAKAGE_FILE, EXCESS_VOCABULARY_FILE):
            print(f"  {f.name}  {f.stat().st_size:,} bytes  sha256 {file_sha256(f)[:16]}")
    report: dict[str, Any] = {"combiner": description}
    report["dev"] = {}
    for dev_path in args.dev:
        dev = measure(read_labelled(dev_path), output, thresholds)
        report["dev"][Path(dev_path).name] = dev
        print(format_report(f"dev {dev_path}", dev))
    if args.attacks:
        attacks = measure(read_labelled(args.attacks), output, thresholds, breakdown_keys=("generator",))
        report["attacks"] = attacks
        print(format_report(f"attacks {args.attacks}", attacks))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="tailguard train-detector", description=__doc__.split("\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
