#!/usr/bin/env bash
# The main job: set up, then run `rfedge pipeline` on its embedded default (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rfedge pipeline "$@"
