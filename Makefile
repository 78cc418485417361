# avggt_bench — `make bench` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Use the active virtual environment if there is one, else our own .venv.
ifdef VIRTUAL_ENV
PY := python
else
PY := $(VENV)/bin/python
endif
STAMP := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(VENV))/.avggt-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
ARGS ?=

.PHONY: help setup bench bench-full run test test-all lint format report clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch is pinned here (not in pyproject): an unpinned torch pulls several GB of CUDA wheels on
# CPU-only machines. An already installed torch that satisfies the package's range is kept.
$(STAMP): pyproject.toml $(if $(VIRTUAL_ENV),,$(VENV)/bin/python)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

setup: $(STAMP) ## create the virtual environment (if none is active) and install the project

bench: $(STAMP) ## quick benchmark (dense vs AVGGT(9) vs FastVGGT over views, ~5 min on 2 CPU cores) + report
	$(PY) -m avggt_bench.bench $(BENCH_ARGS)

bench-full: $(STAMP) ## every benchmark sweep (VGGT, pi3, baselines, memory) and metric timing + report
	$(PY) -m avggt_bench.bench --full $(BENCH_ARGS)

run: $(STAMP) ## one job or sweep with the project's environment: make run ARGS="num_views=8 attention=avggt_9"
	$(PY) -m avggt_bench.run $(ARGS)

test: $(STAMP) lint ## lint, then the fast test suite (what CI runs)
	$(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, slow ones included (gpu tests skip without CUDA)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check avggt_bench tests datasets
	$(PY) -m ruff format --check avggt_bench tests datasets

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(PY) -m ruff check --fix avggt_bench tests datasets
	$(PY) -m ruff format avggt_bench tests datasets

report: $(STAMP) ## rebuild the summary tables from records (DIR=results/runs/<machine>/bench ...)
	$(PY) -m avggt_bench.report $(or $(DIR),results)

clean: ## remove Hydra outputs and caches (keeps .venv and results/)
	rm -rf outputs multirun .pytest_cache .ruff_cache
