from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def beam_pipeline():
    """A pipeline on Beam's FnApiRunner in memory (what the DirectRunner uses, without the Prism attempt)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    def make(*args: str):
        return beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(list(args)))

    return make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def demo_inputs() -> list[str]:
    return [str(EXAMPLES / "corpus" / "*.*"), str(EXAMPLES / "corpus" / "gutenberg" / "*.txt")]


os.environ.setdefault("PYTHONHASHSEED", "0")


PACKAGING_INPUTS = ("setup.py", "pyproject.toml", "README.md", "tailguard", "pipelines", "transforms")


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """tailguard built as a wheel from a copy of its packaging inputs, installed in a fresh venv outside the
    repository (uv, for speed: the same resolution from PyPI as pip). Returns (venv python, wheel path)."""
    import shutil
    import subprocess

    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    for name in PACKAGING_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(path, source / name)
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("tailguard-*.whl")
    venv = base / "venv"
    interpreter = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", "--python", interpreter, str(venv)], check=True,
                   capture_output=True, timeout=300)
    # --python: run as `python -m uv`, uv would otherwise install into the interpreter that runs it.
    result = subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python",
                             str(venv / "bin" / "python"), str(wheel)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv / "bin" / "python", wheel
