"""Near-dedup benchmark: quality against exact Jaccard, signature speed, and whole-stage scaling.

    .venv/bin/python benchmarks/dedup.py                       # everything, scale at 10k and 100k
    .venv/bin/python benchmarks/dedup.py --scale 10000,100000,1000000
    .venv/bin/python benchmarks/dedup.py --skip-scale

Quality: a few thousand ~1 KB documents cut from ../shared/data (Wikipedia, speeches, essays, machine text),
a third of them copied 1-4 times with realistic edits (word substitutions, typos, dropped/inserted sentences,
truncation, boilerplate, case/punctuation changes; copies of copies), scored against brute-force exact
Jaccard of the same 5-word shingle sets (every pair sharing a shingle is compared, so the truth is exact).

* pair level: the stage's candidate + verification rule (LSH at ``_optimal_param`` for each threshold, all
  pairs of every bucket, estimated Jaccard >= threshold) against pairs with exact Jaccard >= threshold;
* cluster level: the real ``NearDedup`` transform at its defaults; a pair of documents is "merged" when they
  share a cluster, compared with the connected components of the exact-Jaccard graph;
* catch rate: 1,000 copies with exactly 1 % of words substituted; distinct originals must never be merged.

Speed: signatures per CPU-second (``time.process_time``; the machine is shared) on ~1 KB documents. Scale:
the whole stage in the in-memory FnApiRunner on generated documents (random sentences of the same data, 10 %
near copies), each size in its own child process so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import shutil
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tailguard.transforms.dedup import DedupConfig, NearDedup, lsh_parameters  # noqa: E402
from tailguard.transforms.minhash import MinHasher, band_keys, shingles  # noqa: E402
from tailguard.transforms.text import doc_id_for, normalize_text  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "dedup.json"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


# --- corpora -------------------------------------------------------------------------------------------------

def _jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def source_documents() -> list[str]:
    """Long real texts, one entry per source document."""
    texts = []
    for name in ("wikitext2-valid.txt", "wikitext2-test.txt"):
        raw = (SHARED / "human" / name).read_text(encoding="utf-8")
        texts.extend(p.strip() for p in raw.split("\n") if len(p.strip()) > 400 and not p.strip().startswith("="))
    for name in ("state_union.jsonl", "inaugural.jsonl"):
        texts.extend(r["text"] for r in _jsonl(SHARED / "human" / name))
    for name in ("train.jsonl", "dev.jsonl"):
        texts.extend(r["text"] for r in _jsonl(SHARED / "synthetic" / name) if len(r["text"]) > 400)
    return texts


def chunks_of(text: str, size: int = 1000) -> list[str]:
    """Non-overlapping ~``size``-character chunks cut at word boundaries."""
    out, start = [], 0
    while len(text) - start > size // 2:
        end = text.rfind(" ", start, start + size) if start + size < len(text) else len(text)
        end = end if end > start + size // 2 else min(len(text), start + size)
        out.append(text[start:end].strip())
        start = end
    return out


_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_RE.split(text) if s.strip()]


BOILERPLATE = [
    "Share this article on Facebook Twitter and email.",
    "Copyright all rights reserved. Reproduction without permission is prohibited.",
    "Subscribe to our newsletter for the latest updates delivered to your inbox every morning.",
    "This page was last edited and may contain errors; please report them to the editors.",
]


def realistic_edit(text: str, rng: random.Random, donor: str) -> tuple[str, str]:
    """One or two edits of the kinds seen between real near-duplicate web documents."""
    ops = rng.sample(["substitute", "typos", "drop_sentence", "insert_sentence", "truncate", "boilerplate",
                      "case_punct"], rng.choice([1, 1, 2]))
    for op in ops:
        words = text.split(" ")
        if op == "substitute":
            fraction = rng.uniform(0.002, 0.06)
            for i in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
                words[i] = rng.choice(["the", "a", "new", "said", "very", "also", "major", "data", "local"])
            text = " ".join(words)
        elif op == "typos":
            for i in rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.005, 0.04)))):
                w = words[i]
                if len(w) > 3:
                    j = rng.randrange(1, len(w) - 1)
                    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            text = " ".join(words)
        elif op == "drop_sentence":
            parts = sentences(text)
            if len(parts) > 3:
                del parts[rng.randrange(len(parts))]
            text = " ".join(parts)
        elif op == "insert_sentence":
            parts, extra = sentences(text), sentences(donor)
            if extra:
                parts.insert(rng.randrange(len(parts) + 1), rng.choice(extra))
            text = " ".join(parts)
        elif op == "truncate":
            keep = max(20, int(len(words) * rng.uniform(0.7, 0.97)))
            text = " ".join(words[:keep])
        elif op == "boilerplate":
            text = (rng.choice(BOILERPLATE) + " " + text) if rng.random() < 0.5 else (text + " " + rng.choice(BOILERPLATE))
        elif op == "case_punct":
            text = text.upper() if rng.random() < 0.3 else text.replace(",", "").replace(".", " .")
    return text, "+".join(ops)


def quality_corpus(n_originals: int, seed: int = 11) -> tuple[list[dict], list[int]]:
    """Originals (one chunk per source document, so they are distinct) plus edited copies."""
    rng = random.Random(seed)
    chunks = []
    for text in source_documents():
        parts = chunks_of(text)
        if parts:
            chunks.append(parts[rng.randrange(len(parts))])
    rng.shuffle(chunks)
    originals = chunks[:n_originals]
    docs = [{"text": t, "family": i, "edit": "original"} for i, t in enumerate(originals)]
    for i, text in enumerate(originals):
        if rng.random() < 1 / 3:
            latest = text
            for _ in range(rng.randint(1, 4)):
                base = latest if rng.random() < 0.3 else text  # sometimes a copy of a copy: chains
                latest, ops = realistic_edit(base, rng, originals[rng.randrange(len(originals))])
                docs.append({"text": latest, "family": i, "edit": ops})
    return docs, list(range(len(originals)))


def as_document(text: str, offset: int, **extra) -> dict:
    normalised, _ = normalize_text(text)
    doc = {"doc_id": doc_id_for(normalised), "text": normalised, "source": "bench", "source_uri": "mem://bench",
           "source_offset": offset}
    doc.update(extra)
    return doc


# --- exact truth -----------------------------------------------------------------------------------------------

def exact_jaccard_pairs(texts: list[str], ngram: int = 5, floor: float = 0.3) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair sharing at least one shingle, kept if >= ``floor``."""
    sets = [set(shingles(t, ngram)) for t in texts]
    postings: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            postings[sh].append(i)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for ids in postings.values():
        if len(ids) > 1:
            for a in range(len(ids)):
                for b in range(a + 1, len(ids)):
                    shared[(ids[a], ids[b])] += 1
    out = {}
    for (a, b), inter in shared.items():
        j = inter / (len(sets[a]) + len(sets[b]) - inter)
        if j >= floor:
            out[(a, b)] = j
    return out


