"""The cheap, model-free evidence that a text was machine-written: pure functions over one text.

Each function here is a *signal* the synthetic-text combiner weighs (see ``transforms/synthetic.py``):

* leakage tells -- phrases chat models leave in published text ("as an AI language model", "regenerate
  response"); a curated, versioned list in ``transforms/models/leakage_phrases.txt``;
* excess vocabulary -- the rate of words whose use jumped after 2022 (Kobak et al. 2024), per 1,000 words;
* text statistics -- lexical diversity, compression ratio, sentence-length burstiness, repeated n-grams and
  the punctuation profile.

They are written for throughput (a detector runs over every document): every statistic is computed from one
tokenisation and a handful of C-level string operations, never a per-character Python loop.
The training command and the Beam stage both call :func:`text_signals`, so a model is always fed features
computed exactly as they were at training time.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

MODELS_DIR = Path(__file__).parent / "models"
LEAKAGE_FILE = "leakage_phrases.txt"
EXCESS_VOCABULARY_FILE = "excess_vocabulary.txt"

# Lexical diversity as the mean segmental type/token ratio (MSTTR): the type/token ratio of consecutive
# 50-token segments, averaged. Plain TTR falls with length; segments keep texts of any length comparable.
# (The moving-average variant, MATTR, slides the window one token at a time -- a Python step per token, and
# on 2 KB texts within ~0.01 of MSTTR.)
TTR_WINDOW = 50

# The shape statistics (lexical diversity, repeated n-grams, sentence lengths, compression) drift with length
# -- a longer text has more to repeat and more room for variety -- so they are measured on a fixed-size
# opening: documents of different lengths stay comparable, and the cost per document is bounded. The
# classifier, the leakage tells and the excess vocabulary read the whole text (up to MAX_CHARS).
SHAPE_TOKENS = 256
COMPRESSION_BYTES = 512
# Beyond this the evidence has long saturated; reading on would only make a huge document expensive.
MAX_CHARS = 20_000

# Every punctuation mark (ASCII punctuation except ``_``, plus typographic quotes, dashes and the ellipsis)
# becomes its own token. Line breaks are whitespace like any other: corpora differ in whether paragraphs
# keep their breaks, and the detector must not learn that formatting (it separates human from machine text
# in some training sets for no good reason).
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~“”‘—–…«»"
_PADDED = tuple((mark, f" {mark} ") for mark in PUNCTUATION)
_SENTENCE_END_TOKENS = frozenset(".!?")

# The most frequent English function words. ``leakage_anchor_tokens`` skips them when it picks a phrase's
# anchor token.
ENGLISH_FUNCTION_WORDS = frozenset("""
the of and to a in is am that it for was on are as with he be by at this have from or had not but what all were
when we there can an your which their said if do will each about how up out them then she many some so these
would other into has more her him his they you i my me our us its than been who could also only just very
should because while where after before those such most may any through over between both being under
""".split())
# The cheap "is this English" test used when the langid stage did not run: the share of the words that are one
# of ten core English function words. Measured on >= 50-word texts: 17,277 English ones (every text of the
# synthetic train/dev/paraphrase sets, ~2 KB windows of the inaugural and State of the Union addresses) and
# 1,097 ~2 KB windows of the mostly-ASCII UDHR translations. At 6 %, 32 English texts (0.19 %) fall below and
# 11 non-English windows lie above -- all Scots, English-lexified creoles (Nigerian Pidgin, Nagamese) or
# Low German/Lotha. The previous test, >= 22 % of words among the 130 function words above, missed 1.1 % of
# the English texts, and 106 of them were text-davinci-003 and 31 ChatGPT essays: dense, content-heavy
# machine prose is exactly what it turned away as "not English", unscored. On 60-word windows the new test
# misses 3.5 % of English ones (inaugural addresses, ChatGPT and GPT-4 texts; the old one 10 %) and passes
# 1.4 % of the ASCII-script UDHR windows (109 of 7,534; the old one 113) -- mostly Nigerian Pidgin and Scots,
# and a few Low German, Afrikaans and Frisian ones, which share "is", "of" and "to" with English.
ENGLISH_CORE_WORDS = frozenset("the and of to is that with for are this".split())
ENGLISH_CORE_WORD_SHARE = 0.06
ENGLISH_MIN_ASCII_SHARE = 0.9

# Signal names, in the order the combiner's feature vector uses.
LEAKAGE = "leakage_tells"
EXCESS = "excess_vocab_per_1k"
N_WORDS = "n_words"
MSTTR = "msttr"
COMPRESSION = "compression_ratio"
SENTENCE_MEAN = "sentence_len_mean"
BURSTINESS = "sentence_burstiness"
REPEATED_TRIGRAMS = "repeated_trigram_share"
MEAN_WORD_LEN = "mean_word_len"
COMMAS = "commas_per_word"
SEMICOLON_COLON = "semicolons_colons_per_word"
EXCLAIM_QUESTION = "exclaims_questions_per_word"
QUOTES = "quotes_per_word"
PARENS = "parens_per_word"
DASHES = "dashes_per_word"

TEXT_SIGNALS = (N_WORDS, LEAKAGE, EXCESS, MSTTR, COMPRESSION, SENTENCE_MEAN, BURSTINESS, REPEATED_TRIGRAMS,
                MEAN_WORD_LEN, COMMAS, SEMICOLON_COLON, EXCLAIM_QUESTION, QUOTES, PARENS, DASHES)


class Tokens(NamedTuple):
    """One tokenisation shared by every signal and by the classifier.

    The text is lower-cased, curly apostrophes read as ``'``, and each punctuation mark is split off as its
    own token. ``classifier_input`` is that text on one line (what the fastText classifier reads);
    ``tokens`` is its split; ``canonical`` joins the tokens with single spaces (what the leakage phrases are
    matched against).
    """

    classifier_input: str
    tokens: list[str]
    n_punctuation: int

    @property
    def n_words(self) -> int:
        return len(self.tokens) - self.n_punctuation

    @property
    def canonical(self) -> str:
        return " ".join(self.tokens)


def tokenize(text: str) -> Tokens:
    """Tokens of the first :data:`MAX_CHARS` characters."""
    # A chain of str.replace, skipping marks the text lacks, is ~3x faster than one regex substitution.
    lowered = text[:MAX_CHARS].lower().replace("’", "'")
    padded = lowered
    for mark, spaced in _PADDED:
        if mark in padded:
            padded = padded.replace(mark, spaced)
    n_punctuation = (len(padded) - len(lowered)) // 2
    return Tokens(padded.replace("\n", " "), padded.split(), n_punctuation)


def fasttext_input(text: str) -> str:
    """The text as the supervised classifier reads it (see :class:`Tokens`)."""
    return tokenize(text).classifier_input


@dataclass(frozen=True)
class SignalLexicons:
    """The two curated word lists, compiled; load once per worker (``DoFn.setup``), not per document."""

    leakage_pattern: re.Pattern
    # The tokens of each phrase: a text lacking one of every phrase's tokens cannot contain any phrase, which
    # spares almost every text the regex.
    leakage_token_sets: tuple[frozenset[str], ...]
    # One token of every phrase, its longest content word: a first, cheaper test with the same guarantee.
    leakage_anchors: frozenset[str]
    leakage_version: str
    excess_words: frozenset[str]
    excess_version: str

    @classmethod
    def load(cls, model_dir: Path | str = MODELS_DIR) -> "SignalLexicons":
        model_dir = Path(model_dir)
        leakage, leakage_version = read_versioned_list(model_dir / LEAKAGE_FILE)
        excess, excess_version = read_versioned_list(model_dir / EXCESS_VOCABULARY_FILE)
        return cls(compile_leakage_pattern(leakage), leakage_token_sets(leakage), leakage_anchor_tokens(leakage),
                   leakage_version,
                   frozenset(excess), excess_version)

    @property
    def version(self) -> str:
        return f"leakage-v{self.leakage_version}+excess-v{self.excess_version}"


def read_versioned_list(path: Path) -> tuple[list[str], str]:
    """Entries of a one-per-line list (``#`` comments skipped) and the ``version: N`` from its header."""
    entries: list[str] = []
    version = "0"
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            found = re.search(r"version[:\s]+(\w+)", stripped)
            if found and version == "0":
                version = found.group(1)
            continue
        if stripped:
            entries.append(stripped.lower())
    return entries, version


def compile_leakage_pattern(phrases: Iterable[str]) -> re.Pattern:
    """One regex over all phrases (in their canonical token form), shaped as a character trie.

    A plain ``a|b|c`` alternation makes the regex engine try every phrase at every position (2 ms for a
    2 KB text with 60 phrases); a trie tries one branch per character, ~50x faster. Phrases match whole
    tokens: preceded by the start or a space, followed by the end or a space.
    """
    trie: dict = {}
    for phrase in {tokenize(p).canonical for p in phrases}:
        if not phrase:
            continue
        node = trie
        for ch in phrase:
            node = node.setdefault(ch, {})
        node[""] = True
    if not trie:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<![^ ])" + _trie_regex(trie) + r"(?![^ ])")


