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
