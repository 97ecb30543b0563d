#!/usr/bin/env bash
# Install the VCF Credential Portal as a systemd service, or reinstall it in place.
#
#   sudo deploy/install.sh [--offline WHEEL_DIR] [--root DIR]
#
#   code    /opt/vcf-credential-portal             (virtual environment in .venv)
#   data    /var/lib/vcf-credential-portal         (database, keys, backups/, TLS files in ssl/)
#   logs    /var/log/vcf-credential-portal         (and the journal)
#   config  /etc/vcf-credential-portal/portal.env  (written once, never overwritten)
#
# --offline DIR   install the requirements from a directory of wheels (see make-bundle.sh);
#                 a bundle's own wheels/ directory is used without this option.
# --root DIR      install below DIR instead of / (also DESTDIR): no user is created, nothing
#                 is chowned (the intended owners are printed), and systemctl is only called
#                 through $SYSTEMCTL when that is set.
# Test-only: PORTAL_INSTALL_SKIP_PIP=1 (with --root) installs nothing with pip; the virtual
# environment reuses the packages of $PYTHON instead.
#
# update.sh and uninstall.sh source this file for its paths and helpers.
set -euo pipefail

APP=vcf-credential-portal
UNIT=$APP.service
SERVICE_USER=vcfportal
CODE_PATH=/opt/$APP
DATA_PATH=/var/lib/$APP
LOG_PATH=/var/log/$APP
CONF_PATH=/etc/$APP
PYTHON=${PYTHON:-python3}
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(dirname "$DEPLOY_DIR")
SERVICE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "==> $*"; }
warn() { echo "warning: $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

# Every path the scripts touch, below ROOT ("" for the real system).
set_root() {
  ROOT=${1%/}
  if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
  fi
  CODE=$ROOT$CODE_PATH
  PREVIOUS=$CODE.previous
  STAGE=$CODE.new
  DATA=$ROOT$DATA_PATH
  SSL=$DATA/ssl
  BACKUPS=$DATA/backups
  LOGS=$ROOT$LOG_PATH
  CONF=$ROOT$CONF_PATH
  ENV_FILE=$CONF/portal.env
  UNIT_FILE=$ROOT/etc/systemd/system/$UNIT
}

require_root() {
  if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or give --root DIR"
  fi
}

# systemctl, or what $SYSTEMCTL names; with --root and no $SYSTEMCTL only say what would run.
svc() {
  if [ -n "$ROOT" ] && [ -z "${SYSTEMCTL:-}" ]; then
    echo "(--root) skipped: systemctl $*"
    return 0
  fi
  "${SYSTEMCTL:-systemctl}" "$@"
}

# chmod, and chown on the real system; below --root the intended owner is printed instead.
own() {
  local owner=$1 mode=$2 path
  shift 2
  for path in "$@"; do
    chmod "$mode" "$path"
    if [ -z "$ROOT" ]; then
      chown "$owner" "$path"
    else
      echo "ownership: $owner $mode ${path#"$ROOT"}"
    fi
  done
}

# The environment systemd gives the service: portal.env plus the unit's Environment= lines.
service_env() {
  local line key value
  SERVICE_ENV=("PATH=$SERVICE_PATH" "LANG=C.UTF-8")
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    case "$line" in '' | '#'* | ';'*) continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    case "$value" in \"*\" | \'*\') value=${value:1:${#value}-2} ;; esac
    SERVICE_ENV+=("$key=$value")
  done <"$ENV_FILE"
  SERVICE_ENV+=("OPENSSL_CONF=$CODE/portal/openssl.cnf")
  if [ -n "$ROOT" ]; then
    SERVICE_ENV+=("PORTAL_DATA_DIR=$DATA" "PORTAL_LOG_DIR=$LOGS" "PORTAL_SSL_DIR=$SSL")
  fi
}

# Run "$@" in the code directory, as the service user, with exactly $SERVICE_ENV. The values
# travel in the environment, not on a command line where ps would show them to every user.
run_as_service() {
  (
    local name entry
    cd "$CODE"
    for name in $(compgen -e); do export -n "${name?}"; done
    for entry in "${SERVICE_ENV[@]}"; do export "${entry?}"; done
    if [ -z "$ROOT" ]; then
      exec runuser -u "$SERVICE_USER" -- "$@"
    fi
    exec "$@"
  )
}

