"""Language-ID benchmark: accuracy by language and text length, and per-core throughput of the stage.

Accuracy data: /work/shared/data/lid -- UDHR paragraphs in ~380 translations (file names are ISO 639-3
codes, sometimes with a script/variant suffix; mapped to the stage's labels by :func:`udhr_language`) and
the langid.py test documents. UDHR text is sliced at word boundaries into ~20, ~100 and ~1000-character
samples. Each language is measured twice -- fastText alone and the default stage (fastText + second
opinion) -- so the table shows what the second opinion buys.

Throughput: CPU time (``time.process_time``, this process only -- the machine is shared, wall time would
measure the neighbours) of the stage's DoFn body (slice, predict, second opinion, policy, annotate, route)
over batches of 512 documents of ~100 B, ~1 KB and ~10 KB, drawn from the supported languages' UDHR text.

    .venv/bin/python benchmarks/langid.py [--quick] [--data /work/shared/data/lid]

Prints the tables and writes benchmarks/results/langid.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tailguard.transforms.langid import (SUPPORTED_LANGUAGES, LanguageIdConfig, LanguageIdentifier,  # noqa: E402
                               MACROLANGUAGE_MEMBERS, _IdentifyAndFilterBatch, normalize_code)

LENGTHS = (20, 100, 1000)
SUPPORT_ACCURACY = 0.96  # the stage's promise at ~100 characters
# Claimed only with a margin: ~100 samples per language put a +-3-point confidence interval on each figure.
SUPPORT_MARGIN = 0.01

# UDHR file codes that are not (current) ISO 639-3 codes of the language they hold.
_UDHR_CODE_FIXES = {"mly": "ms", "gax": "om", "pes": "fa", "cmn": "zh", "quy": "qu", "quz": "qu",
                    "nep": "ne", "hat": "ht"}
_NO_SPACES = re.compile(r"[\u0E00-\u0EFF\u1000-\u109F\u1780-\u17FF\u0F00-\u0FFF\u3040-\u30FF\u4E00-\u9FFF"
                        r"\uAC00-\uD7AF]")


def udhr_language(file_code: str) -> str | None:
    base = file_code.split("_")[0]
    if base.isdigit():  # numbered UDHR files carry no language code
        return None
    return normalize_code(_UDHR_CODE_FIXES.get(base, base))


def slices(text: str, target: int) -> list[str]:
    """Consecutive pieces of ~``target`` characters cut at spaces (characters for scripts without spaces)."""
    text = " ".join(text.split())
    if len(_NO_SPACES.findall(text[: target * 2])) > min(len(text), target * 2) / 3:
        return [text[i:i + target] for i in range(0, len(text) - target // 2, target)]
    out, current = [], ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > target:
            if len(current) >= target * 0.6:
                out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if len(current) >= target * 0.6:
        out.append(current)
    return out


def load_udhr(data: Path) -> dict[str, tuple[str, list[str]]]:
    by_file: dict[str, list[str]] = collections.defaultdict(list)
    with open(data / "udhr2-paragraphs.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_file[row["file"]].append(row["text"])
    return {code: (lang, paras) for code, paras in by_file.items() if (lang := udhr_language(code))}


def udhr_samples(udhr: dict[str, tuple[str, list[str]]], target: int, per_file: int | None
                 ) -> list[tuple[str, str, str]]:
    """(expected language, file, text); paragraphs sliced for short targets, the whole declaration for long."""
    samples = []
    for code, (lang, paras) in sorted(udhr.items()):
        texts = slices(" ".join(paras), target) if target >= 1000 else [s for p in paras for s in slices(p, target)]
        if per_file is not None and len(texts) > per_file:
            step = len(texts) / per_file  # evenly spread, deterministic
            texts = [texts[int(i * step)] for i in range(per_file)]
        samples += [(lang, code, t) for t in texts]
    return samples


def langidpy_samples(data: Path, target: int | None) -> list[tuple[str, str, str]]:
    samples = []
    with open(data / "langid-py-test-docs.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            lang = normalize_code(row["iso639_1"])
            texts = [row["text"]] if target is None else slices(row["text"], target)
            samples += [(lang, row["file"], t) for t in texts]
    return samples


# ----------------------------------------------------------------------------------------------------------
# Held-out short text: the close-group rule was tuned on UDHR only; these sources measure it.

BUCKETS = ("10-60", "60-200", "200+")
HELDOUT_PER_BUCKET = 200
# Catalog directory names that are a language's variant or script, not another language.
_LOCALE_LANGUAGE = {"nb_NO": "nb", "sr@latin": "sr", "sr@Latn": "sr", "pt_BR": "pt", "zh_CN": "zh", "zh_TW": "zh",
                    "bn_IN": "bn"}
_FORMAT_SPEC = re.compile(r"%(\d+\$)?[-+ #0]*\d*(\.\d+)?[hlLqjzt]*[a-zA-Z%]|\{[^}]*\}|\$\{[^}]*\}|<[^>]+>|&\w+;")
_WORDS = re.compile(r"[^\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u0964\u3002])\s+")


def bucket_of(text: str) -> str | None:
    n = len(text)
    return "10-60" if 10 <= n < 60 else "60-200" if 60 <= n < 200 else "200+" if n >= 200 else None


def _stable_order(texts: Iterable[str]) -> list[str]:
    import hashlib
    return sorted(set(texts), key=lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest())


def catalog_messages(root: Path = Path("/usr/share/locale")) -> dict[str, dict[str, list[str]]]:
    """Translated messages of the gettext catalogs installed on this machine: ``{lang: {catalog: [text]}}``.

    Human translations of software messages by each language's translation team (GNU, GNOME, Debian):
    short text from another domain than UDHR, in ~130 languages. Format specifiers, markup and accelerator
    underscores are removed; a translation sharing more than a third of its words with the English original
    (left untranslated, or mostly product names) is skipped."""
    import gettext

    out: dict[str, dict[str, list[str]]] = collections.defaultdict(dict)
    if not root.is_dir():
        return out
    for directory in sorted(root.iterdir()):
        lang = _LOCALE_LANGUAGE.get(directory.name, directory.name)
        if not re.fullmatch(r"[a-z]{2,3}", lang):
            continue
        for mo in sorted(directory.glob("LC_MESSAGES/*.mo")):
            try:
                with open(mo, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog
            except (OSError, ValueError, IndexError, UnicodeDecodeError):  # a few catalogs have malformed headers
                continue
            texts = []
            for key, value in catalog.items():
                source = key[0] if isinstance(key, tuple) else key
                if not source or not isinstance(value, str):
                    continue
                text = " ".join(_FORMAT_SPEC.sub(" ", value).replace("_", "").split())
                words = [w.lower() for w in _WORDS.findall(text)]
                if len(words) < 2 or len("".join(words)) < 8:
                    continue
                source_words = {w.lower() for w in _WORDS.findall(source)}
                if sum(w in source_words for w in words) > len(words) / 3:
                    continue
                texts.append(text)
            if texts:
                out[normalize_code(lang)].setdefault(f"{directory.name}/{mo.stem}", []).extend(texts)
    return out


def bucketed(groups: list[list[str]], per_bucket: int) -> dict[str, list[str]]:
    """Up to ``per_bucket`` texts per length bucket: single texts for the short buckets, and for 200+ the
    long ones plus consecutive texts of one group (catalog or document) joined to >= 200 characters.
    Deterministic (hash order), so every run and every model sees the same samples."""
    out: dict[str, list[str]] = {b: [] for b in BUCKETS}
    for text in _stable_order(t for group in groups for t in group):
        bucket = bucket_of(text)
        if bucket and len(out[bucket]) < per_bucket:
            out[bucket].append(text[:600] if bucket == "200+" else text)
    for group in groups:
        current = ""
        for text in group:
            if len(out["200+"]) >= per_bucket:
                break
            if len(text) >= 200:
                continue
            current = f"{current} {text}".strip()
            if len(current) >= 200:
                out["200+"].append(current)
                current = ""
    return out


def catalog_half(name: str) -> str:
    """Catalogs are split by a hash of their name (e.g. ``glib20``, the same for every language): the `dev`
    half may be looked at while developing the close-group rule, the `test` half is what is reported."""
    import hashlib
    return "dev" if hashlib.sha1(name.split("/")[-1].encode("utf-8")).digest()[0] % 2 == 0 else "test"


def heldout_samples(data: Path, per_bucket: int = HELDOUT_PER_BUCKET, half: str = "test"
                    ) -> dict[str, dict[str, list[str]]]:
    """``{source: {lang/bucket: [text]}}`` for the two held-out sources: the `half` of the gettext catalogs
    and the langid.py test documents cut into sentences."""
    samples: dict[str, dict[str, list[str]]] = {"catalogs": {}, "langidpy_sentences": {}}
    for lang, catalogs in sorted(catalog_messages().items()):
        names = [c for c in sorted(catalogs) if catalog_half(c) == half]
        for bucket, texts in bucketed([catalogs[c] for c in names], per_bucket).items():
            if texts:
                samples["catalogs"][f"{lang}/{bucket}"] = texts
    docs: dict[str, list[list[str]]] = collections.defaultdict(list)
    with open(data / "langid-py-test-docs.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            sentences = [" ".join(s.split()) for s in _SENTENCE_END.split(row["text"])]
            docs[normalize_code(row["iso639_1"])].append([s for s in sentences if s])
    for lang, groups in sorted(docs.items()):
        for bucket, texts in bucketed(groups, per_bucket).items():
            if texts:
                samples["langidpy_sentences"][f"{lang}/{bucket}"] = texts
    return samples


def measure_heldout(data: Path) -> dict:
    """Accuracy per language and length bucket on the held-out sources, fastText alone and the stage, over
    the languages the stage can output."""
    stage = LanguageIdentifier(LanguageIdConfig())
    baseline = LanguageIdentifier(LanguageIdConfig(second_opinion=False))
    emittable = {_label_lang(l)[0] for l in stage.model.labels()} | set(stage.second_opinion._languages)
    results: dict = {}
    for source, by_key in heldout_samples(data).items():
        keys = [k for k in by_key if k.split("/")[0] in emittable]
        texts = [t for k in keys for t in by_key[k]]
        for name, identifier in (("fasttext", baseline), ("stage", stage)):
            predicted = iter(predict(identifier, texts))
            table = results.setdefault(source, {}).setdefault(name, {})
            for key in keys:
                lang = key.split("/")[0]
                right = sum(is_correct(lang, next(predicted)) for _ in by_key[key])
                table[key] = [right, len(by_key[key])]
    return results


def heldout_summary(table: dict[str, list[int]], languages: Iterable[str] | None = None) -> dict[str, float]:
    """Micro-averaged accuracy per bucket (each language contributes its samples, <= HELDOUT_PER_BUCKET)."""
    keep = set(languages) if languages is not None else None
    out = {}
    for bucket in BUCKETS:
        cells = [v for k, v in table.items() if k.endswith("/" + bucket) and (keep is None or k.split("/")[0] in keep)]
        if cells:
            out[bucket] = sum(c[0] for c in cells) / sum(c[1] for c in cells)
    return out


def is_correct(expected: str, predicted: str) -> bool:
    # fastText alone reports Serbo-Croatian as `sh`: count the macrolanguage as right for its members so the
    # baseline column is not penalised for naming, only for confusions. (`no` is reported as `nb`, Bokmål,
    # by the stage with or without the second opinion, and is scored as such.)
    return (predicted == expected or expected in MACROLANGUAGE_MEMBERS.get(predicted, ())
            or predicted in MACROLANGUAGE_MEMBERS.get(expected, ()))


def predict(identifier: LanguageIdentifier, texts: list[str], batch: int = 512) -> list[str]:
    return [g.lang for g in guesses(identifier, texts, batch)]


def guesses(identifier: LanguageIdentifier, texts: list[str], batch: int = 512) -> list:
    out = []
    for start in range(0, len(texts), batch):
        out += identifier.identify(texts[start:start + batch])
    return out


def accuracy_table(samples, predictions) -> tuple[dict, dict]:
    per_lang = collections.defaultdict(lambda: [0, 0])
    per_file = collections.defaultdict(lambda: [0, 0])
    for (lang, code, _), predicted in zip(samples, predictions):
        ok = is_correct(lang, predicted)
        per_lang[lang][0] += ok
        per_lang[lang][1] += 1
        per_file[(lang, code)][0] += ok
        per_file[(lang, code)][1] += 1
    return ({k: v[0] / v[1] for k, v in per_lang.items()}, {k: (v[0] / v[1], v[1]) for k, v in per_file.items()})


def precision_table(samples, predictions, languages: Iterable[str]) -> dict[str, float]:
    """Of the samples predicted as X (over every UDHR language, supported or not), the share that is X."""
    predicted_as = collections.Counter(predictions)
    right = collections.Counter(p for (lang, _, _), p in zip(samples, predictions) if is_correct(lang, p))
    return {lang: right[lang] / predicted_as[lang] for lang in languages if predicted_as[lang]}


def measure_accuracy(data: Path, quick: bool) -> dict:
    udhr = load_udhr(data)
    stage = LanguageIdentifier(LanguageIdConfig())
    baseline = LanguageIdentifier(LanguageIdConfig(second_opinion=False))
    model_labels = {lang for lang, _ in (_label_lang(l) for l in stage.model.labels())}
    if stage.second_opinion is not None:
        model_labels |= set(stage.second_opinion._languages)
    results: dict = {"by_length": {}}
    for target in LENGTHS:
        per_file_cap = {20: 60, 100: None, 1000: None}[target]
        if quick:
            per_file_cap = 15 if target < 1000 else 3
        samples = udhr_samples(udhr, target, per_file_cap)
        texts = [s[2] for s in samples]
        for name, identifier in (("fasttext", baseline), ("stage", stage)):
            found = guesses(identifier, texts)
            predictions = [g.lang for g in found]
            per_lang, per_file = accuracy_table(samples, predictions)
            in_supported = [(s, g) for s, g in zip(samples, found) if s[0] in SUPPORTED_LANGUAGES]
            results["by_length"].setdefault(target, {})[name] = {
                # share of supported-language samples the default filter keeps (right language, score >= floor)
                "kept_at_default_floor": sum(is_correct(s[0], g.lang) and g.score >= LanguageIdConfig().min_score
                                             for s, g in in_supported) / max(1, len(in_supported)),
                "samples": len(samples),
                "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
                "per_language": per_lang,
                "per_file": {f"{lang}/{code}": v for (lang, code), v in per_file.items()},
                "precision": precision_table(samples, predictions, model_labels),
            }
    langidpy = langidpy_samples(data, None)
    langidpy_100 = langidpy_samples(data, 100)
    for name, identifier in (("fasttext", baseline), ("stage", stage)):
        results.setdefault("langidpy", {})[name] = {
            "documents": accuracy_table(langidpy, predict(identifier, [s[2] for s in langidpy]))[0],
            "slices_100": accuracy_table(langidpy_100, predict(identifier, [s[2] for s in langidpy_100]))[0],
        }
    results["model_labels"] = sorted(model_labels)
    return results


def _label_lang(label: str):
    from tailguard.transforms.langid import normalize_label
    return normalize_label(label)


# langid.py test documents in a spelling older than the models' training text (see measured_support).
_OLD_SPELLING_DOCUMENTS = frozenset({"ru"})


def measured_support(results: dict) -> list[str]:
    """Languages meeting the support rule, from the stage's (fastText + second opinion) results:

    - UDHR ~100 chars: >= 97 % (the 96 % promise plus a margin) over all the language's translations, and
      no translation with >= 20
      samples below 90 % (a language written in a script the model does not read is not supported);
    - UDHR ~1000 chars: >= 98 %;
    - langid.py test documents sliced to ~100 chars, where the language has one (independent text from
      another domain): >= 90 % for languages in a confusable group, >= 75 % otherwise and for Russian (some
      of those documents use pre-reform spelling -- Russian with yat, Romanian without diacritics, Estonian
      with w).
    """
    from tailguard.transforms.langid import CONFUSABLE_GROUPS

    # Russian joined the uk/ru/be group for Belarusian's sake; its langid.py document is in the pre-1918
    # spelling, which is what it is measured against there, so it keeps the threshold of the old spellings.
    confusable = set().union(*CONFUSABLE_GROUPS) - _OLD_SPELLING_DOCUMENTS
    at100 = results["by_length"][100]["stage"]
    at1000 = results["by_length"][1000]["stage"]
    langidpy = results["langidpy"]["stage"]["slices_100"]
    worst_file: dict[str, float] = {}
    for key, (acc, n) in at100["per_file"].items():
        lang = key.split("/")[0]
        if n >= 20:  # a two-line fragment (e.g. a script sample) says nothing
            worst_file[lang] = min(worst_file.get(lang, 1.0), acc)
    return sorted(
        lang for lang, acc in at100["per_language"].items()
        if lang in results["model_labels"] and acc >= SUPPORT_ACCURACY + SUPPORT_MARGIN
        and worst_file.get(lang, 1.0) >= 0.90
        and at1000["per_language"].get(lang, 0.0) >= 0.98
        and langidpy.get(lang, 1.0) >= (0.90 if lang in confusable else 0.75)
    )


def measure_speed(data: Path, quick: bool) -> dict:
    """Docs per CPU-second of the stage's DoFn body on three text mixes:

    - ``sentences``: UDHR paragraphs of the supported languages cut at word boundaries to ~100 characters
      (what the >= 20,000 sentences/s/core target is about);
    - ``supported``: the same languages' text cut into 100 B / 1 KB / 10 KB documents at byte offsets
      (words cut at both ends, so fastText is less sure and the second opinion runs more);
    - ``all_udhr``: every UDHR translation, same cuts -- the worst case: most of those ~380 languages are
      unknown to fastText, so it is unsure and asks lingua for most documents.

    Each figure is the median of 3 timed passes after one untimed pass (which loads lingua's models).
    """
    udhr = load_udhr(data)
    results: dict = {}
    sentence_samples = [s for s in udhr_samples(udhr, 100, 15 if quick else None) if s[0] in SUPPORTED_LANGUAGES]
    results["sentences"] = {100: _time_stage([s[2] for s in sentence_samples])}
    # The same sentences without the languages whose sentences mostly go to the second opinion: how fast
    # the stage is on traffic dominated by languages fastText already handles well.
    probe = LanguageIdentifier(LanguageIdConfig())
    asked = collections.Counter()
    for s, g in zip(sentence_samples, guesses(probe, [s[2] for s in sentence_samples])):
        asked[s[0]] += "+" in g.model
    totals = collections.Counter(s[0] for s in sentence_samples)
    heavy = sorted(lang for lang in totals if asked[lang] / totals[lang] > 0.2)
    results["second_opinion_heavy_languages"] = heavy
    results["sentences_without_heavy"] = {100: _time_stage([s[2] for s in sentence_samples if s[0] not in heavy])}
    for mix, languages in (("supported", SUPPORTED_LANGUAGES), ("all_udhr", None)):
        pool = [" ".join(paras) for lang, paras in udhr.values() if languages is None or lang in languages]
        results[mix] = {}
        for size in (100, 1000, 10000):
            docs = []
            for text in pool:
                encoded = text.encode("utf-8")
                for start in range(0, max(1, len(encoded) - size + 1), size):
                    docs.append(encoded[start:start + size].decode("utf-8", errors="ignore"))
            limit = {100: 20000, 1000: 5000, 10000: 1500}[size] // (4 if quick else 1)
            if len(docs) > limit:  # evenly spread, deterministic
                docs = [docs[int(i * len(docs) / limit)] for i in range(limit)]
            while len(docs) < 1000:  # few long documents: repeat them so the timing is not noise
                docs = docs * 2
            results[mix][size] = _time_stage(docs)
    return results


def measure_ab(data: Path, old_module: Path, passes: int = 7) -> list[tuple[str, int, float, float]]:
    """CPU throughput of this stage against another version of ``transforms/langid.py`` (e.g. the last
    release's, from ``git show REV:transforms/langid.py``), both in this process with their passes
    interleaved, so the neighbours' load on a shared machine hits both alike. Rows: (mix, docs, old docs/s,
    new docs/s), median of ``passes`` after one untimed pass each."""
    import importlib.util
    import statistics

    from tailguard.transforms import langid as new

    spec = importlib.util.spec_from_file_location("tailguard_langid_old", old_module)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    udhr = load_udhr(data)
    sentences = [s for s in udhr_samples(udhr, 100, None) if s[0] in SUPPORTED_LANGUAGES]
    asked, totals = collections.Counter(), collections.Counter(s[0] for s in sentences)
    for s, g in zip(sentences, guesses(LanguageIdentifier(LanguageIdConfig()), [s[2] for s in sentences])):
        asked[s[0]] += "+" in g.model
    heavy = {lang for lang in totals if asked[lang] / totals[lang] > 0.2}
    mixes = {"sentences": [s[2] for s in sentences],
             "sentences_without_heavy": [s[2] for s in sentences if s[0] not in heavy]}
    pool = [" ".join(paras) for lang, paras in udhr.values() if lang in SUPPORTED_LANGUAGES]
    docs = [t.encode("utf-8")[i:i + 1000].decode("utf-8", errors="ignore")
            for t in pool for i in range(0, max(1, len(t.encode("utf-8")) - 999), 1000)]
    mixes["supported_1000"] = [docs[int(i * len(docs) / 5000)] for i in range(min(5000, len(docs)))]
    dofns = {}
    for name, module in (("old", old), ("new", new)):
        dofns[name] = module._IdentifyAndFilterBatch(module.LanguageIdConfig())
        dofns[name].setup()
    rows = []
    for mix, texts in mixes.items():
        records = [{"doc_id": str(i), "text": t} for i, t in enumerate(texts)]

        def one_pass(dofn) -> float:
            start = time.process_time()
            for begin in range(0, len(records), 512):
                for _ in dofn.process(records[begin:begin + 512]):
                    pass
            return time.process_time() - start

        for dofn in dofns.values():
            one_pass(dofn)  # untimed: lingua loads the models of the candidate sets it meets
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(passes):
            for name, dofn in dofns.items():
                times[name].append(one_pass(dofn))
        rows.append((mix, len(records), len(records) / statistics.median(times["old"]),
                     len(records) / statistics.median(times["new"])))
    return rows


def _time_stage(docs: list[str]) -> dict:
    import statistics

    records = [{"doc_id": str(i), "text": t} for i, t in enumerate(docs)]
    dofn = _IdentifyAndFilterBatch(LanguageIdConfig())
    dofn.setup()

    def one_pass() -> float:
        start = time.process_time()
        for begin in range(0, len(records), 512):
            for _ in dofn.process(records[begin:begin + 512]):
                pass
        return time.process_time() - start

    one_pass()  # untimed: lingua loads the models of the candidate sets it meets
    seconds = statistics.median(one_pass() for _ in range(3))
    second_opinion = sum("+" in g.model for g in dofn._identifier.identify(docs))
    return {"docs": len(docs), "cpu_seconds": round(seconds, 3),
            "docs_per_cpu_second": round(len(docs) / seconds),
            "second_opinion_share": round(second_opinion / len(docs), 3)}


def print_report(accuracy: dict, speed: dict, support: list[str]) -> None:
    bl = accuracy["by_length"]
    if not bl:  # --speed-only
        return _print_speed(speed)
    print("\n## Accuracy, UDHR slices (stage = fastText lid.176.ftz + lingua second opinion)\n")
    print("| length | samples | mean chars | fastText alone, supported langs | stage, supported langs |"
          " stage: right and score >= 0.5 |")
    print("|---|---|---|---|---|---|")
    for target in LENGTHS:
        row = []
        for name in ("fasttext", "stage"):
            per_lang = bl[target][name]["per_language"]
            values = [per_lang[lang] for lang in support if lang in per_lang]
            row.append(sum(values) / len(values) if values else float("nan"))
        print(f"| ~{target} | {bl[target]['stage']['samples']} | {bl[target]['stage']['mean_chars']} | "
              f"{row[0]:.3f} | {row[1]:.3f} | {bl[target]['stage']['kept_at_default_floor']:.3f} |")
    print("\n(macro-average over the supported languages; per-language rows below)\n")
    print("| lang | ~20 ft | ~20 stage | ~100 ft | ~100 stage | ~1000 stage | precision@100 | langid.py doc |"
          " langid.py ~100 | supported |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    langs = sorted(set(bl[100]["stage"]["per_language"]) & set(accuracy["model_labels"]))
    lp = accuracy["langidpy"]["stage"]
    for lang in langs:
        cells = [bl[20]["fasttext"]["per_language"].get(lang), bl[20]["stage"]["per_language"].get(lang),
                 bl[100]["fasttext"]["per_language"].get(lang), bl[100]["stage"]["per_language"].get(lang),
                 bl[1000]["stage"]["per_language"].get(lang), bl[100]["stage"]["precision"].get(lang),
                 lp["documents"].get(lang), lp["slices_100"].get(lang)]
        text = " | ".join("-" if c is None else f"{c:.3f}" for c in cells)
        print(f"| {lang} | {text} | {'yes' if lang in support else ''} |")
    _print_speed(speed)
    print(f"\nLanguages meeting the support rule ({len(support)}): {' '.join(support)}")
    declared = sorted(SUPPORTED_LANGUAGES)
    if declared != support:
        print(f"Declared SUPPORTED_LANGUAGES differs: only declared {sorted(set(declared) - set(support))}, "
              f"only measured {sorted(set(support) - set(declared))}")


def _print_speed(speed: dict) -> None:
    print("\n## Throughput of the stage's DoFn body, CPU seconds of this process, batches of 512\n")
    print("| text mix | doc size | docs | CPU s | docs per CPU-second | second-opinion share |")
    print("|---|---|---|---|---|---|")
    for mix, by_size in speed.items():
        if mix == "second_opinion_heavy_languages":
            continue
        for size, r in by_size.items():
            print(f"| {mix} | {size} B | {r['docs']} | {r['cpu_seconds']} | {r['docs_per_cpu_second']} | "
                  f"{r['second_opinion_share']} |")
    if "second_opinion_heavy_languages" in speed:
        print(f"\nsentences_without_heavy leaves out the languages whose sentences go to the second opinion "
              f"more than 20 % of the time: {' '.join(speed['second_opinion_heavy_languages'])}")


# Languages the independent check singled out, and the close groups' members: listed first in the table.
FOCUS = ("ms", "id", "bs", "hr", "sr", "nb", "nn", "da", "ca", "es", "gl", "pt", "cs", "sk", "uk", "ru", "be",
         "hi", "mr", "ne", "fa", "zu", "xh", "af", "nl", "yo")


def print_heldout(heldout: dict) -> None:
    for source, by_name in heldout.items():
        stage, fasttext = by_name["stage"], by_name["fasttext"]
        langs = sorted({k.split("/")[0] for k in stage})
        print(f"\n## Held-out short text: {source} (accuracy; fastText alone -> stage)\n")
        summary_ft, summary_stage = heldout_summary(fasttext), heldout_summary(stage)
        core = SUPPORTED_LANGUAGES | set(FOCUS)
        core_ft, core_stage = heldout_summary(fasttext, core), heldout_summary(stage, core)
        print("| bucket | languages | samples | fastText alone | stage | languages (supported + close groups) |"
              " fastText alone | stage |")
        print("|---|---|---|---|---|---|---|---|")
        for bucket in BUCKETS:
            cells = [v for k, v in stage.items() if k.endswith("/" + bucket)]
            n_core = sum(1 for k in stage if k.endswith("/" + bucket) and k.split("/")[0] in core)
            if cells:
                print(f"| {bucket} | {len(cells)} | {sum(c[1] for c in cells)} | {summary_ft[bucket]:.3f} | "
                      f"{summary_stage[bucket]:.3f} | {n_core} | {core_ft.get(bucket, float('nan')):.3f} | "
                      f"{core_stage.get(bucket, float('nan')):.3f} |")
        print("\n| lang | " + " | ".join(f"{b} ft | {b} stage" for b in BUCKETS) + " |")
        print("|---|" + "---|" * (2 * len(BUCKETS)))
        for lang in [l for l in FOCUS if l in langs] + [l for l in langs if l not in FOCUS]:
            cells = []
            for bucket in BUCKETS:
                key = f"{lang}/{bucket}"
                for table in (fasttext, stage):
                    right, n = table.get(key, (0, 0))
                    cells.append(f"{right / n:.2f} ({n})" if n else "-")
            print(f"| {lang} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/lid", type=Path)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--heldout-only", action="store_true",
                        help="only the held-out short-text tables (gettext catalogs, langid.py sentences)")
    parser.add_argument("--speed-only", action="store_true", help="only the throughput table")
    parser.add_argument("--ab", type=Path, metavar="OLD_LANGID_PY",
                        help="only: throughput against another version of transforms/langid.py, interleaved")
    args = parser.parse_args()
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    if args.ab:
        print("| text mix | docs | old docs per CPU-second | new docs per CPU-second | new / old |")
        print("|---|---|---|---|---|")
        for mix, n, old_rate, new_rate in measure_ab(args.data, args.ab):
            print(f"| {mix} | {n} | {old_rate:.0f} | {new_rate:.0f} | {new_rate / old_rate:.2f} |")
        return
    if args.speed_only:
        speed = measure_speed(args.data, args.quick)
        print_report({"by_length": {}}, speed, [])
        (out / "langid-speed.json").write_text(json.dumps(speed, indent=1, default=str))
        return
    heldout = measure_heldout(args.data)
    print_heldout(heldout)
    (out / "langid-heldout.json").write_text(json.dumps(heldout, indent=1))
    if args.heldout_only:
        return
    accuracy = measure_accuracy(args.data, args.quick)
    support = measured_support(accuracy)
    speed = {} if args.skip_speed else measure_speed(args.data, args.quick)
    print_report(accuracy, speed, support)
    out = out / "langid.json"
    out.write_text(json.dumps({"accuracy": accuracy, "speed": speed, "measured_support": support,
                               "declared_support": sorted(SUPPORTED_LANGUAGES),
                               "cpu_count": os.cpu_count()}, indent=1, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
