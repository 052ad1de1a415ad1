"""Synthetic-text scoring: each signal on crafted texts, the domain guard (empty, short, non-English), the
policy modes, pluggable scorers, config errors, and the whole stage in Beam."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import pytest

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tailguard.pipelines.config import load_config
from tailguard.transforms.settings import ConfigError
from tailguard.transforms.synthetic import (COMBINED_LOGIT, DOWNWEIGHT, EXTRA_PREFIX, FASTTEXT_PROB, REJECT_REASON, STAGE,
                                  ExtraScorerConfig, ScoreSynthetic, SyntheticConfig, SyntheticDetector,
                                  SyntheticScorer, check_models, decide, drop_threshold, load_extra_scorer,
                                  score_texts, synthetic_downweight)
from tailguard.transforms.synthetic_signals import (COMMAS, EXCESS, LEAKAGE, MODELS_DIR, N_WORDS, PARENS, QUOTES,
                                          SEMICOLON_COLON,
                                          TEXT_SIGNALS, SignalLexicons, burstiness, compression_ratio,
                                          excess_vocabulary_rate, fasttext_input, leakage_tells, looks_english,
                                          mean_segmental_ttr, read_versioned_list, repeated_trigram_share,
                                          sentence_lengths, text_signals, tokenize)

HUMAN_ESSAY = (
    "I think that schools should let students pick some of their own classes. When I was in eighth grade I "
    "had to take a class about computers that I already knew everything in, and it was boring. My friend "
    "Jake wanted to take art but there was no room for him, so he sat in study hall all year doing nothing. "
    "If we could choose, we would work harder because we would actually care. Some people say kids would "
    "just pick the easy classes. Maybe a few would. But most kids I know want to learn stuff that matters "
    "to them, like cooking or fixing cars or music, and those things are useful too."
)
DELVING_ESSAY = (
    "In today's rapidly evolving landscape, it is crucial to delve into the pivotal role that elective "
    "courses play in fostering student engagement. Additionally, allowing students to navigate their own "
    "academic journey underscores the importance of autonomy. Furthermore, a comprehensive and meticulous "
    "approach to course selection showcases the multifaceted benefits of personalized learning. Moreover, "
    "this intricate tapestry of choices can enhance motivation and foster a profound sense of ownership. "
    "Ultimately, embracing student choice is a testament to a holistic educational vision."
)
FRENCH = (
    "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et de "
    "conscience et doivent agir les uns envers les autres dans un esprit de fraternité. Chacun peut se "
    "prévaloir de tous les droits et de toutes les libertés proclamés dans la présente Déclaration, sans "
    "distinction aucune, notamment de race, de couleur, de sexe, de langue, de religion, d'opinion politique."
)
GERMAN = (
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen "
    "begabt und sollen einander im Geist der Brüderlichkeit begegnen. Jeder hat Anspruch auf die in dieser "
    "Erklärung verkündeten Rechte und Freiheiten ohne irgendeinen Unterschied."
)
RUSSIAN = (
    "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены разумом и совестью и "
    "должны поступать в отношении друг друга в духе братства."
)
CHINESE = "人人生而自由,在尊严和权利上一律平等。他们赋有理性和良心,并应以兄弟关系的精神相对待。"


@pytest.fixture(scope="module")
def lexicons() -> SignalLexicons:
    return SignalLexicons.load()


@pytest.fixture(scope="module")
def detector() -> SyntheticDetector:
    return SyntheticDetector()


def signals_of(text: str, lexicons: SignalLexicons) -> dict[str, float]:
    return text_signals(text, tokenize(text), lexicons)


# ----------------------------------------------------------------------------------------------------------
# Tokens


def test_tokenize_splits_punctuation_and_flattens_lines():
    tokens = tokenize("Hello, World!\nIt’s “fine”.")
    assert tokens.tokens == ["hello", ",", "world", "!", "it", "'", "s", "“", "fine", "”", "."]
    assert tokens.n_punctuation == 6
    assert tokens.n_words == 5
    assert "\n" not in tokens.classifier_input
    assert fasttext_input("a\nb") .split() == ["a", "b"]
    assert tokenize("").tokens == [] and tokenize("").n_words == 0


# ----------------------------------------------------------------------------------------------------------
# Signal 1: leakage tells


@pytest.mark.parametrize("text, expected", [
    ("As an AI language model, I cannot give personal opinions.", ["as an ai language model"]),
    ("Regenerate\n\nresponse", ["regenerate response"]),
    ("I’m sorry, but I cannot help with that.", ["i ' m sorry , but i cannot"]),
    ("As of my last knowledge update in 2021, the law was different.", ["as of my last knowledge update"]),
    ("Best wishes,\n[Your Name]", ["[ your name ]"]),
    ("CERTAINLY! HERE IS the essay you asked for.", ["certainly ! here is"]),
])
def test_leakage_tells_found(text, expected, lexicons):
    assert leakage_tells(tokenize(text), lexicons) == expected
    assert signals_of(text, lexicons)[LEAKAGE] == len(expected)


@pytest.mark.parametrize("text", [
    "As an airplane pilot I learned patience.",      # shares a prefix, not a token sequence
    "The language model was trained on news.",       # vocabulary of the phrases, not a phrase
    "She said sorry, but then she could not stay.",  # words of a phrase, in another order
    "",
])
def test_leakage_tells_not_found(text, lexicons):
    assert leakage_tells(tokenize(text), lexicons) == []


def test_leakage_list_is_versioned_and_loaded_from_the_package():
    phrases, version = read_versioned_list(MODELS_DIR / "leakage_phrases.txt")
    assert version == "1"
    assert "as an ai language model" in phrases and "regenerate response" in phrases
    assert all(p == p.lower() for p in phrases)


# ----------------------------------------------------------------------------------------------------------
# Signal 2: excess vocabulary


def test_excess_vocabulary_rate_counts_listed_words_per_thousand(lexicons):
    assert excess_vocabulary_rate(tokenize("We delve into the pivotal data."), lexicons) == pytest.approx(
        1000 * 2 / 6)
    assert excess_vocabulary_rate(tokenize(HUMAN_ESSAY), lexicons) == 0.0
    assert signals_of(DELVING_ESSAY, lexicons)[EXCESS] > 100
    assert excess_vocabulary_rate(tokenize(""), lexicons) == 0.0
    _, version = read_versioned_list(MODELS_DIR / "excess_vocabulary.txt")
    assert version == "1"


# ----------------------------------------------------------------------------------------------------------
# Signal 3: text statistics


def test_lexical_diversity_is_low_for_repetition_and_high_for_varied_text():
    repeated = ("the cat sat on the mat " * 30).split()
    varied = [f"word{i}" for i in range(180)]
    assert mean_segmental_ttr(repeated) == pytest.approx(5 / 50)
    assert mean_segmental_ttr(varied) == 1.0
    assert mean_segmental_ttr([]) == 0.0
    assert mean_segmental_ttr(["a", "b", "a"]) == pytest.approx(2 / 3)


def test_compression_ratio_is_lower_for_formulaic_text():
    assert compression_ratio("It is important to note. " * 40) < 0.2
    assert compression_ratio(HUMAN_ESSAY) > 0.45
    assert compression_ratio("") == 1.0


def test_burstiness_separates_uniform_from_varied_sentences():
    uniform = tokenize("One two three four. Five six seven eight. Nine ten eleven twelve.")
    varied = tokenize("Yes. This one is rather a lot longer than the first sentence was. No.")
    assert sentence_lengths(uniform.tokens) == [4, 4, 4]
    assert burstiness(sentence_lengths(uniform.tokens)) == 0.0
    assert burstiness(sentence_lengths(varied.tokens)) > 0.8
    assert burstiness([7]) == 0.0


def test_repeated_trigrams():
    assert repeated_trigram_share("a b c a b c a b c".split()) == pytest.approx(1 - 3 / 7)
    assert repeated_trigram_share("a b c d e f".split()) == 0.0
    assert repeated_trigram_share(["a", "b"]) == 0.0


def test_punctuation_profile(lexicons):
    s = signals_of('He said: "wait; no (really), stop, now."', lexicons)
    n = s[N_WORDS]
    assert n == 7
    assert s[COMMAS] == pytest.approx(2 / n)
    assert s[SEMICOLON_COLON] == pytest.approx(2 / n)
    assert s[QUOTES] == pytest.approx(2 / n)
    assert s[PARENS] == pytest.approx(1 / n)


def test_every_signal_is_finite_for_odd_inputs(lexicons):
    for text in ["", " ", "!!!", "\n\n", "a", CHINESE, "x" * 5000, "...?!", "— – -"]:
        s = signals_of(text, lexicons)
        assert set(s) == set(TEXT_SIGNALS)
        assert all(math.isfinite(v) for v in s.values()), (text, s)


# ----------------------------------------------------------------------------------------------------------
# The language guard


# Dense, content-heavy prose of the kind chat models write: only 12 % of its words are among the 130 common
# function words, which the earlier English test (>= 22 % of them) turned away unscored.
DENSE_PROSE = (
    "Autonomous vehicles present remarkable potential benefits alongside considerable drawbacks. On one hand, "
    "self-driving cars promise improved safety, dependable convenience and fewer fatal collisions. However, "
    "automated driving, relying on camera arrays, lidar sensors and machine-learning software, raises difficult "
    "questions about liability, cybersecurity, employment and public trust. Ultimately, careful regulation, "
    "transparent testing and sustained public dialogue remain essential.")


@pytest.mark.parametrize("text, english", [
    (HUMAN_ESSAY, True), (DELVING_ESSAY, True), (DENSE_PROSE, True), (FRENCH, False), (GERMAN, False), (RUSSIAN, False),
    (CHINESE, False), ("", False), ("12345 67890", False),
])
def test_looks_english(text, english):
    assert looks_english(text, tokenize(text)) is english


# ----------------------------------------------------------------------------------------------------------
# Scoring: signal 4 (classifier) and 5 (combiner), the domain guard


def score_one(doc: dict, detector: SyntheticDetector, config: SyntheticConfig | None = None, extra=()):
    return score_texts([doc], detector, config or SyntheticConfig(), extra)[0]


def test_english_document_gets_a_calibrated_score_with_its_components(detector):
    scored = score_one({"text": HUMAN_ESSAY * 2, "lang": "en"}, detector)
    assert scored.reliable
    assert 0.0 < scored.score < 1.0
    for key in (FASTTEXT_PROB, COMBINED_LOGIT, DOWNWEIGHT, *TEXT_SIGNALS):
        assert key in scored.signals
    assert scored.score == pytest.approx(1 / (1 + math.exp(-scored.signals[COMBINED_LOGIT])))
    assert 0.0 <= scored.signals[FASTTEXT_PROB] <= 1.0


def test_excess_vocabulary_raises_the_score(detector):
    plain = score_one({"text": HUMAN_ESSAY * 2, "lang": "en"}, detector)
    delving = score_one({"text": DELVING_ESSAY * 2, "lang": "en"}, detector)
    assert delving.score > plain.score


def test_a_leakage_tell_is_strong_evidence_even_in_a_short_text(detector):
    text = "As an AI language model, I do not have personal opinions on school uniforms."
    scored = score_one({"text": text, "lang": "en"}, detector)
    assert scored.reliable  # short, but a tell is evidence on its own
    assert scored.score > drop_threshold(SyntheticConfig(), detector)
    without = score_one({"text": "As a student, I do not have strong opinions on school uniforms at all.",
                         "lang": "en"}, detector)
    assert not without.reliable and without.score == 0.5


@pytest.mark.parametrize("doc", [{"text": ""}, {}, {"text": "   "}, {"text": "Too short to judge."},
                                 {"text": "ok", "lang": "en"}])
def test_empty_and_short_texts_are_unreliable_priors(doc, detector):
    scored = score_one(doc, detector)
    assert not scored.reliable
    assert scored.score == SyntheticConfig().prior
    assert scored.signals[DOWNWEIGHT] == 1.0
    assert FASTTEXT_PROB not in scored.signals


@pytest.mark.parametrize("doc", [
    {"text": DELVING_ESSAY * 2, "lang": "fr"},   # langid says French: its verdict wins over the text
    {"text": FRENCH * 2},                         # no langid: the fallback heuristic decides
    {"text": GERMAN * 3, "lang": "de"},
    {"text": RUSSIAN * 4},
    {"text": CHINESE * 10},
])
def test_non_english_is_unreliable_and_never_dropped(doc, detector):
    config = SyntheticConfig(action="drop", max_score=0.0)
    scored = score_one(doc, detector, config)
    assert not scored.reliable
    assert scored.score == config.prior
    assert decide(scored, config, 0.0).reason is None


def test_langid_english_verdict_is_used(detector):
    assert score_one({"text": HUMAN_ESSAY, "lang": "en"}, detector).reliable
    assert not score_one({"text": HUMAN_ESSAY, "lang": "und"}, detector).reliable


def test_scores_do_not_depend_on_the_batch(detector):
    docs = [{"text": HUMAN_ESSAY, "lang": "en"}, {"text": FRENCH}, {"text": DELVING_ESSAY, "lang": "en"}]
    together = score_texts(docs, detector, SyntheticConfig())
    alone = [score_one(d, detector) for d in docs]
    assert [s.score for s in together] == [s.score for s in alone]


# ----------------------------------------------------------------------------------------------------------
# Policy


def test_downweight_function():
    config = SyntheticConfig(downweight_from=0.5, downweight_min=0.25)
    assert synthetic_downweight(0.0, config) == 1.0
    assert synthetic_downweight(0.5, config) == 1.0
    assert synthetic_downweight(0.75, config) == pytest.approx(0.625)
    assert synthetic_downweight(1.0, config) == pytest.approx(0.25)
    grid = [synthetic_downweight(i / 100, config) for i in range(101)]
    assert all(a >= b for a, b in zip(grid, grid[1:]))


def test_policy_modes(detector):
    doc = {"text": DELVING_ESSAY * 2, "lang": "en"}
    tagged = score_one(doc, detector, SyntheticConfig(action="tag"))
    assert DOWNWEIGHT not in tagged.signals
    assert decide(tagged, SyntheticConfig(action="tag"), 0.0).reason is None

    weighted = score_one(doc, detector, SyntheticConfig(action="downweight", downweight_from=0.0))
    assert weighted.signals[DOWNWEIGHT] == pytest.approx(
        synthetic_downweight(weighted.score, SyntheticConfig(downweight_from=0.0)))
    assert weighted.signals[DOWNWEIGHT] < 1.0

    drop = SyntheticConfig(action="drop")
    dropped = score_one(doc, detector, drop)
    below = decide(dropped, drop, threshold=min(dropped.score + 0.01, 1.0))
    above = decide(dropped, drop, threshold=dropped.score - 0.01)
    assert below.reason is None
    assert above.reason == REJECT_REASON and "synthetic_score=" in above.detail


def test_default_drop_threshold_is_the_shipped_one_unless_configured(detector):
    assert drop_threshold(SyntheticConfig(), detector) == detector.combiner.drop_threshold
    assert 0.5 <= detector.combiner.drop_threshold < 1.0
    assert drop_threshold(SyntheticConfig(max_score=0.7), detector) == 0.7


# ----------------------------------------------------------------------------------------------------------
# Pluggable scorers


class ShoutingScorer(SyntheticScorer):
    """A real (if crude) extra opinion: the share of upper-case letters, scaled."""

    name = "shouting"

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.ready = False

    def setup(self) -> None:
        self.ready = True

    def score_batch(self, texts: Sequence[str]) -> list[float]:
        assert self.ready, "setup() must run before scoring"
        out = []
        for text in texts:
            letters = [c for c in text if c.isalpha()]
            share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
            out.append(min(1.0, share * self.scale))
        return out


SHOUTING = f"{__name__}.ShoutingScorer"


def test_extra_scorer_adds_weighted_log_odds(detector):
    doc = {"text": HUMAN_ESSAY.upper() * 2, "lang": "en"}
    base = score_one(doc, detector)
    scorer = load_extra_scorer(ExtraScorerConfig(class_path=SHOUTING, weight=1.0, options={"scale": 0.99}))
    scorer.setup()
    muted = score_one(doc, detector, extra=[(scorer, 0.0)])
    loud = score_one(doc, detector, extra=[(scorer, 1.0)])
    assert muted.score == pytest.approx(base.score)
    assert muted.signals[EXTRA_PREFIX + "shouting"] == pytest.approx(0.99)
    assert loud.signals[COMBINED_LOGIT] == pytest.approx(base.signals[COMBINED_LOGIT] + math.log(0.99 / 0.01))
    assert loud.score > base.score


def test_extra_scorer_returning_nonsense_is_an_error(detector):
    scorer = load_extra_scorer(ExtraScorerConfig(class_path=SHOUTING, options={"scale": -1.0}))
    scorer.setup()
    with pytest.raises(ValueError, match="outside"):
        score_one({"text": HUMAN_ESSAY.upper() * 2, "lang": "en"}, detector, extra=[(scorer, 1.0)])


def test_extra_scorer_config_errors():
    config = load_config(None, [f"synthetic.extra_scorers=[{{class_path: {SHOUTING}, weight: 0.5, "
                                f"options: {{scale: 2}}}}]"])
    assert config.synthetic.extra_scorers[0].options == {"scale": 2}
    check_models(config)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["synthetic.extra_scorers=[{class_path: NoDots}]"])
    assert e.value.key == "synthetic.extra_scorers[0].class_path"
    with pytest.raises(ConfigError) as e:
        check_models(replace(config.synthetic, extra_scorers=[ExtraScorerConfig(class_path="no.such.Scorer")]))
    assert e.value.key == "synthetic.extra_scorers[0].class_path"
    with pytest.raises(ConfigError) as e:
        check_models(replace(config.synthetic, extra_scorers=[
            ExtraScorerConfig(class_path=SHOUTING, options={"volume": 11})]))
    assert e.value.key == "synthetic.extra_scorers[0].options"
    with pytest.raises(ConfigError) as e:
        check_models(replace(config.synthetic, extra_scorers=[
            ExtraScorerConfig(class_path="tailguard.transforms.synthetic.SyntheticConfig")]))
    assert "not a SyntheticScorer" in e.value.message


# ----------------------------------------------------------------------------------------------------------
# Config and model files


@pytest.mark.parametrize("override, key", [
    ("synthetic.action=delete", "synthetic.action"),
    ("synthetic.max_score=1.5", "synthetic.max_score"),
    ("synthetic.downweight_from=1.0", "synthetic.downweight_from"),
    ("synthetic.min_words=0", "synthetic.min_words"),
    ("synthetic.model_dir=/no/such/dir", "synthetic.model_dir"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert e.value.key == key


def test_model_dir_override_and_missing_files(tmp_path):
    with pytest.raises(ConfigError) as e:
        check_models(SyntheticConfig(model_dir=str(tmp_path)))
    assert e.value.key == "synthetic.model_dir"
    for f in MODELS_DIR.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    check_models(SyntheticConfig(model_dir=str(tmp_path)))
    assert SyntheticDetector(tmp_path).name == SyntheticDetector().name


def test_shipped_models_are_small():
    total = sum(f.stat().st_size for f in MODELS_DIR.iterdir() if f.is_file())
    assert total < 5 * 1024 * 1024
    assert (MODELS_DIR / "SYNTHETIC_DETECTOR.md").exists()


# ----------------------------------------------------------------------------------------------------------
# The stage in Beam


def test_stage_annotates_routes_and_counts(beam_pipeline):
    docs = [
        {"doc_id": "human", "text": HUMAN_ESSAY * 2, "lang": "en"},
        {"doc_id": "delving", "text": DELVING_ESSAY * 2, "lang": "en"},
        {"doc_id": "leaky", "text": "As an AI language model, I cannot browse the internet. " + HUMAN_ESSAY,
         "lang": "en"},
        {"doc_id": "french", "text": FRENCH * 2, "lang": "fr"},
        {"doc_id": "empty", "text": ""},
    ]
    config = SyntheticConfig(action="drop", max_score=0.9)
    detector = SyntheticDetector()
    expected = {d["doc_id"]: s for d, s in zip(docs, score_texts(docs, detector, config))}
    expected_rejected = sorted(k for k, s in expected.items() if s.reliable and s.score > 0.9)
    assert "leaky" in expected_rejected and "french" not in expected_rejected

    p = beam_pipeline()
    out = p | beam.Create(docs) | ScoreSynthetic(config)
    kept_view = out.kept | "KeptView" >> beam.Map(lambda d: (d["doc_id"], round(d["synthetic_score"], 9),
                                                             d["synthetic_reliable"]))
    rejected_view = out.rejected | "RejectedView" >> beam.Map(
        lambda d: (d["doc_id"], d["rejected_by"], d["reject_reason"], d["synthetic_detector"]))
    assert_that(kept_view, equal_to([(k, round(s.score, 9), s.reliable) for k, s in expected.items()
                                     if k not in expected_rejected]), label="kept")
    assert_that(rejected_view, equal_to([(k, STAGE, REJECT_REASON, detector.name) for k in expected_rejected]),
                label="rejected")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
                if c.key.metric.namespace == STAGE}
    assert counters["in"] == len(docs)
    assert counters["kept"] + counters.get(f"rejected.{REJECT_REASON}", 0) == len(docs)
    assert counters.get(f"rejected.{REJECT_REASON}", 0) == len(expected_rejected)
    assert counters["unreliable"] == 2


def test_disabled_stage_passes_everything_through(beam_pipeline):
    docs = [{"doc_id": "a", "text": HUMAN_ESSAY}]
    with beam_pipeline() as p:
        out = p | beam.Create(docs) | ScoreSynthetic(SyntheticConfig(enabled=False))
        assert_that(out.kept, equal_to(docs), label="kept")
        assert_that(out.rejected, equal_to([]), label="rejected")


def test_stage_with_an_extra_scorer_from_config(beam_pipeline):
    config = SyntheticConfig(action="tag", extra_scorers=[ExtraScorerConfig(class_path=SHOUTING, weight=0.5)])
    docs = [{"doc_id": "x", "text": HUMAN_ESSAY * 2, "lang": "en"}]
    with beam_pipeline() as p:
        out = p | beam.Create(docs) | ScoreSynthetic(config)
        view = out.kept | beam.Map(lambda d: ("shouting" in d["synthetic_detector"],
                                              EXTRA_PREFIX + "shouting" in d["synthetic_signals"]))
        assert_that(view, equal_to([(True, True)]))
