# The README's commands. `make demo` and `make test` set themselves up on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo
NOTEBOOK_ITERATIONS := 10000

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes; torch is pinned to the CPU build on this machine's disk.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/digitocr fetch
	$(BIN)/digitocr train --preset seed --run $(DEMO) --until $(NOTEBOOK_ITERATIONS)
	$(BIN)/digitocr evaluate --model $(DEMO)
	$(BIN)/digitocr plot all --model $(DEMO) --out $(DEMO)/figures
	$(BIN)/digitocr report $(DEMO)
	@echo
	@echo "Figures: $(DEMO)/figures/   Report: $(DEMO)/report.html"

test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/seed_curve.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
