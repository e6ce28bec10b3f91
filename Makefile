# The two commands of the README. Both create (or reuse) .venv and install
# what they need; re-running is cheap once the stamp file is newer than the
# requirements.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mslesion-installed
DATA ?= data
PATIENTS ?= 10
JOBS ?= 2

.PHONY: install demo test bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## demo: the main job on the built-in synthetic cohort
demo: $(STAMP)
	$(BIN)/mslesion synth $(DATA)/raw/synthetic --patients $(PATIENTS) --overwrite
	$(BIN)/mslesion prep $(DATA)/raw/synthetic $(DATA)/slices/synthetic --jobs $(JOBS) --no-progress
	@echo "slices, manifest.csv, splits.json: $(DATA)/slices/synthetic"

## test: the whole test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prep.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(DATA)/slices/synthetic $(DATA)/raw/synthetic .pytest_cache
