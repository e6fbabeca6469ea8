# alpaca-kit: `make quickstart` runs the main job on the embedded store; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the local CPU build of torch first: any other torch spec would pull GBs of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

quickstart: setup
	ALPACA_STORE=$${ALPACA_STORE:-alpaca-store} bash scripts/quickstart.sh

test: setup
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py

lint: setup
	$(BIN)/ruff check alpaca_data alpaca_train tests benchmarks

clean:
	rm -rf $(VENV) alpaca-store .pytest_cache