def components(n: int, pairs) -> list[int]:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def co_cluster_pairs(labels: list[int]) -> set[tuple[int, int]]:
    groups = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    return {(a, b) for members in groups.values() for i, a in enumerate(members) for b in members[i + 1:]}


def precision_recall(predicted: set, truth: set) -> dict:
    hit = len(predicted & truth)
    return {"predicted": len(predicted), "true": len(truth), "hit": hit,
            "precision": hit / len(predicted) if predicted else 1.0, "recall": hit / len(truth) if truth else 1.0}


# --- the stage's pair rule, outside Beam ------------------------------------------------------------------------

def predicted_pairs(texts: list[str], config: DedupConfig) -> set[tuple[int, int]]:
    """The stage's pair rule: LSH candidates (every pair of every bucket) that pass verification."""
    from tailguard.transforms.dedup import encode_sketch, is_duplicate_pair
    from tailguard.transforms.minhash import signature_to_bytes

    bands, rows = lsh_parameters(config)
    hasher = MinHasher(config.num_perm, config.seed, config.ngram)
    computed = hasher.signatures_and_sketches(texts, config.verify_sketch_size)
    payloads = [None if sk is None and config.verify_sketch_size else
                (encode_sketch(sk, config.verify_sketch_size) if config.verify_sketch_size
                 else (None if sig is None else signature_to_bytes(sig))) for sig, sk in computed]
    buckets = defaultdict(list)
    for i, (sig, _) in enumerate(computed):
        if sig is not None:
            for key in band_keys(sig, bands, rows):
                buckets[key].append(i)
    out, seen = set(), set()
    for members in buckets.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pair = (members[x], members[y])
                if pair not in seen:
                    seen.add(pair)
                    if is_duplicate_pair(payloads[pair[0]], payloads[pair[1]], config):
                        out.add(pair)
    return out


