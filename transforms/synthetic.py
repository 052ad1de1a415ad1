"""Synthetic-text scoring: every document gets an honest, explainable estimate that a model wrote it.

How the score is made
---------------------
1. **Signals** (``transforms/synthetic_signals.py``, CPU only): leakage tells, excess vocabulary and text
   statistics, plus the probability from a small supervised **fastText** classifier (human vs machine,
   ``models/synthetic_fasttext.ftz``).
2. A **combiner** (``models/synthetic_combiner.json``) turns them into log-odds: a logistic regression over
   standardised signals, fitted on a group-disjoint part of the training data the classifier never saw, so
   its output is a calibrated probability at a balanced (50 %) prior. Leakage tells carry a fixed, documented
   weight because the training data holds too few of them to fit one.
3. **Extra scorers** from config (``synthetic.extra_scorers``), e.g. a perplexity scorer on GPU workers, add
   their own weighted log-odds -- see :class:`SyntheticScorer`.

Every value that went into the score is written to ``synthetic_signals``; ``synthetic_detector`` names the
model build. Out of its domain (not English, or fewer than ``synthetic.min_words`` words without a leakage
tell) the detector does not guess: ``synthetic_reliable`` is false, the score is the prior, and no policy
acts on it.

Policy (``synthetic.action``): ``tag`` only annotates; ``downweight`` also records
:func:`synthetic_downweight` as ``synthetic_signals["downweight"]`` for the rarity stage to multiply into
``sample_weight``; ``drop`` rejects reliable documents scoring above the drop threshold with
``reject_reason: synthetic``. Why the defaults are what they are: ``benchmarks/README.md`` (section
"Synthetic-text scoring").
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import apache_beam as beam

from tailguard.transforms.fasttext_models import load_classifier
from tailguard.transforms.settings import ConfigError, require, require_fraction
from tailguard.transforms.text import stable_fraction
from tailguard.transforms.stage import (Decision, KEEP, PassThrough, StageMetrics, StageOutputs, fixed_batches, route,
                              split_outputs, with_rejected_output)
from tailguard.transforms.synthetic_signals import (BURSTINESS, CLASSIFIER_VIEWS, EXCESS, LEAKAGE, MSTTR, MEAN_WORD_LEN,
                                          MODELS_DIR, N_WORDS, REPEATED_TRIGRAMS, SignalLexicons, Tokens,
                                          classifier_view, looks_english, text_signals, tokenize)

STAGE = "synthetic"
REJECT_REASON = "synthetic"

FASTTEXT_FILE = "synthetic_fasttext.ftz"
COMBINER_FILE = "synthetic_combiner.json"
MACHINE_LABEL = "__label__machine"

# Signal names added next to the text signals.
FASTTEXT_PROB = "fasttext_machine_prob"
COMBINED_LOGIT = "combined_logit"
DOWNWEIGHT = "downweight"
EXTRA_PREFIX = "extra."

EXTRA_SAMPLE_SALT = "tailguard-synthetic-extra"

ENGLISH_CODES = frozenset({"en", "eng"})
_LOGIT_CLIP = 1e-4


# ----------------------------------------------------------------------------------------------------------
# Config


@dataclass
class ExtraScorerConfig:
    """One additional scorer: a :class:`SyntheticScorer` subclass by import path, its weight and options."""

    class_path: str = ""
    # Multiplies the scorer's log-odds before they are added to the combiner's: 1 trusts it as much as the
    # built-in evidence, 0 records it without letting it move the score.
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    # Run the scorer only where the built-in detector is unsure: documents whose built-in score lies in
    # [low, high]. An expensive scorer (a language model) spends nothing on the documents the cheap evidence
    # already settles. [0, 1] = every reliable document.
    score_band: list[float] = field(default_factory=lambda: [0.0, 1.0])
    # Of the documents in the band, the share the scorer sees: a stable hash of the text decides (not a
    # per-batch quota), so a document's score never depends on its batch, and the scorer sees at most this
    # share of all documents (in-band share x max_share).
    max_share: float = 1.0

    def validate(self) -> None:
        module, _, name = self.class_path.rpartition(".")
        require(bool(module) and bool(name), "class_path",
                f"must be 'package.module.ClassName', got {self.class_path!r}")
        require(math.isfinite(self.weight), "weight", f"must be a finite number, got {self.weight!r}")
        band = tuple(self.score_band) if isinstance(self.score_band, (list, tuple)) else ()
        require(len(band) == 2 and all(isinstance(b, (int, float)) for b in band)
                and 0.0 <= band[0] < band[1] <= 1.0, "score_band",
                f"must be [low, high] with 0 <= low < high <= 1, got {self.score_band!r}")
        require(isinstance(self.max_share, (int, float)) and 0.0 < self.max_share <= 1.0, "max_share",
                f"must be in (0, 1], got {self.max_share!r}")

    def selects(self, cheap_score: float, text: str) -> bool:
        """Whether this scorer runs on a document the built-in detector scored ``cheap_score``."""
        low, high = self.score_band
        if not low <= cheap_score <= high:
            return False
        return self.max_share >= 1.0 or stable_fraction(text, EXTRA_SAMPLE_SALT) < self.max_share


@dataclass
class SyntheticConfig:
    enabled: bool = True
    # tag: annotate only. downweight: also record synthetic_downweight() in synthetic_signals["downweight"]
    # for the rarity stage. drop: reject reliable documents scoring above the drop threshold.
    action: Literal["tag", "downweight", "drop"] = "downweight"
    # Drop threshold on synthetic_score; null = the shipped detector's own threshold, chosen at training for
    # <= 1 % false positives on the held-out human text of every training corpus and of human prose from
    # other domains (synthetic_combiner.json "thresholds").
    max_score: Optional[float] = None
    # downweight: weight 1 up to this score, then falling linearly to downweight_min at score 1.
    downweight_from: float = 0.75
    downweight_min: float = 0.25
    # Fewer words than this (and no leakage tell) and the score is not trusted: synthetic_reliable=false.
    min_words: int = 50
    # The score an unreliable document gets: the combiner is calibrated at a balanced prior, so 0.5 says
    # "no evidence either way".
    prior: float = 0.5
    # Directory holding synthetic_fasttext.ftz, synthetic_combiner.json and the two word lists;
    # empty = the models shipped inside the package (transforms/models).
    model_dir: str = ""
    extra_scorers: list[ExtraScorerConfig] = field(default_factory=list)
    batch_size: int = 512

    def validate(self) -> None:
        if self.max_score is not None:
            require_fraction(self.max_score, "max_score")
        require_fraction(self.downweight_from, "downweight_from", allow_one=False)
        require_fraction(self.downweight_min, "downweight_min")
        require_fraction(self.prior, "prior")
        require(self.min_words >= 1, "min_words", f"must be >= 1, got {self.min_words}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        if self.model_dir:
            require(Path(self.model_dir).is_dir(), "model_dir", f"{self.model_dir!r} is not a local directory")
        for i, extra in enumerate(self.extra_scorers):
            try:
                extra.validate()
            except ConfigError as e:
                raise e.under(f"extra_scorers[{i}]") from None

    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else MODELS_DIR


# ----------------------------------------------------------------------------------------------------------
# Pluggable scorers


class SyntheticScorer(abc.ABC):
    """An additional opinion on whether texts are machine-written, added through config, not code.

    Subclass it in any importable module and list it under ``synthetic.extra_scorers``::

        synthetic:
          extra_scorers:
            - class_path: mypkg.perplexity.PerplexityScorer
              weight: 1.0
              options: {model: /models/gpt2, device: cuda}

    The stage constructs it as ``Class(**options)`` when the DoFn is set up on a worker, calls
    :meth:`setup` once there (load models here, never at import), then :meth:`score_batch` with the texts of
    the reliable (English, long enough) documents of each batch. Its probability joins the score as
    ``weight * logit(p)`` and is recorded as ``synthetic_signals["extra.<name>"]``.
    """

    #: Short name used in ``synthetic_signals`` and ``synthetic_detector``; defaults to the class name.
    name: str = ""

    def setup(self) -> None:
        """Load heavy resources; called once per worker."""

    @abc.abstractmethod
    def score_batch(self, texts: Sequence[str]) -> Sequence[float]:
        """Probability in [0, 1] that each text is machine-generated."""

    @property
    def version(self) -> str:
        return "1"


def load_extra_scorer(spec: ExtraScorerConfig) -> SyntheticScorer:
    module_name, _, class_name = spec.class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError("class_path", f"cannot import {spec.class_path!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, SyntheticScorer)):
        raise ConfigError("class_path", f"{spec.class_path!r} is not a SyntheticScorer subclass")
    try:
        scorer = cls(**spec.options)
    except TypeError as e:
        raise ConfigError("options", f"{spec.class_path} rejected its options: {e}") from None
    if not scorer.name:
        scorer.name = class_name
    return scorer


# ----------------------------------------------------------------------------------------------------------
# The shipped detector: fastText + combiner


def logit(p: float) -> float:
    p = min(max(p, _LOGIT_CLIP), 1.0 - _LOGIT_CLIP)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def combiner_features(signals: dict[str, float], fasttext_prob: float) -> list[float]:
    """The combiner's inputs, in the order of ``COMBINER_FEATURES``; training and scoring both call this."""
    return [logit(fasttext_prob), math.log1p(signals[EXCESS])] + [
        signals[name] for name in COMBINER_TEXT_STATISTICS]


