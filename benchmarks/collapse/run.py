"""Model collapse at CPU scale: 10 generations of a trigram LM retrained on its own samples, three policies.

    .venv/bin/python benchmarks/collapse/run.py [--scenario standard|fresh] [--generations 10] [--workdir DIR]
                                                [--set KEY=VALUE ...] [--variant NAME:KEY=VALUE;KEY=VALUE ...]

Following Shumailov et al. (Nature 2024), generation 0 is a language model trained on real human text
(WikiText-2 valid, ../shared/data/human); each later generation trains on data built from the previous
generation's samples -- a corpus of the same size as the human one -- under three policies:

* ``replace``    -- only the previous generation's samples;
* ``accumulate`` -- the human text and every earlier generation's samples (Gerstgrasser et al. 2024);
* ``tailguard``  -- the candidate corpus a crawl would deliver at generation g, the human text (timestamped
  2016, WikiText-2's release) plus the previous generation's samples (timestamped as crawled after ChatGPT's
  release, tagged ``web``), goes through ``tailguard run`` -- synthetic scoring, dedup, rarity weights and
  anchor reservation with the default config -- with ``--previous`` pointing at the last snapshot so
  published documents and anchors accumulate; the next model trains on what a user's trainer would read:
  ``tailguard.training.sampling_plan`` over the snapshot (one pass over its token budget, seeded), each
  ``train/`` row counted as many times as the plan holds it.

``--scenario fresh`` (the harder one): each generation's crawl also carries fresh human text written after the
cutoff (State of the Union paragraphs, ``FRESH_FRACTION`` of the human budget per generation, a new slice
each time), untagged and dated like the samples -- nothing but the content tells it apart. Every policy
trains on it too; per generation the report gives each policy's share of sampled training tokens from the
anchors (gen-0 human text), the model's samples and the fresh human text.

Tailguard variants (``DEFAULT_VARIANTS``, or ``--variant``) rerun the tailguard policy with other config
overrides.

Per generation and policy it measures perplexity on WikiText-2 test (vocabulary fixed at generation 0),
survival of generation 0's rare vocabulary (words seen fewer than 5 times in the human training text) in the
model's samples, and distinct-1/2/3 of the samples. Writes benchmarks/results/collapse.json, three PNG plots
in benchmarks/collapse/, and prints a markdown table. Times are CPU seconds of this process
(``time.process_time``: the in-memory Beam runner runs inside it), not wall time -- the cores are shared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.collapse.lm import TrigramLM, Vocabulary  # noqa: E402

HUMAN = ROOT.parent / "shared" / "data" / "human"
DEFAULT_TRAIN = HUMAN / "wikitext2-valid.txt"
DEFAULT_TEST = HUMAN / "wikitext2-test.txt"
HERE = Path(__file__).resolve().parent
POLICIES = ("replace", "accumulate", "tailguard")
SCENARIOS = ("standard", "fresh")
RARE_BELOW = 5
HUMAN_RELEASE = "2016-09-26"          # WikiText-2's release; the articles predate it
FIRST_CRAWL = dt.date(2023, 1, 15)    # every model sample is "crawled" after ChatGPT's release ...
CRAWL_INTERVAL = dt.timedelta(days=60)  # ... one crawl per generation


# --------------------------------------------------------------------------------------------------- data


def load_paragraphs(path: Path, limit: Optional[int] = None) -> list[list[str]]:
    """Whitespace-tokenised paragraphs: WikiText lines without the ``= heading =`` lines, or JSONL ``text``
    fields split at newlines. WikiText is already tokenised, so whitespace is its tokeniser."""
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as stream:
            lines = [line for record in stream for line in json.loads(record)["text"].splitlines()]
    paragraphs = [line.split() for line in (raw.strip() for raw in lines)
                  if line and not line.startswith("= ")]
    return paragraphs[:limit] if limit else paragraphs


def distinct_n(paragraphs: Sequence[np.ndarray], n: int) -> float:
    """Distinct n-grams over all n-grams (within paragraphs): the sample's diversity at order n."""
    grams: set = set()
    total = 0
    for ids in paragraphs:
        if len(ids) < n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(ids, n)
        total += len(windows)
        grams.update(map(bytes, windows))
    return len(grams) / total if total else 0.0