def leakage_token_sets(phrases: Iterable[str]) -> tuple[frozenset[str], ...]:
    return tuple(sorted({frozenset(tokenize(p).tokens) for p in phrases if tokenize(p).tokens}, key=sorted))


def leakage_anchor_tokens(phrases: Iterable[str]) -> frozenset[str]:
    anchors = set()
    for phrase in phrases:
        tokens = tokenize(phrase).tokens
        content = [t for t in tokens if t not in ENGLISH_FUNCTION_WORDS and t not in PUNCTUATION]
        if tokens:
            anchors.add(max(content or tokens, key=len))
    return frozenset(anchors)


def _trie_regex(node: dict) -> str:
    # Longer phrases first, so the longest phrase through this node wins; then the phrase ending here.
    branches = [re.escape(ch) + _trie_regex(node[ch]) for ch in sorted(k for k in node if k)]
    if "" in node:
        branches.append("")
    if len(branches) == 1:
        return branches[0]
    return "(?:" + "|".join(branches) + ")"


def leakage_tells(tokens: Tokens, lexicons: SignalLexicons) -> list[str]:
    """The leakage phrases found in a text, in their canonical form."""
    if lexicons.leakage_anchors.isdisjoint(tokens.tokens):
        return []
    vocabulary = set(tokens.tokens)
    if not any(phrase <= vocabulary for phrase in lexicons.leakage_token_sets):
        return []
    return lexicons.leakage_pattern.findall(tokens.canonical)


