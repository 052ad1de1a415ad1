"""A published snapshot as its users read it: Hugging Face `datasets` (default and streaming, through the dataset
card and through plain Parquet globs), pandas, Polars, DuckDB and pyarrow.dataset; the dataset card as the Hub
parses it; the Croissant metadata as mlcroissant validates and reads it; old-schema snapshots carried forward."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tailguard.pipelines.card import CARD, CROISSANT, croissant_metadata, dataset_card, size_category, snapshot_licence
from tailguard.pipelines.cli import main
from tailguard.transforms.document import (ARROW_SCHEMA, FIELD_NAMES, KEYED_VALUES, from_arrow_table,
                                           is_keyed_values, to_arrow_table)
from tests.conftest import EXAMPLES, ROOT, demo_inputs

FIXTURES = Path(__file__).parent / "fixtures"
OLD_SNAPSHOT = FIXTURES / "snapshot_v1"


def run(output: Path, run_id: str, inputs: list[str], *extra: str) -> int:
    argv = ["run", "--output", str(output), "--run-id", run_id, "--config", str(EXAMPLES / "curate.yaml"),
            "--set", "report.enabled=false"]
    for pattern in inputs:
        argv += ["--input", str(pattern)]
    return main(argv + list(extra))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("readers")
    assert run(output, "demo", demo_inputs()) == 0
    return output / "demo"


@pytest.fixture(scope="module")
def manifest(snapshot) -> dict:
    return json.loads((snapshot / "manifest.json").read_text())


def _offline_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_HOME=str(tmp_path / "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT))
    return env


def _run_python(code: str, cwd: Path, tmp_path: Path) -> dict:
    """Run a reader in its own interpreter (datasets keeps global caches) and return what it printed as JSON."""
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_offline_env(tmp_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ the schema

def test_named_scores_are_lists_of_key_value_structs_and_round_trip():
    records = [{"doc_id": "a", "text": "x", "synthetic_signals": {"n_words": 3.0, "downweight": 1.0},
                "lang_alternatives": {}, "rarity_signals": None}]
    table = to_arrow_table(records)
    assert table.schema.field("synthetic_signals").type == KEYED_VALUES
    assert table.column("synthetic_signals").to_pylist() == [[{"key": "n_words", "value": 3.0},
                                                              {"key": "downweight", "value": 1.0}]]
    back = from_arrow_table(table)
    assert back[0]["synthetic_signals"] == {"n_words": 3.0, "downweight": 1.0}
    assert back[0]["lang_alternatives"] == {} and "rarity_signals" not in back[0]
    assert ARROW_SCHEMA.metadata[b"tailguard.record"] == b"2"
    assert not any(pa.types.is_map(f.type) for f in ARROW_SCHEMA)


def test_schema_1_tables_with_map_columns_read_as_the_same_records():
    old_type = pa.map_(pa.string(), pa.float64())
    table = pa.table({"doc_id": ["a", "b"], "synthetic_signals": pa.array([[("x", 1.0)], None], type=old_type)})
    assert is_keyed_values(old_type) and is_keyed_values(KEYED_VALUES) and not is_keyed_values(pa.list_(pa.string()))
    assert from_arrow_table(table) == [{"doc_id": "a", "synthetic_signals": {"x": 1.0}}, {"doc_id": "b"}]


# ------------------------------------------------------------------------------------------------ every reader

def test_hugging_face_datasets_loads_every_split_through_the_card_and_by_parquet_glob(snapshot, manifest, tmp_path):
    code = textwrap.dedent(f"""
        import json, datasets
        card = datasets.load_dataset({str(snapshot)!r})
        glob = datasets.load_dataset("parquet", data_files={{"train": {str(snapshot / "train" / "*.parquet")!r}}})
        cols = datasets.load_dataset("parquet", data_files={str(snapshot / "train" / "*.parquet")!r},
                                     split="train", columns=["doc_id", "sample_weight"])
        first = card["train"].sort("doc_id")[0]
        print(json.dumps({{"splits": {{k: v.num_rows for k, v in card.items()}}, "glob": glob["train"].num_rows,
                          "cols": cols.column_names, "signals": first["synthetic_signals"][:2],
                          "first": first["doc_id"], "weight": first["sample_weight"],
                          "feature": str(card["train"].features["rarity_signals"])}}))
    """)
    got = _run_python(code, tmp_path, tmp_path)
    out = manifest["counts"]["out"]
    assert got["splits"] == {"train": out["train"], "anchor_holdout": out["anchor_holdout"],
                             "rejected": out["rejected"]}
    assert got["glob"] == out["train"] and got["cols"] == ["doc_id", "sample_weight"]
    expected = pq.read_table(snapshot / "train").sort_by("doc_id").slice(0, 1).to_pylist()[0]
    assert got["first"] == expected["doc_id"] and got["weight"] == pytest.approx(expected["sample_weight"])
    assert got["signals"] == expected["synthetic_signals"][:2]
    assert "key" in got["feature"] and "value" in got["feature"]


def test_hugging_face_datasets_streams_every_split(snapshot, manifest, tmp_path):
    code = textwrap.dedent(f"""
        import json, datasets
        counts = {{}}
        for split in ("train", "anchor_holdout", "rejected"):
            stream = datasets.load_dataset({str(snapshot)!r}, split=split, streaming=True)
            counts[split] = sum(1 for _ in stream)
        one = next(iter(datasets.load_dataset({str(snapshot)!r}, split="train", streaming=True)))
        print(json.dumps({{"counts": counts, "alternatives": one["lang_alternatives"]}}))
    """)
    got = _run_python(code, tmp_path, tmp_path)
    out = manifest["counts"]["out"]
    assert got["counts"] == {split: out[split] for split in ("train", "anchor_holdout", "rejected")}
    assert isinstance(got["alternatives"], list)


def test_pandas_polars_duckdb_and_pyarrow_dataset_read_the_same_rows(snapshot, manifest):
    import duckdb
    import pandas as pd
    import polars as pl

    expected = manifest["counts"]["out"]["train"]
    weights = sorted(pq.read_table(snapshot / "train", columns=["sample_weight"]).column(0).to_pylist())
    frame = pd.read_parquet(snapshot / "train")
    assert len(frame) == expected and sorted(frame["sample_weight"]) == pytest.approx(weights)
    assert isinstance(frame["synthetic_signals"].iloc[0][0], dict)
    polars = pl.read_parquet(str(snapshot / "train" / "*.parquet"))
    assert polars.height == expected
    keys = polars.select(pl.col("synthetic_signals").list.eval(pl.element().struct.field("key"))).row(0)[0]
    assert "n_words" in keys
    count, total = duckdb.sql(f"select count(*), sum(sample_weight) from '{snapshot}/train/*.parquet'").fetchall()[0]
    assert count == expected and total == pytest.approx(sum(weights))
    signal = duckdb.sql(f"select list_filter(synthetic_signals, lambda s: s.key = 'n_words')[1].value "
                        f"from '{snapshot}/train/*.parquet' limit 1").fetchall()[0][0]
    assert signal > 0
    dataset = pads.dataset(str(snapshot / "train"), format="parquet")
    assert dataset.count_rows() == expected and dataset.schema.names == list(FIELD_NAMES)


def test_the_readme_one_liners_run_on_a_snapshot(snapshot, manifest, tmp_path):
    """README.md's "Read it with anything that reads Parquet" block, run as written against out/demo/demo."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Read it with anything that reads Parquet", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    workdir = tmp_path / "work"
    (workdir / "out" / "demo").mkdir(parents=True)
    shutil.copytree(snapshot, workdir / "out" / "demo" / "demo")
    probe = code + textwrap.dedent("""
        import json as _json
        print(_json.dumps({"ds": {k: v.num_rows for k, v in ds.items()}, "df": len(df),
                           "by_lang": sum(n for _, n, _ in by_lang.fetchall())}))
    """)
    got = _run_python(probe, workdir, tmp_path)
    out = manifest["counts"]["out"]
    assert got["ds"]["train"] == out["train"] and got["df"] == out["train"] and got["by_lang"] == out["train"]


