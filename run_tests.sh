#!/usr/bin/env bash
# Lint and test the portal.
#   ./run_tests.sh [pytest arguments]          everything, on every core; the 15 slowest tests
#                                              listed; with no arguments, the coverage gate too
#   ./run_tests.sh --fast [pytest arguments]   lint and every test that starts no process, no
#                                              browser and needs no PostgreSQL (tests marked
#                                              e2e or slow are left out), two pytest-xdist
#                                              workers per core
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi

stamp=".venv/.requirements-dev.sha256"
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# sslyze (the TLS scan of the served configuration) pins an older cryptography than the
# portal's: it gets a virtual environment of its own.
scan_stamp=".venv-tls-scan/.requirements.sha256"
scan_want=$(sha256sum requirements-tls-scan.txt | cut -d' ' -f1)
if [ "$fast" = 0 ] && { [ ! -x .venv-tls-scan/bin/sslyze ] || [ "$(cat "$scan_stamp" 2>/dev/null)" != "$scan_want" ]; }; then
  [ -x .venv-tls-scan/bin/python ] || "$PYTHON" -m venv .venv-tls-scan
  .venv-tls-scan/bin/python -m pip install --quiet -r requirements-tls-scan.txt
  echo "$scan_want" > "$scan_stamp"
fi

# Compiled modules (and pytest's rewritten test modules) are kept between runs, in the
# virtual environment rather than beside the sources, even where the shell turns them off:
# every test worker and every server a test starts would compile them again.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"

if [ "$fast" = 1 ]; then
  # It waits on PyPI, not on the processor: it runs beside the tests and reports after them.
  audit_log=$(mktemp)
  .venv/bin/python tools/audit_dependencies.py >"$audit_log" 2>&1 &
  audit_pid=$!
else
  echo "== pip-audit (known vulnerabilities of the installed requirements)"
  .venv/bin/python tools/audit_dependencies.py
fi

echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== lint-imports (the layers in pyproject.toml)"
.venv/bin/lint-imports --no-cache
if [ "$fast" = 1 ]; then
  echo "== pytest (fast: no process, no browser, no PostgreSQL)"
  # Twice as many workers as cores: many of these tests wait on a socket or a timer; an idle
  # worker takes tests queued for a busy one. The plugins of the API fuzzing (e2e) stay out.
  status=0
  .venv/bin/python -m pytest -m "not e2e and not slow" -n "$(( $(nproc) * 2 ))" \
    --dist worksteal -p no:schemathesis -p no:hypothesispytest "$@" || status=$?
  echo "== pip-audit (known vulnerabilities of the installed requirements)"
  audit_status=0
  wait "$audit_pid" || audit_status=$?
  cat "$audit_log"
  rm -f "$audit_log"
  [ "$status" = 0 ] || exit "$status"
  exit "$audit_status"
fi
echo "== pyright (basic, portal/)"
.venv/bin/pyright
if [ "$#" -eq 0 ]; then
  # The whole run: coverage of portal/ and its gate (fail_under in pyproject.toml).
  echo "== pytest (with the coverage gate of pyproject.toml)"
  exec .venv/bin/python -m pytest -n auto --durations=15 --cov --cov-report=term
fi
echo "== pytest"
exec .venv/bin/python -m pytest -n auto --durations=15 "$@"
