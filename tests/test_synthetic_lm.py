"""The opt-in language-model tier: the likelihood statistics (pure numpy), the score band and share that decide
which documents an extra scorer sees, config errors naming their key, and -- when the ``lm`` extra is
installed -- the real scorer with SmolLM2-135M on a few texts and in the stage."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Sequence

import numpy as np
import pytest

from tailguard.pipelines.config import load_config
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.synthetic import (COMBINED_LOGIT, EXTRA_PREFIX, ExtraScorerConfig, SyntheticConfig,
                                            SyntheticDetector, SyntheticScorer, check_models, score_texts)
from benchmarks.synthetic_lm_scorer import LM_STATISTICS, likelihood_statistics

PARAGRAPH = (
    "The committee met on Thursday to review the budget for the coming year. After a long discussion, the "
    "members agreed to increase funding for the public library and to delay the repairs to the town hall "
    "until the spring. The mayor said she was pleased with the outcome and thanked the volunteers who had "
    "helped prepare the proposal. Residents will be able to comment on the plan at a meeting next month."
)


@pytest.fixture(scope="module")
def detector() -> SyntheticDetector:
    return SyntheticDetector()


# ----------------------------------------------------------------------------------------------------------
# Statistics


def test_statistics_of_a_uniform_model():
    vocabulary = 50
    stats = likelihood_statistics(np.zeros((4, vocabulary)), [0, 7, 3, 49])
    assert stats["mean_entropy"] == pytest.approx(math.log(vocabulary))
    assert stats["mean_log_likelihood"] == pytest.approx(-math.log(vocabulary))
    assert stats["mean_log_rank"] == 0.0  # every token ties for first
    assert stats["analytic_discrepancy"] == pytest.approx(0.0, abs=1e-3)


def test_the_models_favourite_tokens_score_as_more_machine_like():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 100)) * 3
    top = logits.argmax(axis=1)
    rare = logits.argmin(axis=1)
    mode = likelihood_statistics(logits, top)
    tail = likelihood_statistics(logits, rare)
    assert mode["analytic_discrepancy"] > 0 > tail["analytic_discrepancy"]
    assert mode["mean_log_rank"] == 0.0 and tail["mean_log_rank"] == pytest.approx(math.log(100))
    assert mode["mean_log_likelihood"] > tail["mean_log_likelihood"]
    assert mode["mean_entropy"] == tail["mean_entropy"]


@pytest.mark.parametrize("seed", range(40))
def test_statistics_are_finite_and_bounded(seed):
    # Random shapes and logit scales from near-uniform to near-one-hot (scale 0 to 200).
    rng = np.random.default_rng(seed)
    n, vocabulary = int(rng.integers(1, 20)), int(rng.integers(2, 40))
    logits = rng.normal(size=(n, vocabulary)) * float(rng.choice([0.0, 0.1, 1.0, 10.0, 200.0]))
    stats = likelihood_statistics(logits, rng.integers(0, vocabulary, size=n))
    assert set(stats) == set(LM_STATISTICS)
    assert all(math.isfinite(v) for v in stats.values())
    assert -1e-9 <= stats["mean_entropy"] <= math.log(vocabulary) + 1e-9
    assert 0.0 <= stats["mean_log_rank"] <= math.log(vocabulary) + 1e-9
    assert stats["mean_log_likelihood"] <= 1e-9


def test_statistics_refuse_mismatched_shapes():
    with pytest.raises(ValueError):
        likelihood_statistics(np.zeros((3, 5)), [1, 2])
    with pytest.raises(ValueError):
        likelihood_statistics(np.zeros((0, 5)), [])


# ----------------------------------------------------------------------------------------------------------
# Which documents an extra scorer sees


class RecordingScorer(SyntheticScorer):
    """Says 0.9 for every text and remembers which texts it was asked about."""

    name = "recording"

    def __init__(self):
        self.seen: list[str] = []

    def score_batch(self, texts: Sequence[str]) -> list[float]:
        self.seen.extend(texts)
        return [0.9] * len(texts)


RECORDING = f"{__name__}.RecordingScorer"


def corpus(n: int = 60) -> list[dict]:
    rng = random.Random(7)
    words = PARAGRAPH.split()
    return [{"text": " ".join(rng.sample(words, len(words))) + f" Item {i}.", "lang": "en"} for i in range(n)]


def test_band_limits_the_scorer_to_uncertain_documents(detector):
    docs = corpus()
    config = SyntheticConfig(action="tag")
    cheap = score_texts(docs, detector, config)
    scores = sorted(s.score for s in cheap)
    low, high = scores[15], scores[45]  # the middle half
    spec = ExtraScorerConfig(class_path=RECORDING, score_band=[low, high])
    scorer = RecordingScorer()
    both = score_texts(docs, detector, config, [(scorer, spec)])
    inside = [low <= c.score <= high for c in cheap]
    assert sorted(scorer.seen) == sorted(d["text"] for d, ok in zip(docs, inside) if ok)
    for c, b, ok in zip(cheap, both, inside):
        if ok:
            assert b.signals[EXTRA_PREFIX + "recording"] == 0.9
            assert b.signals[COMBINED_LOGIT] == pytest.approx(c.signals[COMBINED_LOGIT] + math.log(0.9 / 0.1))
        else:
            assert b.score == c.score and not any(k.startswith(EXTRA_PREFIX) for k in b.signals)


def test_max_share_samples_by_text_not_by_batch(detector):
    docs = corpus(200)
    config = SyntheticConfig(action="tag")
    spec = ExtraScorerConfig(class_path=RECORDING, max_share=0.25)
    whole = RecordingScorer()
    score_texts(docs, detector, config, [(whole, spec)])
    pieces = RecordingScorer()
    for i in range(0, len(docs), 7):  # other batches, other order
        score_texts(list(reversed(docs[i:i + 7])), detector, config, [(pieces, spec)])
    assert sorted(whole.seen) == sorted(pieces.seen)
    assert 0.1 <= len(whole.seen) / len(docs) <= 0.4


@pytest.mark.parametrize("entry, key", [
    ("{class_path: a.B, score_band: [0.9, 0.2]}", "synthetic.extra_scorers[0].score_band"),
    ("{class_path: a.B, score_band: [0.2]}", "synthetic.extra_scorers[0].score_band"),
    ("{class_path: a.B, score_band: [-0.1, 0.5]}", "synthetic.extra_scorers[0].score_band"),
    ("{class_path: a.B, max_share: 0}", "synthetic.extra_scorers[0].max_share"),
    ("{class_path: a.B, max_share: 1.5}", "synthetic.extra_scorers[0].max_share"),
])
def test_band_and_share_config_errors_name_the_key(entry, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"synthetic.extra_scorers=[{entry}]"])
    assert e.value.key == key


LM_CLASS = "benchmarks.synthetic_lm_scorer.LikelihoodScorer"


def test_missing_model_is_a_config_error_naming_the_key(tmp_path):
    config = SyntheticConfig(extra_scorers=[ExtraScorerConfig(class_path=LM_CLASS,
                                                              options={"model_path": str(tmp_path / "no.gguf")})])
    with pytest.raises(ConfigError) as e:
        check_models(config)
    assert e.value.key == "synthetic.extra_scorers[0].options.model_path"
    bad = replace(config, extra_scorers=[ExtraScorerConfig(class_path=LM_CLASS, options={"max_tokens": 4})])
    with pytest.raises(ConfigError) as e:
        check_models(bad)
    assert e.value.key == "synthetic.extra_scorers[0].options.max_tokens"
