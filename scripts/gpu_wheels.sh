#!/usr/bin/env bash
# Wheels of the pure-Python dependencies the GPU machine lacks, for its Python (3.12, x86-64), into
# the git-ignored .whl/ that the device tool carries. Its image has torch, numpy, pandas, scipy,
# pillow, matplotlib, pyyaml, tqdm and tabulate; hydra-core and omegaconf are missing, and both pin
# antlr4-python3-runtime 4.9.*, which PyPI has as a source archive only: it is built here into a
# pure-Python wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PYVER="${GPU_PYTHON_VERSION:-3.12}"
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d .whl hydra-core==1.3.8 omegaconf==2.3.1
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
