# The two commands of the README. Both create (or reuse) .venv and install
# what they need; re-running is cheap once the stamp file is newer than the
# requirements.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mslesion-installed
DEV_STAMP := $(VENV)/.mslesion-dev-installed
DATA ?= data
PATIENTS ?= 10

.PHONY: install install-dev demo test test-fast bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# the test suite's extras (requirements-dev.txt): second Keras backends, notebook runner, pytest
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

install-dev: $(DEV_STAMP)

## demo: the main job, end to end, on the built-in synthetic cohort (~20 min on 2 cores)
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/mslesion demo --data $(DATA) --runs runs/demo --out results --patients $(PATIENTS) --overwrite
	@echo "tables: results/tables/  figures: results/figures/  everything on one page: results/report.md"

## test: the whole test suite (what CI runs)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## test-fast: the edit loop: everything but the tests marked slow (notebooks, full-size builds, long training)
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prep.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_predict.py

clean:
	rm -rf $(DATA)/slices/demo $(DATA)/slices/demo_25d $(DATA)/slices/demo_volumes $(DATA)/raw/synthetic runs/demo .pytest_cache