def vocabulary_of(paragraphs: Sequence[np.ndarray]) -> set[int]:
    return set(np.unique(np.concatenate(paragraphs)).tolist()) if paragraphs else set()


# --------------------------------------------------------------------------------------------------- tailguard


TAILGUARD_CONFIG = """\
# Written by benchmarks/collapse/run.py: the crawl a generation-g curation job would see.
ingest:
  sources:
    - name: wikitext_human
      match: "*/human.jsonl"
      id_field: id
      timestamp: "{human_release}"
      tags: [cc-by-sa-3.0]
    - name: web_crawl
      match: "*/crawl-gen*.jsonl"
      id_field: url
      timestamp_field: crawled_at
      timestamp_format: iso
      tags: [web]
"""


FRESH_SOURCE = HUMAN / "state_union.jsonl"  # the harder scenario's fresh human text: not WikiText, not the test set
FRESH_FRACTION = 0.15  # of the human token budget, per generation: ~31k tokens, 10 generations fit in 350k words
ORIGINS = ("anchors", "model_samples", "fresh_human")


@dataclass
class Snapshot:
    """What the next tailguard model trains on -- the reader's sampling plan over the snapshot -- and what the
    run said about the candidate corpus."""

    texts: list[str]           # train rows, in the plan's row numbering
    counts: list[int]          # times each row is in the plan
    stats: dict = field(default_factory=dict)


def fresh_paragraphs(path: Path) -> list[list[str]]:
    """Fresh human paragraphs, tokenised like WikiText (words and punctuation split), in file order
    (chronological for the State of the Union addresses)."""
    out = []
    with path.open(encoding="utf-8") as stream:
        for record in stream:
            for line in json.loads(record)["text"].splitlines():
                tokens = re.findall(r"\w+(?:'\w+)?|[^\w\s]", line)
                if len(tokens) >= 8:
                    out.append(tokens)
    return out


def fresh_for(fresh: list[list[str]], generation: int, tokens_per_generation: int) -> list[list[str]]:
    """Generation g's slice of the fresh corpus: consecutive paragraphs, disjoint across generations."""
    taken = 0
    slices: list[list[list[str]]] = [[]]
    for paragraph in fresh:
        if taken >= tokens_per_generation:
            if len(slices) == generation:
                break
            slices.append([])
            taken = 0
        slices[-1].append(paragraph)
        taken += len(paragraph)
    if len(slices) < generation or taken < tokens_per_generation // 2:
        raise ValueError(f"the fresh corpus runs out before generation {generation}")
    return slices[generation - 1]


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json.dumps(record) + "\n")


def origin_of(record_id: Optional[str], is_anchor: bool) -> str:
    if is_anchor:
        return "anchors"
    return "fresh_human" if record_id and "/fresh-" in record_id else "model_samples"


def token_shares(tokens_by_origin: Counter) -> dict[str, float]:
    total = sum(tokens_by_origin.values())
    return {origin: (tokens_by_origin.get(origin, 0) / total if total else 0.0) for origin in ORIGINS}