# Text statistics the combiner weighs directly, besides the classifier and the excess vocabulary.
COMBINER_TEXT_STATISTICS: tuple[str, ...] = (MEAN_WORD_LEN, BURSTINESS, REPEATED_TRIGRAMS, MSTTR)
COMBINER_FEATURES: tuple[str, ...] = ("fasttext_logit", "log1p_excess_vocab_per_1k") + COMBINER_TEXT_STATISTICS


@dataclass(frozen=True)
class Combiner:
    """Logistic regression over standardised features, plus the fixed leakage-tell term."""

    feature_names: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    leakage_logit_per_tell: float
    leakage_max_tells: int
    drop_threshold: float
    raw: dict

    @classmethod
    def from_json(cls, data: dict) -> "Combiner":
        features = data["features"]
        names = tuple(f["name"] for f in features)
        if names != COMBINER_FEATURES:
            raise ValueError(f"combiner features {names} do not match this code's {COMBINER_FEATURES}")
        return cls(
            feature_names=names,
            means=tuple(float(f["mean"]) for f in features),
            scales=tuple(float(f["scale"]) for f in features),
            coefficients=tuple(float(f["coefficient"]) for f in features),
            intercept=float(data["intercept"]),
            leakage_logit_per_tell=float(data["leakage"]["logit_per_tell"]),
            leakage_max_tells=int(data["leakage"]["max_tells"]),
            drop_threshold=float(data["thresholds"]["drop"]),
            raw=data,
        )

    def logit(self, features: Sequence[float], leakage_count: float) -> float:
        """Log-odds for one document. Computed per document in a fixed order with scalar floats -- not as one
        matrix product over the batch -- so a document's score never depends on which batch it landed in
        (vectorised kernels may round differently for different batch sizes)."""
        total = self.intercept
        for value, mean, scale, coefficient in zip(features, self.means, self.scales, self.coefficients):
            total += coefficient * ((value - mean) / scale)
        return total + min(leakage_count, self.leakage_max_tells) * self.leakage_logit_per_tell