env_value() {
  local entry value=$2
  service_env
  for entry in "${SERVICE_ENV[@]}"; do
    [ "${entry%%=*}" = "$1" ] && value=${entry#*=}
  done
  echo "$value"
}

# `flask ARGS` in the code directory, as the service user, with the service's environment
# ($PORTAL_FLASK replaces the flask command, for tests). The scheduler stays off: a command
# must not start syncs of its own.
portal_flask() {
  local cmd=("$CODE/.venv/bin/python" -m flask)
  if [ -n "${PORTAL_FLASK:-}" ]; then
    cmd=("$PORTAL_FLASK")
  fi
  service_env
  SERVICE_ENV+=(PORTAL_SCHEDULER=off)
  run_as_service "${cmd[@]}" "$@" </dev/null
}

check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "Python 3.10 or newer is required: apt-get install python3 python3-venv"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "Python 3.10 or newer is required; found $("$PYTHON" --version 2>&1)"
}

# Wheels: --offline DIR, else the bundle's wheels/ directory, else the package index.
find_wheels() {
  WHEELS=${1:-}
  if [ -z "$WHEELS" ] && [ -d "$SOURCE_DIR/wheels" ]; then
    WHEELS=$SOURCE_DIR/wheels
  fi
  if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || die "no wheel directory at $WHEELS"
    WHEELS=$(cd "$WHEELS" && pwd)
  fi
  if [ "${PORTAL_INSTALL_SKIP_PIP:-}" = 1 ] && [ -z "$ROOT" ]; then
    die "PORTAL_INSTALL_SKIP_PIP is for tests and needs --root"
  fi
}

# The repository's files, minus what belongs to a working copy.
copy_code() {
  local from=$1 to=$2
  mkdir -p "$to"
  tar -C "$from" \
    --exclude=./.git --exclude=./.venv --exclude=./instance --exclude=./logs --exclude=./ssl \
    --exclude=./tests --exclude=./wheels --exclude=./dist --exclude=./.pytest_cache \
    --exclude=./.ruff_cache --exclude=__pycache__ --exclude='*.pyc' -cf - . |
    tar -C "$to" --no-same-owner -xf -
  chmod -R u+rwX,go+rX,go-w "$to"
}

make_venv() {
  local venv=$STAGE/.venv pip_wheel=""
  if [ "${PORTAL_INSTALL_SKIP_PIP:-}" = 1 ]; then
    "$PYTHON" -m venv --without-pip "$venv"
    local ours theirs
    ours=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    theirs=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    echo "$theirs" >"$ours/_portal_test_packages.pth"
    return
  fi
  if [ -n "$WHEELS" ]; then
    pip_wheel=$(find "$WHEELS" -maxdepth 1 -name 'pip-*.whl' | sort -V | tail -n 1)
  fi
  if [ -n "$pip_wheel" ]; then
    # Without ensurepip (no python3-venv package): pip comes from the bundle.
    "$PYTHON" -m venv --without-pip "$venv"
    "$venv/bin/python" "$pip_wheel/pip" install --quiet --disable-pip-version-check \
      --no-index --find-links "$WHEELS" pip
  elif ! "$PYTHON" -m venv "$venv"; then
    die "could not create a virtual environment; install python3-venv (apt-get install python3-venv)"
  fi
  local index=(--no-index --find-links "$WHEELS" --only-binary=:all:)
  [ -n "$WHEELS" ] || index=()
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
    "${index[@]}" -r "$STAGE/requirements.txt" ||
    die "could not install the requirements${WHEELS:+ from $WHEELS}"
}

# New code and its virtual environment in $STAGE, built while the running service is untouched.
# They are built for their final place: the venv's scripts and the byte code name $CODE.
stage_code() {
  local quoted
  say "Preparing the code and virtual environment in $STAGE"
  rm -rf "$STAGE"
  copy_code "$SOURCE_DIR" "$STAGE"
  make_venv
  quoted=$(printf '%s' "$STAGE" | sed 's/[][\.*^$|]/\\&/g')
  grep -rlF -- "$STAGE" "$STAGE/.venv/bin" "$STAGE/.venv/pyvenv.cfg" |
    xargs -r sed -i "s|$quoted|$CODE|g"
  "$STAGE/.venv/bin/python" -m compileall -q -j 0 -s "$STAGE" -p "$CODE" "$STAGE" >/dev/null ||
    warn "some files could not be byte-compiled"
  chmod -R u+rwX,go+rX,go-w "$STAGE"
}

# Put $STAGE in place; the code it replaces is kept as $PREVIOUS.
swap_in() {
  if [ -d "$CODE" ]; then
    rm -rf "$PREVIOUS"
    mv "$CODE" "$PREVIOUS"
  fi
  mv "$STAGE" "$CODE"
}

install_unit() {
  mkdir -p "$(dirname "$UNIT_FILE")"
  install -m 0644 "$1/deploy/$UNIT" "$UNIT_FILE"
  svc daemon-reload
}

make_user() {
  if [ -n "$ROOT" ]; then
    echo "(--root) skipped: system user $SERVICE_USER"
  elif ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "Creating the system user $SERVICE_USER"
    local group=(--user-group)
    if getent group "$SERVICE_USER" >/dev/null; then group=(--gid "$SERVICE_USER"); fi
    useradd --system "${group[@]}" --home-dir "$DATA_PATH" --no-create-home \
      --shell /usr/sbin/nologin --comment "VCF Credential Portal" "$SERVICE_USER"
  fi
}