def run_tailguard(workdir: Path, generation: int, human_file: Path, samples: list[list[str]],
                  fresh: list[list[str]], previous: Optional[Path], overrides: Sequence[str], seed: int,
                  quiet: bool = True) -> Snapshot:
    """One curation run over generation g's crawl, then the trainer side exactly as a user runs it:
    ``tailguard.training.sampling_plan`` over the published snapshot (one pass over its token budget)."""
    import pyarrow.parquet as pq

    from tailguard.pipelines.cli import main as tailguard_main
    from tailguard.training import sampling_plan

    crawl_day = FIRST_CRAWL + CRAWL_INTERVAL * (generation - 1)
    crawled_at = f"{crawl_day.isoformat()}T00:00:00Z"
    crawl = workdir / f"crawl-gen{generation:02d}.jsonl"
    # Fresh human text is untagged and dated like the samples: only the URL (never read by a stage) tells.
    records = ([{"url": f"https://crawl.example/gen{generation:02d}/sample-{i}", "crawled_at": crawled_at,
                 "text": " ".join(tokens)} for i, tokens in enumerate(samples)]
               + [{"url": f"https://crawl.example/gen{generation:02d}/fresh-{i}", "crawled_at": crawled_at,
                   "text": " ".join(tokens)} for i, tokens in enumerate(fresh)])
    # Interleave deterministically, as a crawl would deliver them.
    records.sort(key=lambda r: hashlib.blake2b(r["url"].encode(), digest_size=8).digest())
    write_jsonl(crawl, records)
    config = workdir / "curate.yaml"
    config.write_text(TAILGUARD_CONFIG.format(human_release=HUMAN_RELEASE), encoding="utf-8")
    output = workdir / "snapshots"
    run_id = f"gen{generation:02d}"
    argv = ["run", "--input", str(human_file), "--input", str(crawl), "--output", str(output),
            "--config", str(config), "--run-id", run_id, "--direct_running_mode", "in_memory"]
    for override in overrides:
        argv += ["--set", override]
    if previous is not None:
        argv += ["--previous", str(previous)]
    log = io.StringIO()
    started = time.process_time()
    with contextlib.redirect_stdout(log) if quiet else contextlib.nullcontext():
        status = tailguard_main(argv)
    cpu = time.process_time() - started
    if status != 0:
        raise RuntimeError(f"tailguard run for generation {generation} exited {status}:\n{log.getvalue()}")
    snapshot = output / run_id
    plan = sampling_plan(str(snapshot), seed=seed)
    train = plan_rows(plan)
    rejected_files = sorted(glob.glob(str(snapshot / "rejected" / "*.parquet")))
    rejected = pq.read_table(rejected_files, columns=["source", "reject_reason", "synthetic_score"]).to_pylist() \
        if rejected_files else []
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    weights = manifest.get("weights") or {}
    origins = [origin_of(d["source_record_id"], bool(d["is_anchor"])) for d in train]
    sampled = Counter()
    for origin, count, tokens in zip(origins, plan.counts.tolist(), plan.tokens.tolist()):
        sampled[origin] += count * tokens
    new_synthetic = [d for d in train + rejected
                     if d["source"] == "web_crawl" and d.get("synthetic_score") is not None
                     and (d.get("first_run_id", run_id) == run_id)]
    human_scores = [d["synthetic_score"] for d in train if d["source"] == "wikitext_human"
                    and d["synthetic_score"] is not None]
    cap = weights.get("repetition_cap") or {}
    stats = {
        "cpu_seconds": cpu,
        "train_documents": len(train),
        "train_synthetic_documents": sum(d["source"] == "web_crawl" for d in train),
        "sampled_token_share": token_shares(sampled),
        "plan_rows": len(plan),
        "plan_tokens": plan.sampled_tokens,
        "plan_max_count": int(plan.counts.max()) if len(plan) else 0,
        "max_sample_weight": float(plan.weights.max()) if plan.weights.size else None,
        "max_epochs": plan.max_epochs,
        "repetition_cap_binds": cap.get("binds"),
        "mean_weight_by_origin": {origin: float(np.mean([w for w, o in zip(plan.weights, origins) if o == origin]))
                                  for origin in ORIGINS if origin in origins},
        "anchor_token_share": weights.get("anchor_token_share"),
        "anchor_multiplier": weights.get("anchor_multiplier"),
        "anchor_share_met": weights.get("anchor_share_met"),
        "rejected_by_reason": {f"{source}:{reason}": n for (source, reason), n in sorted(
            Counter((d["source"], d["reject_reason"]) for d in rejected).items())},
        "new_sample_mean_synthetic_score": (float(np.mean([d["synthetic_score"] for d in new_synthetic]))
                                            if new_synthetic else None),
        "human_mean_synthetic_score": float(np.mean(human_scores)) if human_scores else None,
        "counts": manifest["counts"]["out"],
        # Results depend on the detector's version: record it, the shipped model may be retrained.
        "synthetic_detector": sorted({d["synthetic_detector"] for d in train if d["synthetic_detector"]}),
    }
    return Snapshot([d["text"] for d in train], plan.counts.tolist(), stats)


