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
# test processes (pytest-xdist): each runs torch on one thread, so one per core; the two modules
# with full-size models share one worker (tests/conftest.py), which bounds the memory
TEST_WORKERS ?= 2
BENCH_ARGS ?=
ARGS ?=

.PHONY: help setup system-deps run bench bench-full test test-all lint format report clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# torch is pinned here (not in pyproject): an unpinned torch pulls several GB of CUDA wheels on
# CPU-only machines. An already installed torch that satisfies the package's range is kept.
$(STAMP): pyproject.toml $(if $(VIRTUAL_ENV),,$(VENV)/bin/python)
	@tools/system_deps.sh
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

setup: system-deps $(STAMP) ## create the virtual environment (if none is active) and install the project

# open3d-cpu's wheel links libusb-1.0.so.0: installed with apt-get when missing and run as root,
# otherwise the script stops with the command to run (SYSTEM_DEPS=skip to go on without it).
system-deps: ## check the system libraries the wheels link (installs libusb-1.0-0 as root)
	@tools/system_deps.sh

run: $(STAMP) ## one job or a sweep (Hydra arguments): make run ARGS="num_views=8 attention=avggt_9"
	$(PY) -m avggt_bench.run $(ARGS)

bench: $(STAMP) ## quick benchmark (dense vs AVGGT(9) vs FastVGGT at 12-36 views, <= 10 min on 2 CPU cores) + report
	$(PY) -m avggt_bench.bench $(BENCH_ARGS)

bench-full: $(STAMP) ## every benchmark sweep (VGGT, pi3, baselines, memory) and metric timing + report
	$(PY) -m avggt_bench.bench --full $(BENCH_ARGS)

test: setup lint ## lint, then the fast test suite (what CI runs), with its 15 slowest tests
	$(PY) -m pytest -q -m "not slow and not gpu" -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

test-all: setup ## run every test, slow ones included (gpu tests skip without CUDA)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check avggt_bench tests
	$(PY) -m ruff format --check avggt_bench tests

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(PY) -m ruff check --fix avggt_bench tests datasets
	$(PY) -m ruff format avggt_bench tests datasets

report: $(STAMP) ## rebuild the summary tables from records (DIR=results/runs/<machine>/bench ...)
	$(PY) -m avggt_bench.report $(or $(DIR),results)

clean: ## remove Hydra outputs and caches (keeps .venv and results/)
	rm -rf outputs multirun .pytest_cache .ruff_cache

.PHONY: gpu-check gpu-wheels
gpu-check: ## the prepared GPU check (scripts/gpu_check.sh; DRY=1: on CPU at toy sizes, OUT=folder)
	PYTHON=$(or $(PYTHON),$(if $(wildcard $(PY)),$(PY),python3)) scripts/gpu_check.sh $(if $(DRY),--dry-run) $(OUT)

gpu-wheels: ## download into .whl/ the wheels the GPU machine lacks (hydra-core, omegaconf, antlr4)
	PYTHON=$(or $(PYTHON),$(if $(wildcard $(PY)),$(PY),python3)) scripts/gpu_wheels.sh