# ------------------------------------------------------------------------------------------------ card and Croissant

def test_the_dataset_card_is_accepted_by_the_hub_card_parser(snapshot, manifest):
    from huggingface_hub import DatasetCard, DatasetCardData

    card = DatasetCard.load(snapshot / CARD)
    data = card.data.to_dict()
    assert isinstance(card.data, DatasetCardData)
    (config,) = data["configs"]
    assert {f["split"]: f["path"] for f in config["data_files"]} == {
        "train": "train/*.parquet", "anchor_holdout": "anchor_holdout/*.parquet", "rejected": "rejected/*.parquet"}
    assert data["license"] == "other" and data["license_name"] == "per-source"
    assert "en" in data["language"] and "und" not in data["language"]
    assert data["size_categories"] == ["n<1K"]
    body = card.text
    assert manifest["config_sha256"] in body and "sample_weight" in body and "anchor_holdout" in body
    for name in FIELD_NAMES:  # every declared field is explained, from the declaration
        assert f"| `{name}` |" in body
    assert manifest["card"][CARD]["bytes"] == (snapshot / CARD).stat().st_size


def test_the_card_renders_as_markdown_with_its_tables():
    import markdown

    manifest = _small_manifest()
    html = markdown.markdown(dataset_card(manifest, report="report/report.json").split("---\n", 2)[2],
                             extensions=["tables", "fenced_code"])
    assert "<table>" in html and "<code>sample_weight</code>" in html and 'href="report/report.html"' in html