def plan_rows(plan) -> list[dict]:
    """The train rows in the plan's row numbering, with the columns the benchmark reports on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ["text", "source", "source_record_id", "is_anchor", "synthetic_score", "first_run_id",
               "synthetic_detector"]
    return pa.concat_tables([pq.read_table(path, columns=columns) for path in plan.files]).to_pylist() \
        if plan.files else []


# --------------------------------------------------------------------------------------------------- experiment


def measure(model: TrigramLM, samples: list[np.ndarray], test: list[np.ndarray], rare: set[int],
            rare_in_gen0_samples: Optional[int]) -> dict:
    produced = vocabulary_of(samples)
    survived = len(rare & produced)
    in_support = int(np.count_nonzero(model.unigram_counts[sorted(rare)] > 0))
    return {
        "perplexity": model.perplexity(test),
        "rare_survival": survived / len(rare),
        "rare_survival_vs_gen0": survived / rare_in_gen0_samples if rare_in_gen0_samples else 1.0,
        "rare_in_training_data": in_support / len(rare),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "distinct_3": distinct_n(samples, 3),
        "vocabulary_produced": len(produced),
        "training_tokens": model.tokens,
    }


def run_experiment(train_path: Path, test_path: Path, generations: int, workdir: Path, seed: int = 0,
                   policies: Sequence[str] = POLICIES, overrides: Sequence[str] = (),
                   variants: Optional[dict[str, list[str]]] = None,
                   limit_train: Optional[int] = None, limit_test: Optional[int] = None,
                   scenario: str = "standard", fresh_path: Path = FRESH_SOURCE, log=print) -> dict:
    """``policies`` run with ``overrides`` for ``tailguard``; each ``variants`` entry (name -> config
    overrides) is one more tailguard policy, to show what a different config would have done.

    ``scenario="fresh"``: every generation's crawl also carries fresh human text from ``fresh_path`` (a slice
    of ``FRESH_FRACTION`` of the human token budget, dated and tagged like the samples), which replace and
    accumulate train on too."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    variants = dict(variants or {})
    tailguard_policies = {"tailguard": list(overrides), **variants}
    policies = list(policies) + [name for name in variants if name not in policies]
    started = time.process_time()
    human_tokens = load_paragraphs(train_path, limit_train)
    test_tokens = load_paragraphs(test_path, limit_test)
    counts = Counter(t for p in human_tokens for t in p)
    vocabulary = Vocabulary(counts)
    human = [vocabulary.encode(p) for p in human_tokens]
    test = [vocabulary.encode(p) for p in test_tokens]
    rare = {vocabulary.index[w] for w, n in counts.items() if n < RARE_BELOW and w != "<unk>"}
    budget = sum(len(p) for p in human)
    log(f"human train: {len(human)} paragraphs, {budget} tokens; vocabulary {len(vocabulary)}, "
        f"rare (< {RARE_BELOW}) {len(rare)}; test: {len(test)} paragraphs, {sum(map(len, test))} tokens; "
        f"scenario {scenario}")
    fresh_corpus = fresh_paragraphs(fresh_path) if scenario == "fresh" else []
    fresh_tokens = int(FRESH_FRACTION * budget)

    def fresh_text(generation: int) -> list[list[str]]:
        return fresh_for(fresh_corpus, generation, fresh_tokens) if scenario == "fresh" else []

    workdir.mkdir(parents=True, exist_ok=True)
    human_file = workdir / "human.jsonl"
    write_jsonl(human_file, [{"id": f"wikitext2-{i}", "text": " ".join(p)} for i, p in enumerate(human_tokens)])

    def rng(policy_index: int, generation: int) -> np.random.Generator:
        return np.random.default_rng([seed, policy_index, generation])

    gen0 = TrigramLM(vocabulary, human)
    gen0_samples = gen0.sample(budget, rng(0, 0))
    gen0_metrics = measure(gen0, gen0_samples, test, rare, None)
    rare_in_gen0_samples = len(rare & vocabulary_of(gen0_samples))
    gen0_metrics["rare_survival_vs_gen0"] = 1.0
    gen0_metrics["sampled_token_share"] = token_shares(Counter(anchors=budget))
    human_metrics = {f"distinct_{n}": distinct_n(human, n) for n in (1, 2, 3)}
    log(f"gen  0 (all policies): ppl {gen0_metrics['perplexity']:.1f}  rare {gen0_metrics['rare_survival']:.3f}  "
        f"distinct-2 {gen0_metrics['distinct_2']:.3f}")

    results: dict = {policy: [dict(gen0_metrics, generation=0)] for policy in policies}
    for policy in policies:
        # Seeds follow the policy, not its position, so a policy run alone reproduces its part of a full run;
        # all tailguard variants share one seed sequence, so they differ only in their settings.
        policy_index = POLICIES.index(policy) + 1 if policy in POLICIES else len(POLICIES) + 1
        samples = gen0_samples
        # (origin, paragraphs) of everything accumulate has seen; gen-0 human text counts as the anchors.
        history: list[tuple[str, list]] = [("anchors", human)]
        snapshot_dir: Optional[Path] = None
        policy_dir = workdir / policy.replace(" ", "_")
        for generation in range(1, generations + 1):
            extra: dict = {}
            fresh = fresh_text(generation)
            fresh_ids = [vocabulary.encode(p) for p in fresh]
            crawl = [("model_samples", samples), ("fresh_human", fresh_ids)]
            history.extend(crawl)
            if policy in ("replace", "accumulate"):
                parts = crawl if policy == "replace" else history
                data, weights = [p for _, corpus in parts for p in corpus], None
                tokens: Counter = Counter()
                for origin, corpus in parts:
                    tokens[origin] += sum(len(p) for p in corpus)
                extra = {"sampled_token_share": token_shares(tokens)}
            elif policy in tailguard_policies:
                policy_dir.mkdir(exist_ok=True)
                snapshot = run_tailguard(policy_dir, generation, human_file, [vocabulary.decode(p) for p in samples],
                                         fresh, snapshot_dir, tailguard_policies[policy],
                                         seed=int(rng(policy_index, generation).integers(2 ** 31)))
                snapshot_dir = policy_dir / "snapshots" / f"gen{generation:02d}"
                data = [vocabulary.encode(text.split()) for text in snapshot.texts]
                weights = snapshot.counts  # the reader's plan: row i trained on counts[i] times
                extra = {"tailguard": snapshot.stats,
                         "sampled_token_share": snapshot.stats["sampled_token_share"]}
            else:
                raise ValueError(f"unknown policy {policy!r}")
            model = TrigramLM(vocabulary, data, weights)
            samples = model.sample(budget, rng(policy_index, generation))
            metrics = dict(measure(model, samples, test, rare, rare_in_gen0_samples), generation=generation,
                           **extra)
            results[policy].append(metrics)
            shares = metrics["sampled_token_share"]
            note = (f"  [tokens: anchors {shares['anchors']:.2f}, samples {shares['model_samples']:.2f}, "
                    f"fresh {shares['fresh_human']:.2f}")
            if "tailguard" in extra:
                s = extra["tailguard"]
                note += (f"; tailguard: {s['cpu_seconds']:.1f} cpu-s, train {s['train_documents']} docs, "
                         f"max weight {s['max_sample_weight']:.2f}, plan max count {s['plan_max_count']}")
            note += "]"
            log(f"gen {generation:2d} {policy:12s}: ppl {metrics['perplexity']:.1f}  rare "
                f"{metrics['rare_survival']:.3f} ({metrics['rare_survival_vs_gen0']:.3f} of gen 0)  "
                f"distinct-2 {metrics['distinct_2']:.3f}{note}")
    return {
        "scenario": scenario, "fresh_file": str(fresh_path) if scenario == "fresh" else None,
        "fresh_tokens_per_generation": fresh_tokens if scenario == "fresh" else 0,
        "train_file": str(train_path), "test_file": str(test_path), "generations": generations, "seed": seed,
        "human_paragraphs": len(human), "human_tokens": budget, "vocabulary": len(vocabulary),
        "rare_words": len(rare), "rare_below": RARE_BELOW, "test_tokens": int(sum(map(len, test))),
        "tailguard_overrides": tailguard_policies, "human_distinct": human_metrics, "results": results,
        "cpu_seconds": time.process_time() - started,
    }