def excess_vocabulary_rate(tokens: Tokens, lexicons: SignalLexicons) -> float:
    """Excess-vocabulary words per 1,000 words."""
    if not tokens.n_words:
        return 0.0
    return 1000.0 * sum(map(lexicons.excess_words.__contains__, tokens.tokens)) / tokens.n_words


def mean_segmental_ttr(tokens: list[str], window: int = TTR_WINDOW) -> float:
    """Mean type/token ratio of consecutive ``window``-token segments, the last one aligned to the text's end
    (plain TTR when the text is shorter than one window)."""
    n = len(tokens)
    if n == 0:
        return 0.0
    if n <= window:
        return len(set(tokens)) / n
    starts = list(range(0, n - window + 1, window))
    if starts[-1] != n - window:
        starts.append(n - window)
    return sum([len(set(tokens[s:s + window])) for s in starts]) / (window * len(starts))


def compression_ratio(text: str) -> float:
    """zlib-compressed size over raw size of the opening :data:`COMPRESSION_BYTES`: repetitive, formulaic
    text compresses better (lower)."""
    opening = text.encode("utf-8", "surrogatepass")[:COMPRESSION_BYTES]
    if not opening:
        return 1.0
    return len(zlib.compress(opening, 6)) / len(opening)


def sentence_lengths(tokens: list[str]) -> list[int]:
    """Tokens (words and punctuation marks) per sentence; a sentence ends at a ``.``, ``!`` or ``?`` token."""
    ends = [i for i, token in enumerate(tokens) if token in _SENTENCE_END_TOKENS]
    ends.append(len(tokens))
    lengths = []
    start = 0
    for end in ends:
        if end > start:
            lengths.append(end - start)
        start = end + 1
    return lengths


