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


def normalize_text(text: str) -> tuple[str, str]:
    """Return ``(normalised_text, what_changed)``.

    Steps: Unicode NFC; remove control and invisible format characters (keeping tab/newline); unify line
    endings; collapse runs of spaces and of blank lines; strip. ``what_changed`` is ``none`` or the
    ``;``-joined list of steps that changed something, so a reader can see how far the stored text is from
    the source bytes.
    """
    steps = []
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