# --------------------------------------------------------------------------------------------------- report


COLORS = {"replace": "tab:red", "accumulate": "tab:blue", "tailguard": "tab:green"}
SPARE_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:olive")
# Extra tailguard policies run by default: none -- the defaults are the policy under test. Earlier settings are
# one --variant away (benchmarks/README.md, "Model collapse", gives the commands).
DEFAULT_VARIANTS: dict[str, list[str]] = {}


def color_of(policy: str, results: dict) -> str:
    if policy in COLORS:
        return COLORS[policy]
    others = [p for p in results if p not in COLORS]
    return SPARE_COLORS[others.index(policy) % len(SPARE_COLORS)]


def plot(report: dict, out_dir: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    written = []

    def save(fig, name):
        path = out_dir / f"{name}{suffix}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    gen0 = results[next(iter(results))][0]["perplexity"]
    for policy, rows in results.items():
        ax.plot([r["generation"] for r in rows], [r["perplexity"] for r in rows], "o-", label=policy,
                color=color_of(policy, results), ms=4)
    ax.axhline(gen0 * 1.1, color="grey", ls=":", label="gen 0 + 10 %")
    ax.set(xlabel="generation", ylabel="perplexity on WikiText-2 test", yscale="log",
           title="Held-out perplexity")
    ax.legend()
    save(fig, "perplexity")

    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, rows in results.items():
        ax.plot([r["generation"] for r in rows], [r["rare_survival"] for r in rows], "o-", label=policy,
                color=color_of(policy, results), ms=4)
    ax.axhline(0.9 * results[next(iter(results))][0]["rare_survival"], color="grey", ls=":",
               label="90 % of gen 0")
    ax.set(xlabel="generation", ylabel=f"share of gen-0 rare words (< {report['rare_below']}) in samples",
           ylim=(0, 1), title="Rare-vocabulary survival")
    ax.legend()
    save(fig, "rare_vocabulary")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for n, ax in zip((1, 2, 3), axes):
        for policy, rows in results.items():
            ax.plot([r["generation"] for r in rows], [r[f"distinct_{n}"] for r in rows], "o-", label=policy,
                    color=color_of(policy, results), ms=4)
        ax.axhline(report["human_distinct"][f"distinct_{n}"], color="black", ls=":", label="human text")
        ax.set(xlabel="generation", title=f"distinct-{n} of samples")
    axes[0].legend()
    save(fig, "distinct_n")
    return written


def markdown_table(report: dict) -> str:
    """One table per metric, a column per policy."""
    results = report["results"]
    policies = list(results)
    metrics = [("perplexity", "held-out perplexity (WikiText-2 test)", "{:.1f}"),
               ("rare_survival_vs_gen0", "rare-vocabulary survival, relative to generation 0's samples", "{:.3f}"),
               ("rare_survival", "rare-vocabulary survival, share of all gen-0 rare words in the samples", "{:.3f}"),
               ("distinct_2", "distinct-2 of samples", "{:.3f}")]
    blocks = []
    for key, title, fmt in metrics:
        lines = [f"**{title}**", "", "| gen | " + " | ".join(policies) + " |",
                 "|---:|" + "---:|" * len(policies)]
        for g in range(report["generations"] + 1):
            lines.append(f"| {g} | " + " | ".join(fmt.format(results[p][g][key]) for p in policies) + " |")
        blocks.append("\n".join(lines))
    lines = ["**share of the sampled training tokens: anchors (gen-0 human text) / model samples / fresh human**",
             "", "| gen | " + " | ".join(policies) + " |", "|---:|" + "---|" * len(policies)]
    for g in range(1, report["generations"] + 1):
        cells = []
        for p in policies:
            shares = results[p][g].get("sampled_token_share") or {}
            cells.append(" / ".join(f"{shares.get(origin, 0.0):.3f}" for origin in ORIGINS))
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def verdict(report: dict) -> dict:
    """The issue's targets: tailguard's gen-G perplexity within 10 % of gen 0, >= 90 % of rare words kept."""
    out = {}
    for policy, rows in report["results"].items():
        first, last = rows[0], rows[-1]
        out[policy] = {
            "perplexity_change": last["perplexity"] / first["perplexity"] - 1.0,
            "rare_kept_vs_gen0": last["rare_survival_vs_gen0"],
            "rare_in_training_data": last["rare_in_training_data"],
            "perplexity_within_10pct": last["perplexity"] <= 1.1 * first["perplexity"],
            "rare_kept_90pct": last["rare_survival_vs_gen0"] >= 0.9,
        }
    return out


def parse_variants(specs: Optional[list[str]]) -> dict[str, list[str]]:
    if specs is None:
        return dict(DEFAULT_VARIANTS)
    variants = {}
    for spec in specs:
        if spec == "none":
            continue
        name, _, settings = spec.partition(":")
        variants[name] = [s for s in settings.split(";") if s]
    return variants


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=DEFAULT_TRAIN)
    parser.add_argument("--test", type=Path, default=DEFAULT_TEST)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--scenario", choices=SCENARIOS, default="standard",
                        help="standard: the crawl holds the model's samples; fresh: also fresh human text "
                             f"({FRESH_SOURCE.name}, {FRESH_FRACTION:.0%} of the human budget per generation)".replace("%", "%%"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="tailguard config override for the tailguard policy (repeatable)")
    parser.add_argument("--variant", action="append", default=None, metavar="NAME:KEY=VALUE[;KEY=VALUE]",
                        help="an extra tailguard policy with its own overrides (repeatable; replaces the "
                             f"default variants {DEFAULT_VARIANTS}); --variant none runs none")
    parser.add_argument("--workdir", type=Path, help="where snapshots go (default: a temporary directory, "
                                                     "removed afterwards)")
    parser.add_argument("--results", type=Path, help="default benchmarks/results/collapse.json "
                                                     "(collapse_fresh.json for --scenario fresh)")
    parser.add_argument("--plots", type=Path, default=HERE)
    parser.add_argument("--plot-suffix", help="default '' ('_fresh' for --scenario fresh)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="run nothing: merge the policies of earlier results files (same data and seed), "
                             "then write --results, the plots and the table")
    args = parser.parse_args(argv)
    suffix = "" if args.scenario == "standard" else f"_{args.scenario}"
    if args.results is None:
        args.results = ROOT / "benchmarks" / "results" / f"collapse{suffix}.json"
    if args.plot_suffix is None:
        args.plot_suffix = suffix
    if args.merge:
        report = merge_reports([json.loads(path.read_text(encoding="utf-8")) for path in args.merge])
        return finish(report, args)
    for path in (args.train, args.test) + ((FRESH_SOURCE,) if args.scenario == "fresh" else ()):
        if not path.exists():
            print(f"missing {path} (../shared/data/human)", file=sys.stderr)
            return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tailguard-collapse-"))
    try:
        report = run_experiment(args.train, args.test, args.generations, workdir, seed=args.seed,
                                policies=[p for p in args.policies.split(",") if p], overrides=args.overrides,
                                variants=parse_variants(args.variant), scenario=args.scenario)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args)


