#!/usr/bin/env bash
# The test suite: set up with the test extras, run pytest on tests/, then the HIL suite on the
# virtual boards (host, qemu-rv32, qemu-m4; a board whose tools are missing is skipped with the
# reason unless RFEDGE_REQUIRE names it). Extra arguments pass through to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest tests "$@"
mkdir -p runs
exec .venv/bin/python -m pytest hil_tests --board host,qemu-rv32,qemu-m4 --junitxml runs/hil-junit.xml "$@"
