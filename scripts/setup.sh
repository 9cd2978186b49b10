#!/usr/bin/env bash
# One-step set-up on a fresh Debian machine with Python >= 3.11 and a C compiler:
# a project venv in .venv with rfedge installed editable (plus test extras when asked).
# Safe to re-run: pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rfedge needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.rfedge-installed${extras:+-$extras}"
# Reinstall when the packaging or the compiled CSI text parser changed since the last install.
stale=0
for f in pyproject.toml setup.py host/rfedge/_csitext.c; do
  [ -f "$f" ] && [ "$f" -nt "$stamp" ] && stale=1
done
if [ ! -f "$stamp" ] || [ "$stale" = 1 ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