def merge_reports(reports: list[dict]) -> dict:
    merged = dict(reports[0], results={}, tailguard_overrides={}, cpu_seconds=0.0)
    for report in reports:
        same = all(report.get(k) == merged.get(k)
                   for k in ("train_file", "test_file", "generations", "seed", "scenario"))
        if not same or _generation0(report) != _generation0(reports[0]):
            raise ValueError("results come from different data, seeds or generation counts")
        merged["results"].update(report["results"])
        merged["tailguard_overrides"].update(report.get("tailguard_overrides") or {})
        merged["cpu_seconds"] += report["cpu_seconds"]
    return merged


def _generation0(report: dict) -> dict:
    return report["results"][next(iter(report["results"]))][0]


def finish(report: dict, args) -> int:
    report["verdict"] = verdict(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2), encoding="utf-8")
    plots = plot(report, args.plots, args.plot_suffix)
    print()
    print(markdown_table(report))
    print()
    for policy, v in report["verdict"].items():
        print(f"{policy:10s}: perplexity {v['perplexity_change']:+.1%} vs gen 0, rare words kept "
              f"{v['rare_kept_vs_gen0']:.1%} of gen 0's sampled set, {v['rare_in_training_data']:.1%} still in "
              f"the training data")
    print(f"cpu seconds: {report['cpu_seconds']:.0f}; results: {args.results}; plots: "
          + ", ".join(str(p) for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
