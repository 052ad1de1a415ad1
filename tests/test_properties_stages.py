"""Every stage after ingest is total over what ingest emits: any text, any length within the limits.

Each stage's pure functions are fed arbitrary Unicode (NUL, control and format characters, RTL marks, emoji,
every script, no letters at all) plus fixed hostile examples, and must return values the record contract and
the Parquet writer accept -- a stage that cannot judge a document says so in its fields (``lang = und``,
``synthetic_reliable = false``, no MinHash signature), it never raises. Surrogates are excluded: ingest
replaces them (tests/test_hostile_ingest.py), so no stage ever sees one.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tailguard.transforms import diversity, minhash, rarity
from tailguard.transforms.anchors import AnchorsConfig, reserve
from tailguard.transforms.document import to_arrow_table
from tailguard.transforms.text import doc_id_for, normalize_text, stable_fraction, words

SCALE = int(os.environ.get("TAILGUARD_HYPOTHESIS_SCALE", "1"))
HOSTILE = [
    "", " ", "\x00", "\x00" * 100, "😀🎉🔥💯" * 30, "\u200f\u202bשלום\u202c\u200e", "x" * 900_000,
    "1234567890 !@#$%^&*()" * 10, "\u0301" * 500, "\ufeff\u200b\u2060", "a\u2028b\u2029c", "\t\n\r" * 50,
    "Ελληνικά 中文 हिन्दी العربية ქართული ᐃᓄᒃᑎᑐᑦ 𝔉𝔯𝔞𝔨𝔱𝔲𝔯", "ﷺ" * 200, "\U000e0001\U000e0041", "ß" * 1000,
    ("word " * 200_000).strip(),
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=600)
EXAMPLES = settings(max_examples=100 * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def with_hostile(**fixed):
    def decorate(test):
        for text in HOSTILE:
            test = example(text=text, **fixed)(test)
        return test
    return decorate


def finite_unit(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def document(text: str, **fields) -> dict:
    normalised, how = normalize_text(text)
    return {"doc_id": doc_id_for(normalised), "text": normalised, "source": "s", "source_uri": "u",
            "source_offset": 0, "normalization": how, "n_chars": len(normalised), **fields}


@pytest.fixture(scope="module")
def identifier():
    from tailguard.transforms.langid import LanguageIdConfig, LanguageIdentifier

    return LanguageIdentifier(LanguageIdConfig())


@pytest.fixture(scope="module")
def detector():
    from tailguard.transforms.synthetic import SyntheticDetector, SyntheticConfig

    return SyntheticDetector(SyntheticConfig().models_path())


@given(text=TEXT)
@with_hostile()
@EXAMPLES
def test_langid_judges_any_text_or_says_und(identifier, text):
    from tailguard.transforms.langid import LanguageIdConfig, LanguagePolicy, annotate

    doc = document(text)
    guess = identifier.identify([doc["text"]])[0]
    assert guess.lang and finite_unit(float(guess.score))
    assert all(finite_unit(float(v)) for v in guess.alternatives.values())
    if not any(ch.isalpha() for ch in doc["text"]):
        assert guess.lang == "und"
    LanguagePolicy(LanguageIdConfig()).decide(guess)
    to_arrow_table([annotate(doc, guess)])


@given(text=TEXT, lang=st.sampled_from([None, "en", "und", "he", "zh"]))
@with_hostile(lang="en")
@EXAMPLES
def test_synthetic_scoring_scores_any_text_or_marks_it_unreliable(detector, text, lang):
    from tailguard.transforms.synthetic import SyntheticConfig, annotate, score_texts

    doc = document(text, **({"lang": lang} if lang else {}))
    scored = score_texts([doc], detector, SyntheticConfig())[0]
    assert finite_unit(scored.score)
    assert all(math.isfinite(v) for v in scored.signals.values()), scored.signals
    to_arrow_table([annotate(doc, scored, "d")])


@given(text=TEXT)
@with_hostile()
@EXAMPLES
def test_minhash_signs_any_text_or_gives_none_without_a_word(text):
    hasher = minhash.MinHasher(num_perm=128, seed=1, ngram=5)
    normalised = normalize_text(text)[0]
    (signature, sketch), = hasher.signatures_and_sketches([normalised], 512)
    if signature is None:
        assert not words(normalised) and sketch is None
        return
    assert signature.shape == (128,) and signature.dtype == np.uint32
    assert len(minhash.band_keys(signature, 16, 8)) == 16
    assert minhash.signature_from_bytes(minhash.signature_to_bytes(signature)).tolist() == signature.tolist()


@given(st.lists(TEXT, min_size=1, max_size=5))
@EXAMPLES
def test_rarity_features_of_any_texts(texts):
    config = rarity.RarityConfig()
    token_lists = [words(normalize_text(t)[0]) for t in texts]
    vocabulary = frozenset(token_lists[0][:10])
    for tokens in token_lists:
        assert finite_unit(rarity.tail_share(tokens, vocabulary))
    matrix = rarity.hashed_bags_of_words(token_lists, config.topic.dimensions)
    assert matrix.shape == (len(texts), config.topic.dimensions) and np.isfinite(matrix).all()
    centroids = rarity.fit_kmeans(matrix, k=min(3, len(texts)), iterations=3, seed=1)
    topics = rarity.nearest_topics(token_lists, centroids, config.topic.dimensions)
    assert all(0 <= t < centroids.shape[0] for t in topics)


@given(text=TEXT)
@with_hostile()
@EXAMPLES
def test_report_features_and_weights_of_any_text(text):
    doc = document(text)
    tokens = words(doc["text"])
    grams, counts, raw_bytes, packed, n = diversity.sample_features(tokens[:1000])
    assert n == len(tokens[:1000]) and all(c >= 0 for c in counts)
    assert 0.0 <= diversity.compression_ratio([doc["text"]]) < math.inf
    assert 0.0 <= stable_fraction(doc["doc_id"]) < 1.0


@given(st.one_of(st.none(), st.integers(-62_135_596_800 * 10**6, 253_402_300_799_999_999)),
       st.lists(st.text(max_size=20), max_size=3), TEXT)
@EXAMPLES
def test_anchors_decide_on_any_provenance(timestamp, tags, text):
    doc = document(text, source_tags=tags, **({} if timestamp is None else {"source_timestamp": timestamp}))
    out = reserve(doc, AnchorsConfig())
    assert out["split"] in ("train", "anchor_holdout") and isinstance(out["is_anchor"], bool)
    to_arrow_table([out])