def test_croissant_metadata_validates_and_reads_the_records(snapshot, manifest):
    import mlcroissant as mlc

    metadata = json.loads((snapshot / CROISSANT).read_text())
    assert metadata["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    objects = {d["contentUrl"]: d for d in metadata["distribution"] if d["@type"] == "cr:FileObject"}
    listed = {f["path"]: f for f in manifest["files"] if f["split"] in ("train", "anchor_holdout", "rejected")}
    assert set(objects) == set(listed)
    assert all(objects[p]["sha256"] == listed[p]["sha256"] for p in listed)
    dataset = mlc.Dataset(jsonld=str(snapshot / CROISSANT))  # raises on any validation error
    holdout = list(dataset.records(record_set="anchor_holdout"))
    assert len(holdout) == manifest["counts"]["out"]["anchor_holdout"]
    first = holdout[0]
    assert first["anchor_holdout/is_anchor"] is True
    assert {s["anchor_holdout/synthetic_signals/key"] for s in first["anchor_holdout/synthetic_signals"]} >= {b"n_words"}


def test_size_categories_and_licences():
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 5_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]
    one = {"ingest": {"sources": [{"name": "a", "match": "*", "tags": ["verified_human", "cc-by-sa-4.0"]}]}}
    assert snapshot_licence(one)[0] == "cc-by-sa-4.0"
    mixed = {"ingest": {"sources": [{"name": "a", "match": "a*", "tags": ["cc-by-sa-4.0"]},
                                    {"name": "b", "match": "b*", "tags": ["public_domain"]}]}}
    assert snapshot_licence(mixed)[0] == "other" and snapshot_licence({})[0] == "other"
    metadata = croissant_metadata(_small_manifest(config=one))
    assert metadata["license"] == "https://spdx.org/licenses/CC-BY-SA-4.0.html"


def _small_manifest(config=None) -> dict:
    return {"run_id": "r", "counts": {"out": {"train": 2, "anchor_holdout": 0, "rejected": 0, "dead_letter": 0},
                                      "equation": "2 read + 0 carried = 2 train (holds)"},
            "files": [{"split": "train", "path": "train/part-00000-of-00001.parquet", "rows": 2, "bytes": 10,
                       "sha256": "0" * 64}],
            "config": config or {}, "config_sha256": "abc", "languages": {"train": {"en": 2}}}


# ------------------------------------------------------------------------------------------------ old snapshots

def test_a_schema_1_snapshot_is_carried_forward_into_a_schema_2_one(tmp_path):
    """tests/fixtures/snapshot_v1 was published by tailguard 0.1.0 (map columns); --previous reads it."""
    output = tmp_path / "out"
    previous = tmp_path / "v1"
    shutil.copytree(OLD_SNAPSHOT, previous)
    old_train = pq.read_table(previous / "train")
    assert pa.types.is_map(old_train.schema.field("synthetic_signals").type)
    assert run(output, "v2", [str(EXAMPLES / "corpus" / "web_crawl_2025.jsonl.gz")], "--previous", str(previous)) == 0
    new = {r["doc_id"]: r for r in pq.read_table(output / "v2" / "train").to_pylist()}
    assert new_schema_ok(output / "v2" / "train")
    for old in old_train.to_pylist():
        carried = new[old["doc_id"]]
        assert carried["text"] == old["text"] and carried["first_run_id"] == old["first_run_id"]
        assert {s["key"]: s["value"] for s in carried["synthetic_signals"]} == dict(old["synthetic_signals"])


def new_schema_ok(split_dir: Path) -> bool:
    schema = pq.read_schema(next(split_dir.glob("*.parquet")))
    return schema.field("synthetic_signals").type == KEYED_VALUES and schema.metadata[b"tailguard.record"] == b"2"


@pytest.mark.parametrize("damage", ["missing", "extra", "resized"])
def test_a_snapshot_whose_files_differ_from_its_manifest_fails_report_and_previous(tmp_path, damage, capsys):
    snapshot = tmp_path / "v1"
    shutil.copytree(OLD_SNAPSHOT, snapshot)
    shard = snapshot / "train" / "part-00000-of-00001.parquet"
    if damage == "missing":
        shard.unlink()
        named = "missing file train/part-00000-of-00001.parquet"
    elif damage == "extra":
        shutil.copy(shard, snapshot / "train" / "part-00001-of-00001.parquet")
        named = "extra file train/part-00001-of-00001.parquet"
    else:
        with open(shard, "ab") as f:
            f.write(b"\0")
        named = "file train/part-00000-of-00001.parquet has"
    assert run(tmp_path / "out", "next", [str(EXAMPLES / "corpus" / "inaugural.jsonl")],
               "--previous", str(snapshot)) == 2
    err = capsys.readouterr().err
    assert "--previous" in err and named in err
    assert main(["report", str(snapshot)]) == 2
    err = capsys.readouterr().err
    assert "SNAPSHOT" in err and named in err