def burstiness(lengths: list[int]) -> float:
    """Coefficient of variation of sentence length: human prose mixes short and long sentences more."""
    if len(lengths) < 2:
        return 0.0
    mean = sum(lengths) / len(lengths)
    var = sum((x - mean) ** 2 for x in lengths) / (len(lengths) - 1)
    return math.sqrt(var) / mean


def repeated_trigram_share(tokens: list[str]) -> float:
    """Share of token trigrams that repeat an earlier trigram of the same token list."""
    n = len(tokens) - 2
    if n <= 0:
        return 0.0
    return 1.0 - len(set(zip(tokens, tokens[1:], tokens[2:]))) / n


def looks_english(text: str, tokens: Tokens) -> bool:
    """Cheap stand-in for the langid stage: mostly ASCII characters and enough core English function words."""
    if not tokens.n_words:
        return False
    if not text.isascii():
        ascii_share = len(text.encode("ascii", "ignore")) / len(text)
        if ascii_share < ENGLISH_MIN_ASCII_SHARE:
            return False
    core_words = sum(map(ENGLISH_CORE_WORDS.__contains__, tokens.tokens))
    return core_words / tokens.n_words >= ENGLISH_CORE_WORD_SHARE


def text_signals(text: str, tokens: Tokens, lexicons: SignalLexicons) -> dict[str, float]:
    """Every model-free signal of one text, keyed by the names in :data:`TEXT_SIGNALS`."""
    n_words = tokens.n_words
    per_word = 1.0 / n_words if n_words else 0.0
    opening = tokens.tokens[:SHAPE_TOKENS]
    lengths = sentence_lengths(opening)
    # Characters in words: all but whitespace and punctuation marks (ingest has collapsed space runs, so
    # counting single spaces and line breaks is close enough, and cheap).
    word_chars = max(len(text) - text.count(" ") - text.count("\n") - tokens.n_punctuation, 0)
    return {
        N_WORDS: float(n_words),
        LEAKAGE: float(len(leakage_tells(tokens, lexicons))),
        EXCESS: excess_vocabulary_rate(tokens, lexicons),
        MSTTR: mean_segmental_ttr(opening),
        COMPRESSION: compression_ratio(text),
        SENTENCE_MEAN: (sum(lengths) / len(lengths)) if lengths else 0.0,
        BURSTINESS: burstiness(lengths),
        REPEATED_TRIGRAMS: repeated_trigram_share(opening),
        MEAN_WORD_LEN: word_chars * per_word,
        COMMAS: text.count(",") * per_word,
        SEMICOLON_COLON: (text.count(";") + text.count(":")) * per_word,
        EXCLAIM_QUESTION: (text.count("!") + text.count("?")) * per_word,
        QUOTES: (text.count('"') + text.count("“") + text.count("”")) * per_word,
        PARENS: text.count("(") * per_word,
        DASHES: (text.count("—") + text.count("–") + text.count(" - ")) * per_word,
    }


# What the classifier may read of a text. "full": every token. "masked": function words and punctuation kept,
# every other word replaced by a mark of its length -- the syntax and rhythm of the text without its topic, which
# is what has to carry to generators and domains the classifier never saw.
CLASSIFIER_VIEWS = ("full", "masked", "masked+full")
_MASK_MARKS = tuple(f"w{n}" for n in range(13))


def masked_tokens(tokens: Sequence[str]) -> list[str]:
    keep = ENGLISH_FUNCTION_WORDS
    return [t if t in keep or t in PUNCTUATION else _MASK_MARKS[min(len(t), 12)] for t in tokens]


def classifier_view(classifier_input: str, view: str) -> str:
    """The classifier's input under one of :data:`CLASSIFIER_VIEWS`."""
    if view == "full":
        return classifier_input
    masked = " ".join(masked_tokens(classifier_input.split()))
    if view == "masked":
        return masked
    if view == "masked+full":
        return masked + " " + classifier_input
    raise ValueError(f"unknown classifier view {view!r}; expected one of {CLASSIFIER_VIEWS}")
