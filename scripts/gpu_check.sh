#!/usr/bin/env bash
# The prepared GPU check (issue 16): correctness on CUDA, then a budgeted timing sweep of VGGT-1B
# (random weights) and π³ into one folder. Runs from a copy of the repository on a machine with
# only torch installed: the missing pure-Python dependencies come from the wheels in .whl/
# (scripts/gpu_wheels.sh downloads them).
#
#   scripts/gpu_check.sh [--dry-run] [--budget-s S] [OUT_DIR]
#
# OUT_DIR defaults to $OUT (the device tool's folder), else results/gpu_check. --dry-run: the same
# script on CPU at toy sizes in under a minute. Exit status 1 when a correctness check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
args=()
out=""
while (($#)); do
    case "$1" in
        --dry-run) args+=("$1") ;;
        --budget-s) args+=("$1" "$2"); shift ;;
        *) out="$1" ;;
    esac
    shift
done
out="${out:-${OUT:-results/gpu_check}}"
mkdir -p "$out"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "$PY cannot import torch: set PYTHON to the interpreter that has it" >&2
    exit 2
fi
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "hydra-core/omegaconf missing and no wheels in .whl/: run scripts/gpu_wheels.sh" >&2
        exit 2
    fi
    site="${TMPDIR:-/tmp}/avggt_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || exit 2
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
"$PY" scripts/gpu_check.py --out "$out" "${args[@]}" 2>&1 | tee "$out/gpu_check.log"
