"""Text helpers every stage shares: normalisation, document identity and word tokenisation.

Keeping them in one place means dedup shingles, rarity vocabularies and detector features all see the same
words, and `doc_id` means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Control characters (Unicode category Cc) except tab, newline and carriage return, plus the other invisible
# format characters that break tokenisers (zero-width and bidi marks, BOM) -- category Cf.
_KEEP = {"\t", "\n", "\r"}


def _control_class(first: int, stop: int) -> re.Pattern:
    return re.compile("[" + "".join(
        re.escape(chr(c)) for c in range(first, stop)
        if unicodedata.category(chr(c)) in ("Cc", "Cf") and chr(c) not in _KEEP) + "]")


# Split at the BMP because `re` matches a class holding only BMP characters through a bitmap, but one with any
# astral character through a list of ranges: ~25x slower per character. The astral class runs only on text
# that has an astral character.
_BMP_CONTROL_RE = _control_class(0, 0x10000)
_ASTRAL_CONTROL_RE = _control_class(0x10000, 0x110000)
_LAST_BMP = "\uffff"
_SPACE_RUN_RE = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_WORD_RE = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
# Unpaired surrogates: a JSON escape such as "\ud800" parses to one, but no UTF-8 encoder (Beam's coders, Arrow,
# a JSON writer) accepts it, so one such character anywhere in a document would fail the run at the next stage
# boundary. A well-formed pair ("\ud83d\ude00") is combined by the JSON decoder and never reaches this.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def normalize_text(text: str) -> tuple[str, str]:
    """Return ``(normalised_text, what_changed)``.

    Steps: unpaired surrogates replaced by U+FFFD; Unicode NFC; remove control and invisible format characters
    (keeping tab/newline); unify line endings; collapse runs of spaces and of blank lines; strip.
    ``what_changed`` is ``none`` or the ``;``-joined list of steps that changed something, so a reader can see
    how far the stored text is from the source bytes.
    """
    steps = []
    if not text.isascii():
        try:
            text.encode("utf-8")  # ~5x faster than searching for a surrogate, and almost every text has none
        except UnicodeEncodeError:
            text, n_surrogates = _SURROGATE_RE.subn("\ufffd", text)
            steps.append(f"surrogates_replaced={n_surrogates}")
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        steps.append("nfc")
    cleaned, n_control = _BMP_CONTROL_RE.subn("", nfc)
    if not cleaned.isascii() and max(cleaned) > _LAST_BMP:
        cleaned, n_astral = _ASTRAL_CONTROL_RE.subn("", cleaned)
        n_control += n_astral
    if n_control:
        steps.append(f"control_removed={n_control}")
    unified = cleaned.replace("\r\n", "\n").replace("\r", "\n")
    # A lone space is its own replacement: only a double space, a tab or a no-break space can change anything.
    if "  " in unified or "\t" in unified or "\xa0" in unified:
        unified = _SPACE_RUN_RE.sub(" ", unified)
    collapsed = _BLANK_LINES_RE.sub("\n\n", unified)
    collapsed = "\n".join(line.strip() for line in collapsed.split("\n")).strip()
    if collapsed != cleaned:
        steps.append("whitespace")
    return collapsed, (";".join(steps) if steps else "none")


def doc_id_for(normalised_text: str) -> str:
    """Stable document id: 128-bit BLAKE2b of the normalised text, as 32 hex digits."""
    return hashlib.blake2b(normalised_text.encode("utf-8", errors="surrogatepass"), digest_size=16).hexdigest()


def words(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters/digits, with inner apostrophes), punctuation dropped."""
    return _WORD_RE.findall(text.lower())


def stable_fraction(key: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by ``key`` alone: the basis of every hash-based sampling decision."""
    digest = hashlib.blake2b((salt + "\x00" + key).encode("utf-8", errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def repair_surrogates(value: str) -> str:
    """``value`` with every unpaired surrogate replaced by U+FFFD (for short fields such as ids)."""
    return value if value.isascii() else _SURROGATE_RE.sub("\ufffd", value)


def printable_excerpt(raw: bytes | str | None, limit: int) -> str | None:
    """At most ``limit`` bytes of ``raw`` as text that is safe to print and to encode as UTF-8.

    Invalid UTF-8 bytes become ``\\xNN``; control, format, line-separator and private-use characters and
    unpaired surrogates become ``\\n``-style or ``\\uNNNN`` escapes, so an excerpt can neither drive a terminal
    (ANSI escapes, bidi overrides) nor fail a writer. Printable text of any script is kept as it is.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    text = raw[:limit].decode("utf-8", errors="backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    escaped = ch.encode("unicode_escape").decode("ascii")
    # unicode_escape leaves a few non-printable characters (e.g. U+00AD soft hyphen) as themselves.
    return escaped if escaped != ch else f"\\u{ord(ch):04x}"