class SyntheticDetector:
    """Everything the stage loads once per worker: the classifier, the combiner and the word lists."""

    def __init__(self, model_dir: Path | str = MODELS_DIR):
        model_dir = Path(model_dir)
        self.model_dir = model_dir
        self.lexicons = SignalLexicons.load(model_dir)
        combiner_path = model_dir / COMBINER_FILE
        data = json.loads(combiner_path.read_text(encoding="utf-8"))
        self.combiner = Combiner.from_json(data)
        model_path = model_dir / data.get("fasttext_model", FASTTEXT_FILE)
        self.classifier = load_classifier(str(model_path))
        # What of the text the classifier reads (synthetic_signals.CLASSIFIER_VIEWS); older builds read all of it.
        self.view = data.get("classifier_view", "full")
        if self.view not in CLASSIFIER_VIEWS:
            raise ValueError(f"unknown classifier_view {self.view!r} in {combiner_path}")
        digest = hashlib.sha256(model_path.read_bytes() + combiner_path.read_bytes()).hexdigest()[:8]
        self.name = f"{data['name']}/{data['version']}+{digest} ({self.lexicons.version})"

    def machine_probabilities(self, classifier_inputs: Sequence[str]) -> list[float]:
        """The classifier's P(machine) for texts already tokenised (``Tokens.classifier_input``)."""
        if self.view != "full":
            classifier_inputs = [classifier_view(text, self.view) for text in classifier_inputs]
        return classifier_machine_probabilities(self.classifier, classifier_inputs)


def classifier_machine_probabilities(classifier: Any, classifier_inputs: Sequence[str]) -> list[float]:
    if not classifier_inputs:
        return []
    # Two labels whose probabilities sum to one: the top label alone (k=1) says everything, and is cheaper.
    labels, probs = classifier.predict(list(classifier_inputs), k=1, threshold=0.0)
    out = []
    for doc_labels, doc_probs in zip(labels, probs):
        if not doc_labels:
            out.append(0.5)
            continue
        p = float(doc_probs[0])
        p = p if doc_labels[0] == MACHINE_LABEL else 1.0 - p
        out.append(min(max(p, 0.0), 1.0))
    return out


