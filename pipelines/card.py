"""The snapshot's dataset card (``README.md``, read by Hugging Face as a dataset card) and its Croissant metadata
(``croissant.json``, MLCommons Croissant 1.0 JSON-LD).

Both are built from the manifest (counts, files with sizes and SHA-256, config hash) and from the one declared
record schema (``transforms/document.py``): the field table and the Croissant record sets are generated from
``FIELDS``, so there is no second list of columns to fall out of date. They are written by ``publish`` after the
checks pass and before ``manifest.json``, which lists them with their checksums.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pyarrow as pa
import yaml

import tailguard
from tailguard.transforms.weighting import WEIGHT_MEANING
from tailguard.transforms.document import (ANCHOR_HOLDOUT, DEAD_LETTER, FIELDS, KEYED_VALUES, RECORD_SCHEMA_VERSION,
                                           REJECTED, TRAIN, Field)

CARD = "README.md"
CROISSANT = "croissant.json"
CROISSANT_CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
CARD_SPLITS = (TRAIN, ANCHOR_HOLDOUT, REJECTED)

# Hugging Face's size_categories buckets (upper bounds, exclusive).
_SIZE_BUCKETS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                 (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                 (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"))

# Source tags that name a licence, mapped to the Hub's licence identifiers. A snapshot whose every configured
# source carries the same one gets it; any other mix is `other`, with the per-source table in the card.
LICENCE_TAGS = {
    "public_domain": "pddl", "pddl": "pddl", "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-3.0": "cc-by-sa-3.0", "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0",
    "odc-by": "odc-by", "apache-2.0": "apache-2.0", "mit": "mit",
}


def size_category(rows: int) -> str:
    for bound, name in _SIZE_BUCKETS:
        if rows < bound:
            return name
    return "n>1T"


def split_pattern(split: str) -> str:
    return f"{split}/*.parquet"


def snapshot_licence(resolved_config: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The Hub licence id for the whole snapshot, and per configured source its tags and licence (or None)."""
    sources = []
    for source in (resolved_config.get("ingest") or {}).get("sources") or []:
        tags = list(source.get("tags") or [])
        licences = sorted({LICENCE_TAGS[t] for t in tags if t in LICENCE_TAGS})
        sources.append({"name": source.get("name"), "match": source.get("match"), "tags": tags,
                        "licence": licences[0] if len(licences) == 1 else None})
    licences = {s["licence"] for s in sources}
    # Files no source matches have no licence tag at all, so a single licence needs an explicit claim per source.
    if sources and len(licences) == 1 and None not in licences:
        return licences.pop(), sources
    return "other", sources


def _languages(manifest: dict[str, Any]) -> list[str]:
    counted = manifest.get("languages", {}).get(TRAIN, {})
    return sorted(lang for lang, n in counted.items() if n and lang not in ("und", "zxx"))


def _arrow_type_name(arrow_type: pa.DataType) -> str:
    if arrow_type == KEYED_VALUES:
        return "list<struct<key: string, value: double>>"
    return str(arrow_type)


def card_header(manifest: dict[str, Any]) -> dict[str, Any]:
    """The YAML front matter: configs with data_files per split, licence, languages, size, tags."""
    out = manifest["counts"]["out"]
    licence, _ = snapshot_licence(manifest.get("config", {}))
    header: dict[str, Any] = {
        "pretty_name": f"tailguard snapshot {manifest['run_id']}",
        "license": licence,
    }
    if licence == "other":
        header["license_name"] = "per-source"
        header["license_link"] = "README.md#sources-and-licences"
    languages = _languages(manifest)
    if languages:
        header["language"] = languages
    header.update({
        "size_categories": [size_category(out.get(TRAIN, 0) + out.get(ANCHOR_HOLDOUT, 0))],
        "task_categories": ["text-generation"],
        "tags": ["tailguard", "model-collapse", "synthetic-text-detection", "deduplicated"],
        "configs": [{
            "config_name": "default",
            "default": True,
            "data_files": [{"split": split, "path": split_pattern(split)} for split in CARD_SPLITS
                           if any(f["split"] == split for f in manifest["files"])],
        }],
    })
    return header