def _dump(records, path):
    with open(path, "wb") as f:
        pickle.dump(records, f)


def run_stage(docs: list[dict], config: DedupConfig) -> tuple[list, list]:
    """The transform on an in-memory corpus; outputs come back through files (DoFns run on pickled copies)."""
    import apache_beam as beam

    out_dir = tempfile.mkdtemp(prefix="dedup-bench-")
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = p | beam.Create(docs) | NearDedup(config)
        for name in ("kept", "rejected"):
            (getattr(result, name) | f"All{name}" >> beam.combiners.ToList()
             | f"Dump{name}" >> beam.Map(_dump, os.path.join(out_dir, name)))
    outputs = []
    for name in ("kept", "rejected"):
        with open(os.path.join(out_dir, name), "rb") as f:
            outputs.append(pickle.load(f))
    shutil.rmtree(out_dir)
    return outputs[0], outputs[1]


def quality(n_originals: int) -> dict:
    docs, _ = quality_corpus(n_originals)
    texts = [normalize_text(d["text"])[0] for d in docs]
    print(f"quality corpus: {len(docs)} documents ({n_originals} originals)", flush=True)
    started = time.process_time()
    exact = exact_jaccard_pairs(texts)
    print(f"exact Jaccard: {len(exact)} pairs >= 0.3 in {time.process_time() - started:.1f} CPU s", flush=True)
    curve = {}
    for label, overrides in (("minhash128", {"verify_sketch_size": 0}),
                             ("minhash256", {"verify_sketch_size": 0, "num_perm": 256}),
                             ("default", {})):
        for t in THRESHOLDS:
            config = DedupConfig(threshold=t, **overrides)
            truth = {p for p, j in exact.items() if j >= t}
            pr = precision_recall(predicted_pairs(texts, config), truth)
            pr["bands_rows"] = list(lsh_parameters(config))
            curve[f"{label}@{t}"] = pr
            print(f"  {label:10s} threshold={t}: bands x rows={pr['bands_rows']} "
                  f"precision={pr['precision']:.4f} recall={pr['recall']:.4f} "
                  f"(true pairs {pr['true']}, predicted {pr['predicted']})", flush=True)

    # The real transform at its defaults: cluster co-membership against exact-Jaccard components.
    config = DedupConfig()
    beam_docs = [as_document(d["text"], i) for i, d in enumerate(docs)]
    index_of = defaultdict(list)
    for i, d in enumerate(beam_docs):
        index_of[d["doc_id"]].append(i)
    kept, rejected = run_stage(beam_docs, config)
    cluster_of = {}
    for d in kept + rejected:
        for i in index_of[d["doc_id"]]:
            cluster_of.setdefault(i, d["dup_cluster_id"])
    labels_pred = [cluster_of[i] for i in range(len(docs))]
    exact_pairs_at_t = [p for p, j in exact.items() if j >= config.threshold]
    # Identical normalised texts are exact duplicates (Jaccard 1 even without shingles).
    for ids in index_of.values():
        exact_pairs_at_t.extend((ids[0], other) for other in ids[1:])
    labels_true = components(len(docs), exact_pairs_at_t)
    cluster_level = precision_recall(co_cluster_pairs(labels_pred), co_cluster_pairs(labels_true))
    print(f"  NearDedup defaults, cluster co-membership: precision={cluster_level['precision']:.4f} "
          f"recall={cluster_level['recall']:.4f}", flush=True)
    return {"documents": len(docs), "originals": n_originals, "exact_pairs_ge_0.3": len(exact),
            "pair_curve": curve, "cluster_level_default": cluster_level,
            "kept": len(kept), "rejected": len(rejected)}


