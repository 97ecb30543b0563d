#!/usr/bin/env bash
# Start the VCF Credential Portal over HTTPS with Gunicorn.
# On a fresh machine: creates .venv, installs requirements, makes a self-signed certificate.
set -euo pipefail
umask 027

cd "$(dirname "$0")"
ROOT=$(pwd)
prepare_only=false
case "${1:-}" in
  --prepare) prepare_only=true ;;
  "") ;;
  *) echo "usage: $0 [--prepare]   (--prepare: install and create the certificate, do not serve)" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: Python 3 is required (3.10 or newer); install it with: apt-get install python3 python3-venv" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "error: Python 3.10 or newer is required; found $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi

# (Re)install requirements when the venv is missing or requirements.txt changed.
stamp=".venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "Creating the virtual environment in .venv ..."
    if ! "$PYTHON" -m venv .venv; then
      echo "error: could not create a virtual environment; install python3-venv (apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  echo "Installing requirements ..."
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
fi

data_dir=${PORTAL_DATA_DIR:-instance}
log_dir=${PORTAL_LOG_DIR:-logs}
ssl_dir=${PORTAL_SSL_DIR:-ssl}
case "$data_dir" in /*) ;; *) data_dir="$ROOT/$data_dir" ;; esac
case "$log_dir" in /*) ;; *) log_dir="$ROOT/$log_dir" ;; esac
case "$ssl_dir" in /*) ;; *) ssl_dir="$ROOT/$ssl_dir" ;; esac
mkdir -p "$log_dir" "$ssl_dir"
mkdir -p "$data_dir"
chmod 0700 "$data_dir"

.venv/bin/python -m portal.ensure_certificate "$ssl_dir/cert.pem" "$ssl_dir/key.pem"
if $prepare_only; then
  exit 0
fi

# Python's ssl module cannot list key-exchange groups; OpenSSL's configuration can.
export OPENSSL_CONF="$ROOT/portal/openssl.cnf"

bind=${PORTAL_BIND:-0.0.0.0:5000}
port=${bind##*:}
host=${bind%:*}
case "$host" in 0.0.0.0|"::"|"[::]") host=$(hostname -f 2>/dev/null || hostname) ;; esac
echo "VCF Credential Portal: https://$host:$port/"

exec .venv/bin/gunicorn --config "$ROOT/gunicorn_config.py" app:app