def check_models(config: Any) -> None:
    """Fail before the pipeline is built if the detector files are missing or unreadable.

    Accepts the whole run config or its ``synthetic`` section; raises ConfigError naming ``synthetic.model_dir``
    (or the offending ``synthetic.extra_scorers[i]`` key).
    """
    section: SyntheticConfig = getattr(config, "synthetic", config)
    if not section.enabled:
        return
    try:
        SyntheticDetector(section.models_path())
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError("synthetic.model_dir",
                          f"cannot load the detector from {section.models_path()}: {e}") from None
    for i, spec in enumerate(section.extra_scorers):
        try:
            load_extra_scorer(spec)
        except ConfigError as e:
            raise e.under(f"synthetic.extra_scorers[{i}]") from None


# ----------------------------------------------------------------------------------------------------------
# Pure policy and scoring


def shipped_drop_threshold(model_dir: Path | str = MODELS_DIR) -> float:
    """The drop threshold a detector build was calibrated with (its combiner file), without loading the model."""
    path = Path(model_dir) / COMBINER_FILE
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["thresholds"]["drop"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("synthetic.model_dir", f"cannot read the drop threshold from {path}: {e}") from None


def drop_threshold(config: SyntheticConfig, detector: SyntheticDetector) -> float:
    return config.max_score if config.max_score is not None else detector.combiner.drop_threshold


def synthetic_downweight(score: float, config: SyntheticConfig) -> float:
    """Factor for ``sample_weight``: 1 up to ``downweight_from``, then linear down to ``downweight_min`` at 1.

    Linear rather than, say, ``1 - score`` so that the large mass of human text scoring a little above the
    prior (detectors are imperfect, and non-native writing scores higher) keeps its full weight, and even a
    confidently flagged document keeps ``downweight_min`` of it: a false positive costs a fraction of one
    document's weight, never the document.
    """
    if score <= config.downweight_from:
        return 1.0
    span = 1.0 - config.downweight_from
    excess = min((score - config.downweight_from) / span, 1.0)
    return 1.0 - excess * (1.0 - config.downweight_min)


def is_english(doc: dict[str, Any], text: str, tokens: Tokens) -> bool:
    """The langid stage's verdict when it ran; otherwise the cheap script and function-word test."""
    lang = doc.get("lang")
    if lang is not None:
        return lang in ENGLISH_CODES
    return looks_english(text, tokens)


@dataclass
class ScoredDocument:
    score: float
    signals: dict[str, float]
    reliable: bool


def score_texts(docs: Sequence[dict[str, Any]], detector: SyntheticDetector, config: SyntheticConfig,
                extra_scorers: Sequence[tuple[SyntheticScorer, float]] = ()) -> list[ScoredDocument]:
    """``extra_scorers`` pairs each scorer with its weight, or with its whole :class:`ExtraScorerConfig`
    (weight, score band and share)."""
    """Score a batch of documents: signals for all, models only for the ones in the detector's domain."""
    texts = [doc.get("text") or "" for doc in docs]
    signals: list[dict[str, float]] = []
    reliable: list[bool] = []
    classifier_inputs: list[str] = []
    for doc, text in zip(docs, texts):
        tokens = tokenize(text)
        doc_signals = text_signals(text, tokens, detector.lexicons)
        english = is_english(doc, text, tokens)
        long_enough = doc_signals[N_WORDS] >= config.min_words or doc_signals[LEAKAGE] > 0
        signals.append(doc_signals)
        reliable.append(english and long_enough)
        classifier_inputs.append(tokens.classifier_input)

    in_domain = [i for i, ok in enumerate(reliable) if ok]
    scores = [config.prior] * len(docs)
    if in_domain:
        domain_texts = [texts[i] for i in in_domain]
        probs = detector.machine_probabilities([classifier_inputs[i] for i in in_domain])
        combiner = detector.combiner
        logits = [combiner.logit(combiner_features(signals[i], p), signals[i][LEAKAGE])
                  for i, p in zip(in_domain, probs)]
        cheap = [sigmoid(z) for z in logits]
        for scorer, spec in extra_scorers:
            if isinstance(spec, ExtraScorerConfig):
                weight = spec.weight
                chosen = [j for j, text in enumerate(domain_texts) if spec.selects(cheap[j], text)]
            else:
                weight, chosen = spec, list(range(len(domain_texts)))
            extra = [float(p) for p in scorer.score_batch([domain_texts[j] for j in chosen])] if chosen else []
            if len(extra) != len(chosen):
                raise ValueError(f"extra scorer {scorer.name} returned {len(extra)} scores "
                                 f"for {len(chosen)} texts")
            if not all(0.0 <= p <= 1.0 for p in extra):  # also false for NaN
                raise ValueError(f"extra scorer {scorer.name} returned a score outside [0, 1]")
            for j, p in zip(chosen, extra):
                signals[in_domain[j]][EXTRA_PREFIX + scorer.name] = p
                logits[j] += weight * logit(p)
        for j, i in enumerate(in_domain):
            signals[i][FASTTEXT_PROB] = probs[j]
            signals[i][COMBINED_LOGIT] = logits[j]
            scores[i] = sigmoid(logits[j])

    out = []
    for i in range(len(docs)):
        if config.action == "downweight":
            signals[i][DOWNWEIGHT] = synthetic_downweight(scores[i], config) if reliable[i] else 1.0
        out.append(ScoredDocument(scores[i], signals[i], reliable[i]))
    return out


def decide(scored: ScoredDocument, config: SyntheticConfig, threshold: float) -> Decision:
    """Reject only under ``action: drop``, only a reliable score, only above the threshold."""
    if config.action != "drop" or not scored.reliable or scored.score <= threshold:
        return KEEP
    return Decision(REJECT_REASON, f"synthetic_score={scored.score:.4f} > max_score={threshold:.4f}")


def annotate(doc: dict[str, Any], scored: ScoredDocument, detector_name: str) -> dict[str, Any]:
    out = dict(doc)
    out["synthetic_score"] = scored.score
    out["synthetic_signals"] = scored.signals
    out["synthetic_reliable"] = scored.reliable
    out["synthetic_detector"] = detector_name
    return out


def detector_label(detector: SyntheticDetector, extra_scorers: Sequence[tuple[SyntheticScorer, Any]]) -> str:
    extras = "".join(f" + {scorer.name}/{scorer.version}*{getattr(spec, 'weight', spec):g}"
                     for scorer, spec in extra_scorers)
    return detector.name + extras


# ----------------------------------------------------------------------------------------------------------
# Beam wiring


class _ScoreAndRouteBatch(beam.DoFn):
    def __init__(self, config: SyntheticConfig):
        self._config = config
        self._detector: Optional[SyntheticDetector] = None
        self._extra: list[tuple[SyntheticScorer, ExtraScorerConfig]] = []
        self._label = ""
        self._threshold = 1.0
        self._metrics: Optional[StageMetrics] = None

    def setup(self) -> None:
        self._detector = SyntheticDetector(self._config.models_path())
        self._extra = []
        for spec in self._config.extra_scorers:
            scorer = load_extra_scorer(spec)
            scorer.setup()
            self._extra.append((scorer, spec))
        self._label = detector_label(self._detector, self._extra)
        self._threshold = drop_threshold(self._config, self._detector)
        self._metrics = StageMetrics(STAGE)

    def process(self, batch: list[dict[str, Any]]):
        metrics = self._metrics
        with metrics.timed():
            metrics.saw(len(batch))
            scored = score_texts(batch, self._detector, self._config, self._extra)
            unreliable = sum(1 for s in scored if not s.reliable)
            if unreliable:
                metrics.count("unreliable", unreliable)
            extra_scored = sum(1 for s in scored if any(k.startswith(EXTRA_PREFIX) for k in s.signals))
            if extra_scored:
                metrics.count("extra_scored", extra_scored)
            above = sum(1 for s in scored if s.reliable and s.score > self._threshold)
            if above:
                metrics.count("above_drop_threshold", above)
            docs = [annotate(doc, s, self._label) for doc, s in zip(batch, scored)]
            decisions = [decide(s, self._config, self._threshold) for s in scored]
            outputs = list(route(docs, decisions, STAGE, metrics))
        yield from outputs


class ScoreSynthetic(beam.PTransform):
    """Score every document for machine authorship and apply the configured policy to the score."""

    def __init__(self, config: SyntheticConfig, label: Optional[str] = None):
        super().__init__(label)
        self._config = config

    def expand(self, docs) -> StageOutputs:
        if not self._config.enabled:
            return docs | "SyntheticOff" >> PassThrough()
        result = (
            docs
            | "BatchForDetector" >> fixed_batches(self._config.batch_size)
            | "ScoreAndRoute" >> with_rejected_output(beam.ParDo(_ScoreAndRouteBatch(self._config)))
        )
        return split_outputs(result)
