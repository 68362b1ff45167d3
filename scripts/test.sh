#!/bin/bash
# The whole test suite, as CI runs it: set up, lint, type-check, test (privileged tests
# included; a skipped privileged test is a failure here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";  .venv/bin/ruff check src tests bench
echo "== mypy";  .venv/bin/mypy
echo "== pytest"
STRATA_REQUIRE_PRIVILEGED=${STRATA_REQUIRE_PRIVILEGED:-1} .venv/bin/pytest -q "$@"
