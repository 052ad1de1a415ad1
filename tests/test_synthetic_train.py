"""``train-detector``: the pure pieces, the command on a small fixture (twice: byte-identical artefacts), and
the shipped artefacts against the data and configuration they claim to come from."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tailguard.pipelines import train_detector
from tailguard.pipelines.train_detector import (FASTTEXT_PARAMS, LEAKAGE_LOGIT_PER_TELL, QUANTIZE_PARAMS, SPLIT_SALT,
                                      auroc, balanced_weights, calibration_table, classifier_training_inputs,
                                      corpus_repeats, fit_logistic, rates_at, read_labelled, split_by_group,
                                      threshold_for_fpr)
from tailguard.transforms.synthetic import COMBINER_FEATURES, COMBINER_FILE, FASTTEXT_FILE, SyntheticConfig, \
    SyntheticDetector, score_texts
from tailguard.transforms.synthetic_signals import MODELS_DIR, tokenize

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "synthetic_tiny.jsonl"
SHARED_SYNTHETIC = ROOT.parent / "shared" / "data" / "synthetic"
SHARED_HUMAN = ROOT.parent / "shared" / "data" / "human"
# The exact command that built transforms/models (also in SYNTHETIC_DETECTOR.md).
SHIPPED_BUILD_ARGS = ("--train", str(SHARED_SYNTHETIC / "train.jsonl"),
                      "--train", str(SHARED_SYNTHETIC / "broad-train.jsonl"),
                      "--dev", str(SHARED_SYNTHETIC / "broad-dev.jsonl"),
                      "--threshold-human", str(SHARED_HUMAN / "wikitext2-valid.txt"),
                      "--threshold-human", str(SHARED_HUMAN / "inaugural.jsonl"))
TRAINING_SETS = ("train.jsonl", "broad-train.jsonl")
ARTEFACTS = (FASTTEXT_FILE, COMBINER_FILE, "leakage_phrases.txt", "excess_vocabulary.txt")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Pure pieces


def test_split_keeps_every_group_on_one_side():
    rows = read_labelled(FIXTURE)
    fit, calibration = split_by_group(rows, 0.3)
    assert len(fit) + len(calibration) == len(rows)
    assert not {r["group"] for r in fit} & {r["group"] for r in calibration}
    again_fit, _ = split_by_group(list(reversed(rows)), 0.3)
    assert {r["group"] for r in again_fit} == {r["group"] for r in fit}  # hash-based, not order-based


def test_auroc_matches_pair_counting_with_ties():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]
    pairs = [(p, n) for p in range(6) if labels[p] for n in range(6) if not labels[n]]
    expected = sum(1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0
                   for p, n in pairs) / len(pairs)
    assert auroc(labels, scores) == pytest.approx(expected)
    assert auroc([0, 1], [0.2, 0.9]) == 1.0
    assert np.isnan(auroc([1, 1], [0.2, 0.9]))


def test_rates_and_calibration_table():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.95, 0.6, 0.97, 0.99])
    at = rates_at(labels, scores, 0.9)
    assert at["fpr"] == pytest.approx(1 / 3) and at["recall"] == pytest.approx(2 / 3)
    assert at["precision"] == pytest.approx(2 / 3) and at["f1"] == pytest.approx(2 / 3)
    table = calibration_table(labels, scores)
    assert sum(row["n"] for row in table) == 6
    assert table[-1]["machine_share"] == pytest.approx(2 / 3)


def test_threshold_holds_in_every_corpus():
    rows = [{"dataset": "a"}] * 100 + [{"dataset": "b"}] * 100
    labels = np.zeros(200)
    scores = np.r_[np.linspace(0.0, 0.6, 100), np.linspace(0.0, 0.9, 100)]
    # At most 1 % of *each* corpus's human texts may lie above: corpus a alone would allow 0.60.
    assert threshold_for_fpr(rows[:100], labels[:100], scores[:100], 0.01) == 0.6
    assert threshold_for_fpr(rows, labels, scores, 0.01) == 0.9
    assert threshold_for_fpr(rows, labels, scores, 0.05) == 0.86


def test_logistic_fit_recovers_direction_and_weights_balance_cells():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(float)
    coefficients, _ = fit_logistic(x, y, np.ones(400), l2=1.0)
    assert coefficients[0] > 0 > coefficients[1]
    rows = [{"dataset": "big"}] * 90 + [{"dataset": "small"}] * 10
    labels = np.array([1.0] * 80 + [0.0] * 10 + [1.0] * 5 + [0.0] * 5)
    weights = balanced_weights(rows, labels)
    cells = {}
    for row, label, w in zip(rows, labels, weights):
        cells[(row["dataset"], label)] = cells.get((row["dataset"], label), 0.0) + w
    assert all(v == pytest.approx(25.0) for v in cells.values())


def test_corpus_repeats_level_corpus_sizes():
    rows = [{"dataset": "big"}] * 60 + [{"dataset": "small"}] * 20 + [{"dataset": "tiny"}] * 7
    assert corpus_repeats(rows) == {"big": 1, "small": 3, "tiny": 9}


def test_shared_prompt_opening_is_left_out_of_classifier_training():
    prompt = "The council met on Tuesday to discuss the new bridge."
    rows = [
        {"text": prompt + " Residents said the plan was rushed.", "label": "human", "group": "g1"},
        {"text": prompt + " Officials expect the work to finish in 2025.", "label": "machine", "group": "g1"},
        {"text": prompt.upper() + "  It will cost millions.", "label": "machine", "group": "g1"},
        # Nothing shared with its group's human text: untouched.
        {"text": "An essay about school uniforms, written by a student.", "label": "human", "group": "g2"},
        {"text": "School uniforms foster a sense of community.", "label": "machine", "group": "g2"},
        {"text": prompt + " A row without a group keeps its opening.", "label": "machine"},
    ]
    inputs, removed = classifier_training_inputs(rows)
    assert inputs[0] == "residents said the plan was rushed ."
    assert inputs[1] == "officials expect the work to finish in 2025 ."
    assert inputs[2] == "it will cost millions ."  # case and spacing do not hide a shared opening
    assert inputs[3].split() == "an essay about school uniforms , written by a student .".split()
    assert inputs[4].split() == "school uniforms foster a sense of community .".split()
    assert inputs[5].split()[:3] == ["the", "council", "met"]
    assert removed == 3 * len(tokenize(prompt).tokens)  # one human and two machine openings


def test_pooled_files_key_groups_by_content(tmp_path):
    """Group ids are file indexes in the older sets: the same id in two files must not merge two groups, and
    the same human passage must get the same key wherever it comes from."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows_a = [{"text": "A human passage.", "label": "human", "group": "0"},
              {"text": "A machine passage.", "label": "machine", "group": "0"},
              {"text": "Another human passage.", "label": "human", "group": "1"}]
    rows_b = [{"text": "Unrelated human text.", "label": "human", "group": "0"},
              {"text": "Its machine twin.", "label": "machine", "group": "0"},
              {"text": "A human passage.", "label": "human", "group": "7"},
              {"text": "Machine text without a human.", "label": "machine", "group": "9"}]
    for path, rows in ((a, rows_a), (b, rows_b)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pooled = train_detector.read_training_sets([a, b])
    groups = [r["group"] for r in pooled]
    assert [r["text"] for r in pooled] == [r["text"] for r in rows_a + rows_b]
    assert groups[0] == groups[1] != groups[3] == groups[4]  # "0" in a and "0" in b stay apart
    assert groups[0] == groups[5]  # the same human passage in two files: one group
    assert len(set(groups)) == 4 and all(g.startswith("c-") for g in groups)
    fit, calibration = split_by_group(pooled, 0.5)
    assert not {r["group"] for r in fit} & {r["group"] for r in calibration}


def test_classifier_training_file_repeats_rows_in_a_stable_interleaved_order():
    rows = ([{"dataset": "big", "label": "machine"}] * 6 + [{"dataset": "small", "label": "human"}] * 2)
    inputs = [f"text number {i}" for i in range(8)]
    repeats = corpus_repeats(rows)
    lines = train_detector.classifier_training_lines(rows, inputs, repeats, "full")
    assert len(lines) == 6 + 2 * 3
    assert sorted(lines) == sorted([f"__label__machine text number {i}\n" for i in range(6)]
                                   + [f"__label__human text number {i}\n" for i in (6, 7)] * 3)
    assert lines == train_detector.classifier_training_lines(rows[::-1], inputs[::-1], repeats, "full")
    # Not one corpus after the other, and no row's repeats all in one run.
    labels = [line.split()[0] for line in lines]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)
    masked = train_detector.classifier_training_lines(rows, inputs, repeats, "masked")
    assert all(line.split()[1:3] == ["w4", "w6"] for line in masked)