make_dirs() {
  mkdir -p "$DATA" "$SSL" "$BACKUPS" "$LOGS" "$CONF"
  own "$SERVICE_USER:$SERVICE_USER" 0700 "$DATA" "$SSL" "$BACKUPS"
  own "$SERVICE_USER:$SERVICE_USER" 0750 "$LOGS"
  own root:root 0755 "$CONF"
}

write_env_file() {
  install -m 0644 "$DEPLOY_DIR/portal.env.example" "$CONF/portal.env.example"
  if [ -e "$ENV_FILE" ]; then
    echo "Keeping the configuration in $ENV_FILE"
    return
  fi
  say "Writing the configuration $ENV_FILE"
  install -m 0600 "$DEPLOY_DIR/portal.env.example" "$ENV_FILE"
  own root:root 0600 "$ENV_FILE"
}

make_certificate() {
  service_env
  run_as_service "$CODE/.venv/bin/python" -m portal.ensure_certificate "$SSL/cert.pem" "$SSL/key.pem"
}

portal_url() {
  local bind port host
  bind=$(env_value PORTAL_BIND 0.0.0.0:5000)
  port=${bind##*:}
  host=${bind%:*}
  case "$host" in 0.0.0.0 | "::" | "[::]") host=$(hostname -f 2>/dev/null || hostname) ;; esac
  if [ "$port" = 443 ]; then echo "https://$host/"; else echo "https://$host:$port/"; fi
}

health_url() {
  local bind host
  bind=$(env_value PORTAL_BIND 0.0.0.0:5000)
  host=${bind%:*}
  case "$host" in 0.0.0.0) host=127.0.0.1 ;; "::" | "[::]") host="[::1]" ;; esac
  echo "https://$host:${bind##*:}/healthz"
}

# One probe of /healthz: 200 with {"status": "ok"}. $HEALTHCHECK_CMD replaces it (tests).
probe_health() {
  if [ -n "${HEALTHCHECK_CMD:-}" ]; then
    bash -c "$HEALTHCHECK_CMD"
    return
  fi
  # The probe asks our own process on loopback whether it is up; the certificate may be
  # self-signed or name only the public host, so it is not verified here.
  "$CODE/.venv/bin/python" -I - "$HEALTHCHECK_URL" <<'PY'
import json, ssl, sys, urllib.request

context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(sys.argv[1], context=context, timeout=5) as response:
        healthy = response.status == 200 and json.load(response).get("status") == "ok"
except Exception:
    healthy = False
sys.exit(0 if healthy else 1)
PY
}

# Probe until healthy or $HEALTHCHECK_TIMEOUT seconds (default 90) have passed.
wait_healthy() {
  local deadline=$((SECONDS + ${HEALTHCHECK_TIMEOUT:-90}))
  HEALTHCHECK_URL=$(health_url)
  export HEALTHCHECK_URL
  say "Waiting for $HEALTHCHECK_URL"
  until probe_health; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 2
  done
}

can_check_health() {
  [ -z "$ROOT" ] || [ -n "${HEALTHCHECK_CMD:-}" ]
}

usage_install() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

main_install() {
  local offline="" root=${DESTDIR:-} new_database=no
  while [ $# -gt 0 ]; do
    case "$1" in
      --offline) offline=${2:?--offline needs a directory}; shift 2 ;;
      --root) root=${2:?--root needs a directory}; shift 2 ;;
      -h | --help) usage_install; return 0 ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
  set_root "$root"
  require_root
  check_python
  find_wheels "$offline"
  umask 022

  make_user
  make_dirs
  write_env_file
  stage_code
  if [ -d "$CODE" ]; then
    say "Replacing the installed code (kept as $PREVIOUS)"
    svc stop "$UNIT" || true
  fi
  swap_in
  install_unit "$CODE"
  say "Checking the TLS certificate in $SSL"
  make_certificate
  [ -e "$DATA/vcf_credentials.db" ] || new_database=yes
  svc enable "$UNIT"
  svc restart "$UNIT"

  if can_check_health && ! wait_healthy; then
    die "the portal did not become healthy; see: journalctl -u $UNIT"
  fi
  echo
  echo "VCF Credential Portal: $(portal_url)"
  if [ "$new_database" = yes ]; then
    echo "First sign-in: user 'admin', password 'admin' (or PORTAL_ADMIN_PASSWORD from"
    echo "$CONF_PATH/portal.env); you will be asked to choose a new password."
  fi
  echo "Settings: $CONF_PATH/portal.env (then: systemctl restart $UNIT)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main_install "$@"
fi