def _field_rows() -> list[str]:
    rows = ["| field | type | stage | meaning |", "|---|---|---|---|"]
    for f in FIELDS:
        meaning = f.meaning.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{f.name}` | `{_arrow_type_name(f.type)}` | {f.stage} | {meaning} |")
    return rows


def _count_rows(manifest: dict[str, Any]) -> list[str]:
    counts = manifest["counts"]
    rows = ["| split | documents | files |", "|---|---:|---:|"]
    for split in (*CARD_SPLITS, DEAD_LETTER):
        files = [f for f in manifest["files"] if f["split"] == split]
        rows.append(f"| `{split}` | {counts['out'].get(split, 0):,} | {len(files)} |")
    return rows


def _reason_rows(title: str, reasons: dict[str, int]) -> list[str]:
    if not reasons:
        return []
    rows = [f"| {title} | documents |", "|---|---:|"]
    rows += [f"| `{reason}` | {n:,} |" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    return rows + [""]


def _weights_paragraph(manifest: dict[str, Any]) -> list[str]:
    weights = manifest.get("weights") or {}
    lines = [
        WEIGHT_MEANING.replace("sample_weight", "`sample_weight`", 1) + " Rare languages, rare topics and content "
        "that existed in few copies weigh more; likely machine text weighs less. Weights are computed against the "
        "whole snapshot: do not mix weights of different snapshots.",
        "",
        "`tailguard.training.sampling_plan(SNAPSHOT, budget_tokens, seed=0)` turns them into the rows a trainer "
        "reads (`Dataset.from_parquet(plan.files).select(plan.indices)`, or `PlanSampler(plan)` for a PyTorch "
        "`DataLoader`); a trainer that cannot sample may multiply each example's loss by `sample_weight` instead.",
    ]
    if weights.get("train_documents"):
        quantiles = weights.get("weight_quantiles", {})
        lines += ["", f"In this snapshot: median weight {quantiles.get('p50', float('nan')):.3g}, range "
                      f"[{weights.get('min_weight')}, "
                      f"{(weights.get('repetition_cap') or {}).get('ceiling', weights.get('max_weight'))}]; anchors hold "
                      f"{weights.get('anchor_token_share', 0):.1%} of the weighted tokens (minimum "
                      f"`anchors.min_share` = {weights.get('anchor_min_share')})."]
    return lines


def dataset_card(manifest: dict[str, Any], report: Optional[str] = None) -> str:
    """The snapshot's README.md: YAML front matter for the Hub, then what the snapshot is and how to use it."""
    header = yaml.safe_dump(card_header(manifest), sort_keys=False, allow_unicode=True)
    counts = manifest["counts"]
    _, sources = snapshot_licence(manifest.get("config", {}))
    run_id = manifest["run_id"]
    lines = [
        "---", header.rstrip("\n"), "---", "",
        f"# tailguard snapshot `{run_id}`", "",
        "A training set curated by tailguard "
        f"{manifest.get('versions', {}).get('tailguard', tailguard.__version__)}: language-identified, scored "
        "for machine-generated text, near-deduplicated, with verified human *anchor* documents kept in every "
        "mix and rare content weighted up, so that models trained on it resist model collapse.", "",
        "## Splits", "",
        *_count_rows(manifest), "",
        f"Balance: {counts['equation']}.", "",
        "* `train` -- the documents to train on, each with `sample_weight`.",
        "* `anchor_holdout` -- verified human documents reserved as a fixed reference: **never train on them**; "
        "evaluate on them (perplexity drift between model generations) and compare snapshots against them.",
        "* `rejected` -- every document a stage filtered out, with `rejected_by`, `reject_reason` and "
        "`reject_detail`; not for training.",
        "* `dead_letter/*.jsonl` -- input records that could not be read as documents, with source and reason "
        "(not a configured split).", "",
        "## Use", "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("parquet", data_files={{"train": "{run_id}/{split_pattern(TRAIN)}", '
        f'"anchor_holdout": "{run_id}/{split_pattern(ANCHOR_HOLDOUT)}"}})',
        "# or, from a local copy of this directory or its Hub repository: datasets.load_dataset(PATH)",
        "```", "",
        "### `sample_weight`", "",
        *_weights_paragraph(manifest), "",
        "### `anchor_holdout`", "",
        "A hash of `doc_id` chose these anchors, so the same documents are held out in every snapshot of this "
        "series; evaluating each model generation on them measures drift from human text.", "",
        "## Sources and licences", "",
    ]
    if sources:
        lines += ["| source | files matched | tags | licence |", "|---|---|---|---|"]
        lines += [f"| `{s['name']}` | `{s['match']}` | {', '.join(s['tags']) or '-'} | {s['licence'] or 'not stated'} |"
                  for s in sources]
        lines += [""]
    lines += [
        "Every document keeps its provenance (`source`, `source_uri`, `source_offset`, `source_tags`): check the "
        "licence of each source before redistributing. Files matched by no configured source carry no licence tag.",
        "",
        "## Curation", "",
        *_reason_rows("rejection (stage.reason)", manifest.get("rejected_by_reason", {})),
        *_reason_rows("dead-letter reason", manifest.get("dead_letter_by_reason", {})),
        f"Config SHA-256: `{manifest.get('config_sha256')}` (the resolved config is in `manifest.json`). "
        f"Runner: {manifest.get('runner')}. Previous snapshot: "
        f"{'`' + manifest['previous'] + '`' if manifest.get('previous') else 'none (first of its series)'}.", "",
    ]
    for warning in manifest.get("warnings") or []:
        lines += [f"> **Warning:** {warning}", ""]
    if report:
        lines += [f"Collapse-risk report: [{report.rsplit('/', 1)[0]}/report.html]({report.rsplit('/', 1)[0]}/report.html) "
                  f"(figures in [`{report}`]({report})).", ""]
    lines += ["## Fields", "",
              f"Record schema version {RECORD_SCHEMA_VERSION}, "
              "declared in `tailguard/transforms/document.py`. Named scores (`lang_alternatives`, "
              "`synthetic_signals`, `rarity_signals`) are lists of `{key, value}`.", "",
              *_field_rows(), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- Croissant

def _croissant_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "sc:Text"
    if pa.types.is_integer(arrow_type):
        return "sc:Integer"
    if pa.types.is_floating(arrow_type):
        return "sc:Float"
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean"
    if pa.types.is_timestamp(arrow_type):
        return "sc:Date"
    raise ValueError(f"no Croissant type for {arrow_type}")


def _croissant_field(record_set: str, file_set: str, f: Field) -> dict[str, Any]:
    field_id = f"{record_set}/{f.name}"
    out: dict[str, Any] = {"@type": "cr:Field", "@id": field_id, "name": f.name, "description": f.meaning}
    source = {"fileSet": {"@id": file_set}, "extract": {"column": f.name}}
    if f.type == KEYED_VALUES:
        out["repeated"] = True
        out["subField"] = [
            {"@type": "cr:Field", "@id": f"{field_id}/key", "name": "key", "dataType": "sc:Text",
             "source": {"fileSet": {"@id": file_set}, "extract": {"column": f.name}, "transform": {"jsonPath": "key"}}},
            {"@type": "cr:Field", "@id": f"{field_id}/value", "name": "value", "dataType": "sc:Float",
             "source": {"fileSet": {"@id": file_set}, "extract": {"column": f.name}, "transform": {"jsonPath": "value"}}},
        ]
        return out
    if pa.types.is_list(f.type):
        out["repeated"] = True
        out["dataType"] = _croissant_type(f.type.value_type)
    else:
        out["dataType"] = _croissant_type(f.type)
    out["source"] = source
    return out


def croissant_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """Croissant 1.0 JSON-LD: every Parquet file as a FileObject with its SHA-256, a FileSet per split grouping
    them, and a RecordSet per split whose fields are the declared schema's."""
    licence, _ = snapshot_licence(manifest.get("config", {}))
    distribution: list[dict[str, Any]] = []
    record_sets: list[dict[str, Any]] = []
    for split in CARD_SPLITS:
        files = [f for f in manifest["files"] if f["split"] == split]
        if not files:
            continue
        file_set = f"{split}-files"
        for f in files:
            distribution.append({
                "@type": "cr:FileObject", "@id": f["path"], "name": f["path"],
                "contentUrl": f["path"], "contentSize": f"{f['bytes']} B",
                "encodingFormat": "application/x-parquet", "sha256": f["sha256"],
            })
        # The record sets read the split through a FileSet (a glob relative to this file); the FileObjects
        # beside it pin each file's size and checksum.
        distribution.append({
            "@type": "cr:FileSet", "@id": file_set, "name": file_set,
            "encodingFormat": "application/x-parquet", "includes": split_pattern(split),
        })
        record_sets.append({
            "@type": "cr:RecordSet", "@id": split, "name": split,
            "description": f"Documents of the `{split}` split ({manifest['counts']['out'].get(split, 0)} documents).",
            "key": {"@id": f"{split}/doc_id"},
            "field": [_croissant_field(split, file_set, f) for f in FIELDS],
        })
    return {
        "@context": _CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_CONFORMS_TO,
        "name": f"tailguard-snapshot-{manifest['run_id']}",
        "description": (f"tailguard snapshot {manifest['run_id']}: curated, deduplicated, provenance-tagged training "
                        f"text with human anchors and sample weights. {manifest['counts']['equation']}."),
        "license": (f"https://spdx.org/licenses/{_SPDX.get(licence, licence)}.html" if licence != "other"
                    else "https://huggingface.co/docs/hub/repositories-licenses"),
        "url": "README.md",
        "version": _semantic_version(manifest),
        "datePublished": manifest.get("finished_at", "")[:10],
        "citeAs": f"tailguard snapshot {manifest['run_id']} (config sha256 {manifest.get('config_sha256')})",
        "distribution": distribution,
        "recordSet": record_sets,
    }


_SPDX = {"pddl": "PDDL-1.0", "cc0-1.0": "CC0-1.0", "cc-by-4.0": "CC-BY-4.0", "cc-by-sa-3.0": "CC-BY-SA-3.0",
         "cc-by-sa-4.0": "CC-BY-SA-4.0", "cc-by-nc-4.0": "CC-BY-NC-4.0", "odc-by": "ODC-By-1.0",
         "apache-2.0": "Apache-2.0", "mit": "MIT"}


def _semantic_version(manifest: dict[str, Any]) -> str:
    # Croissant wants MAJOR.MINOR.PATCH; the run id orders snapshots, the record schema version is the major.
    return f"{RECORD_SCHEMA_VERSION}.0.0"


# The context every Croissant 1.0 file carries (from the specification), so the file is valid JSON-LD offline.
_CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def card_files(manifest: dict[str, Any], report: Optional[str] = None) -> dict[str, bytes]:
    """File name -> content of the dataset card and the Croissant metadata, as written beside the manifest."""
    return {
        CARD: dataset_card(manifest, report).encode("utf-8"),
        CROISSANT: (json.dumps(croissant_metadata(manifest), indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
    }