def test_logistic_fit_with_an_offset_learns_only_what_the_offset_lacks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2))
    truth = 2.0 * x[:, 0] - 1.0 * x[:, 1]
    y = (rng.random(2000) < 1 / (1 + np.exp(-truth))).astype(float)
    # The offset already knows the first feature: the fit gives it ~0 weight and recovers the second.
    coefficients, intercept = fit_logistic(x, y, np.ones(2000), l2=1.0, offset=2.0 * x[:, 0])
    assert abs(coefficients[0]) < 0.3 and coefficients[1] == pytest.approx(-1.0, abs=0.3)
    plain, _ = fit_logistic(x, y, np.ones(2000), l2=1.0)
    assert plain[0] == pytest.approx(2.0, abs=0.4)


def test_bad_arguments_are_refused(tmp_path):
    parser = argparse.ArgumentParser()
    train_detector.add_arguments(parser)
    args = parser.parse_args(["--train", str(FIXTURE), "--dev", str(FIXTURE), "--output", str(tmp_path),
                              "--calibration-fraction", "1.5"])
    assert train_detector.main(args) == 2


# ----------------------------------------------------------------------------------------------------------
# The command on the fixture


def run_command(output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tailguard.pipelines.train_detector", "--train", str(FIXTURE), "--dev", str(FIXTURE),
         "--output", str(output), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_train_command_is_reproducible_and_its_output_is_a_model_dir(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    report = tmp_path / "report.json"
    a = run_command(first, "--report", str(report))
    assert a.returncode == 0, a.stderr
    b = run_command(second)
    assert b.returncode == 0, b.stderr
    for name in ARTEFACTS:
        assert sha256(first / name) == sha256(second / name), name

    for needle in ("AUROC", "F1", "false-positive rate", "calibration"):
        assert needle in a.stdout

    description = json.loads((first / COMBINER_FILE).read_text())
    assert [f["name"] for f in description["features"]] == list(COMBINER_FEATURES)
    assert description["training"]["train_files_sha256"] == {FIXTURE.name: sha256(FIXTURE)}
    measured = json.loads(report.read_text())
    assert 0.0 <= measured["dev"][FIXTURE.name]["auroc"] <= 1.0

    # The output directory is a complete synthetic.model_dir that the stage loads and scores with.
    detector = SyntheticDetector(first)
    text = read_labelled(FIXTURE)[0]["text"]
    scored = score_texts([{"text": text * 2, "lang": "en"}], detector, SyntheticConfig(model_dir=str(first)))
    assert scored[0].reliable and 0.0 < scored[0].score < 1.0


# ----------------------------------------------------------------------------------------------------------
# The shipped artefacts


def test_shipped_combiner_records_this_code_and_the_shared_training_data():
    """Cheap provenance check: the shipped model says it was trained by this configuration on the shared
    train.jsonl. (The retrain itself is the next test.)"""
    description = json.loads((MODELS_DIR / COMBINER_FILE).read_text())
    training = description["training"]
    assert training["fasttext"]["train"] == dict(FASTTEXT_PARAMS, seed=1, thread=1)
    assert {k: v for k, v in training["fasttext"]["quantize"].items()} == QUANTIZE_PARAMS
    assert training["split_salt"] == SPLIT_SALT
    assert description["leakage"]["logit_per_tell"] == LEAKAGE_LOGIT_PER_TELL
    assert description["thresholds"]["drop"] >= description["thresholds"]["labelled_pairs"]
    if not all((SHARED_SYNTHETIC / name).exists() for name in TRAINING_SETS):
        pytest.skip("../shared/data is not present")
    assert training["train_files_sha256"] == {name: sha256(SHARED_SYNTHETIC / name) for name in TRAINING_SETS}
    for name, digest in training["threshold_human_sha256"].items():
        assert sha256(SHARED_HUMAN / name) == digest


def assert_same_description(built, shipped, path="combiner"):
    """Equal JSON, floats to a relative 1e-9: the combiner is fitted with numpy's BLAS/LAPACK, whose kernels
    (chosen per CPU at run time) may round the last bits differently on another machine. Everything else --
    the fastText model, the word lists, every threshold, count, name and digest -- must be exactly equal."""
    if isinstance(shipped, float) or isinstance(built, float):
        assert isinstance(built, (int, float)) and isinstance(shipped, (int, float)), path
        assert math.isclose(built, shipped, rel_tol=1e-9, abs_tol=1e-12), (path, built, shipped)
    elif isinstance(shipped, dict):
        assert isinstance(built, dict) and sorted(built) == sorted(shipped), path
        for key in shipped:
            assert_same_description(built[key], shipped[key], f"{path}.{key}")
    elif isinstance(shipped, list):
        assert isinstance(built, list) and len(built) == len(shipped), path
        for i, (b, s) in enumerate(zip(built, shipped)):
            assert_same_description(b, s, f"{path}[{i}]")
    else:
        assert built == shipped, (path, built, shipped)


@pytest.mark.skipif(os.environ.get("TAILGUARD_SKIP_DETECTOR_RETRAIN") == "1",
                    reason="TAILGUARD_SKIP_DETECTOR_RETRAIN=1 (the retrain takes ~1 min)")
def test_shipped_artefacts_are_what_the_command_produces(tmp_path):
    """The exact build command, rerun: the shipped classifier and word lists come out byte for byte, the
    combiner to the last bits the platform's BLAS allows (on the machine that built it: byte for byte too)."""
    if not all((SHARED_SYNTHETIC / name).exists() for name in TRAINING_SETS):
        pytest.skip("../shared/data is not present")
    result = subprocess.run(
        [sys.executable, "-m", "tailguard.pipelines.train_detector", *SHIPPED_BUILD_ARGS, "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    for name in ARTEFACTS:
        if name != COMBINER_FILE:
            assert sha256(tmp_path / name) == sha256(MODELS_DIR / name), name
    assert_same_description(json.loads((tmp_path / COMBINER_FILE).read_text()),
                            json.loads((MODELS_DIR / COMBINER_FILE).read_text()))
