#!/usr/bin/env bash
# Remove the VCF Credential Portal service and code.
#
#   sudo deploy/uninstall.sh [--purge [--yes]] [--root DIR]
#
# Keeps the data (database, keys, backups, TLS files), the logs and the configuration unless
# --purge is given; --purge also removes those and the service user. On a terminal --purge asks
# for confirmation first, unless --yes is given. A plain uninstall keeps a copy of this script
# with the data (DATA/uninstall/uninstall.sh), so --purge still works once the code is gone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=install.sh
. "$(dirname "${BASH_SOURCE[0]}")/install.sh"

usage_uninstall() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

main_uninstall() {
  local purge=no yes=no root=${DESTDIR:-} answer
  while [ $# -gt 0 ]; do
    case "$1" in
      --purge) purge=yes; shift ;;
      --yes) yes=yes; shift ;;
      --root) root=${2:?--root needs a directory}; shift 2 ;;
      -h | --help) usage_uninstall; return 0 ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
  set_root "$root"
  require_root
  if [ "$purge" = yes ] && [ "$yes" = no ] && [ -t 0 ]; then
    read -r -p "Delete every stored credential, key and backup in $DATA? Type 'purge': " answer
    [ "$answer" = purge ] || die "cancelled"
  fi

  local kept=$DATA/uninstall
  if [ "$purge" = no ] && [ -d "$DATA" ] && [ "$DEPLOY_DIR" != "$kept" ]; then
    # Copied before the code (and maybe this very script) is removed.
    mkdir -p "$kept"
    cp "$DEPLOY_DIR/uninstall.sh" "$DEPLOY_DIR/install.sh" "$kept/"
    chmod 0700 "$kept" "$kept/uninstall.sh"
  fi

  say "Removing the service and the code"
  if [ -e "$UNIT_FILE" ]; then
    svc stop "$UNIT" || true
    svc disable "$UNIT" || true
    rm -f "$UNIT_FILE"
    svc daemon-reload || true
  fi
  rm -rf "$CODE" "$PREVIOUS" "$STAGE"

  if [ "$purge" = no ]; then
    echo "Kept: $DATA (database, keys, backups, TLS files), $LOGS, $CONF"
    echo "To remove them as well: $kept/uninstall.sh --purge${ROOT:+ --root $ROOT}"
    return 0
  fi
  say "Removing the data, logs, configuration and the user $SERVICE_USER"
  rm -rf "$DATA" "$LOGS" "$CONF"
  if [ -n "$ROOT" ]; then
    echo "(--root) skipped: removing the system user $SERVICE_USER"
  elif id -u "$SERVICE_USER" >/dev/null 2>&1; then
    userdel "$SERVICE_USER"
  fi
}

main_uninstall "$@"