def catch_rate(n: int) -> dict:
    """Copies with exactly 1 % of words substituted must be caught; distinct originals never merged."""
    rng = random.Random(23)
    docs, _ = quality_corpus(n, seed=29)
    originals = [d["text"] for d in docs if d["edit"] == "original"][:n]
    # Real sources hold a few genuinely overlapping texts (e.g. prompts shared by essays): keep one of each
    # overlapping group so that "distinct" really means distinct.
    overlapping = {max(a, b) for a, b in exact_jaccard_pairs([normalize_text(t)[0] for t in originals])}
    originals = [t for i, t in enumerate(originals) if i not in overlapping]
    beam_docs = []
    for i, text in enumerate(originals):
        beam_docs.append(as_document(text, 2 * i, family=i, role="original"))
        words = text.split(" ")
        for j in rng.sample(range(len(words)), max(1, round(len(words) * 0.01))):
            words[j] = f"edited{rng.randrange(10 ** 6)}"
        beam_docs.append(as_document(" ".join(words), 2 * i + 1, family=i, role="copy"))
    kept, rejected = run_stage(beam_docs, DedupConfig())
    family_of = {d["doc_id"]: d["family"] for d in beam_docs}
    caught = sum(1 for d in rejected if d["role"] == "copy" and family_of[d["duplicate_of"]] == d["family"])
    caught += sum(1 for d in rejected if d["role"] == "original" and family_of[d["duplicate_of"]] == d["family"])
    families_per_cluster = defaultdict(set)
    for d in kept + rejected:
        families_per_cluster[d["dup_cluster_id"]].add(d["family"])
    merged_distinct = sum(len(f) - 1 for f in families_per_cluster.values())
    out = {"pairs": len(originals), "caught": caught, "catch_rate": caught / len(originals),
           "distinct_families_merged": merged_distinct}
    print(f"1 %-edit copies caught: {caught}/{len(originals)} = {out['catch_rate']:.4f}; "
          f"distinct originals merged: {merged_distinct}", flush=True)
    return out


# --- speed ---------------------------------------------------------------------------------------------------

def signature_speed(n: int = 20000, num_perm: int = 128) -> dict:
    rng = random.Random(5)
    pool = [c for t in source_documents() for c in chunks_of(t)]
    texts = [pool[rng.randrange(len(pool))] for _ in range(n)]
    hasher = MinHasher(num_perm, 1, 5)
    started = time.process_time()
    for i in range(0, n, 256):
        hasher.signatures(texts[i:i + 256])
    cpu = time.process_time() - started
    started = time.process_time()
    sketch_size = DedupConfig().verify_sketch_size
    for i in range(0, n, 256):
        hasher.signatures_and_sketches(texts[i:i + 256], sketch_size)
    cpu_with_sketches = time.process_time() - started
    out = {"documents": n, "mean_chars": sum(map(len, texts)) / n, "num_perm": num_perm, "cpu_s": cpu,
           "docs_per_cpu_s": n / cpu, "with_sketches_docs_per_cpu_s": n / cpu_with_sketches}
    print(f"signatures ({num_perm} perms, {out['mean_chars']:.0f} chars/doc): {out['docs_per_cpu_s']:.0f} "
          f"docs per CPU-second; with bottom-{sketch_size} sketches as the stage computes them: "
          f"{out['with_sketches_docs_per_cpu_s']:.0f}", flush=True)
    return out


class _GenerateDocuments:
    """Deterministic ~1 KB documents: random sentences of the shared data; 10 % are 1-3 %-edited copies of an
    earlier document (recomputed from its index, so nothing is held in memory)."""

    def __init__(self, sentence_pool: list[str]):
        self.pool = sentence_pool

    @staticmethod
    def _rng(i: int, salt: str) -> random.Random:
        return random.Random(int.from_bytes(hashlib.blake2b(f"{salt}{i}".encode(), digest_size=8).digest(), "big"))

    def original(self, i: int) -> str:
        rng = self._rng(i, "o")
        parts, size = [], 0
        while size < 1000:
            s = self.pool[rng.randrange(len(self.pool))]
            parts.append(s)
            size += len(s) + 1
        return " ".join(parts)[:1100]

    def __call__(self, i: int) -> dict:
        rng = self._rng(i, "d")
        if i > 10 and rng.random() < 0.1:
            base = rng.randrange(i)
            words = self.original(base).split(" ")
            for j in rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.0, 0.03)))):
                words[j] = "edited"
            text = " ".join(words)
        else:
            text = self.original(i)
        return as_document(text, i, synthetic_score=rng.random(), source_timestamp=i)


def sentence_pool() -> list[str]:
    return [s for t in source_documents() for s in sentences(t) if 40 <= len(s) <= 300]


def _generate_range(shard: tuple[int, int], generator) -> list[dict]:
    start, stop = shard
    return [generator(i) for i in range(start, stop)]


def _generate_dofn():
    import apache_beam as beam

    class GenerateShard(beam.DoFn):
        def setup(self):
            self._generator = _GenerateDocuments(sentence_pool())

        def process(self, shard):
            yield from _generate_range(shard, self._generator)

    return GenerateShard()


def scale_one(n: int, mode: str = "in_memory") -> dict:
    """Whole stage on ``n`` generated documents (called in a child process).

    ``in_memory``: everything in this process. ``multi_processing``: the DoFns run in two SDK worker
    processes, so their peak RSS (the largest child's) is the stage's working memory, while this process holds
    the local runner's shuffle buffers (which a production runner spills to disk).
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
                              if mode == "multi_processing" else [])

    generator = _GenerateDocuments(sentence_pool())
    # Generation alone, to subtract from the pipeline's CPU time.
    sample = min(n, 5000)
    started = time.process_time()
    _generate_range((0, sample), generator)
    generate_cpu = (time.process_time() - started) * n / sample

    shard = 1000
    shards = [(s, min(n, s + shard)) for s in range(0, n, shard)]
    wall = time.perf_counter()
    cpu = time.process_time()
    out_dir = tempfile.mkdtemp(prefix="dedup-scale-")
    with beam.Pipeline(runner="FnApiRunner", options=options) as p:
        # The sentence pool loads in DoFn.setup: pickled into the graph it would be re-compressed per bundle.
        docs = (p | beam.Create(shards) | beam.Reshuffle()
                | beam.ParDo(_generate_dofn()))
        result = docs | NearDedup(DedupConfig())
        named = {"kept": result.kept, "rejected": result.rejected, "index": result.extra["index"]}
        for name in ("kept", "rejected", "index"):
            (named[name] | f"Count{name}" >> beam.combiners.Count.Globally()
             | f"Store{name}" >> beam.Map(_dump, os.path.join(out_dir, name)))
    cpu = time.process_time() - cpu
    counts = {}
    for name in ("kept", "rejected", "index"):
        with open(os.path.join(out_dir, name), "rb") as f:
            counts[name] = pickle.load(f)
    shutil.rmtree(out_dir)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = cpu + children.ru_utime + children.ru_stime
    out = {"documents": n, "mode": mode, "wall_s": time.perf_counter() - wall, "cpu_s": cpu,
           "children_cpu_s": children.ru_utime + children.ru_stime,
           "generate_cpu_s_estimate": generate_cpu, "stage_cpu_s": total_cpu - generate_cpu,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "largest_worker_peak_rss_mb": children.ru_maxrss / 1024 if mode == "multi_processing" else None,
           **counts}
    out["stage_cpu_us_per_doc"] = out["stage_cpu_s"] / n * 1e6
    return out


def scale(sizes: list[int], mode: str) -> list[dict]:
    rows = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--scale-one", str(n), "--mode", mode],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"scale run at {n} failed")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        workers = (f", largest worker peak RSS {row['largest_worker_peak_rss_mb']:.0f} MB"
                   if row.get("largest_worker_peak_rss_mb") else "")
        print(f"stage at {n} docs ({mode}): {row['stage_cpu_s']:.1f} CPU s ({row['stage_cpu_us_per_doc']:.0f} "
              f"us/doc), wall {row['wall_s']:.1f} s, runner peak RSS {row['peak_rss_mb']:.0f} MB{workers}, "
              f"kept {row.get('kept')}, rejected {row.get('rejected')}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=3000)
    parser.add_argument("--catch", type=int, default=1000)
    parser.add_argument("--scale", default="10000,100000")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--mode", choices=("in_memory", "multi_processing"), default="in_memory",
                        help="FnApiRunner mode for the scale runs")
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.mode)))
        return
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: this benchmark needs the shared data")
    results = {"command": " ".join([Path(sys.executable).name, *sys.argv])}
    if RESULTS.exists():
        results = {**json.loads(RESULTS.read_text()), **results}
    if not args.skip_quality:
        results["quality"] = quality(args.originals)
        results["catch_1pct"] = catch_rate(args.catch)
        results["signatures"] = signature_speed()
    if not args.skip_scale:
        results.setdefault("scale", {})[args.mode] = scale([int(s) for s in args.scale.split(",")], args.mode)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
