#!/usr/bin/env bash
# Update an installed VCF Credential Portal to the code next to this script.
#
#   sudo deploy/update.sh [--offline WHEEL_DIR] [--root DIR]
#
# Builds the new code and virtual environment beside the running service, stops it, backs the
# database up (flask backup), swaps the code (the old code is kept as
# /opt/vcf-credential-portal.previous), starts it (the portal migrates its database at start)
# and probes https://127.0.0.1:PORT/healthz. When the probe fails it rolls back: the previous
# code, the unit and the database backup come back, and the service starts again.
#
# Options as for install.sh. HEALTHCHECK_CMD replaces the probe, HEALTHCHECK_TIMEOUT (seconds,
# default 90) bounds it, PORTAL_FLASK replaces the flask command (tests).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=install.sh
. "$(dirname "${BASH_SOURCE[0]}")/install.sh"

usage_update() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

rollback() {
  local backup=$1
  warn "the new version is not healthy; rolling back"
  svc stop "$UNIT" || true
  rm -rf "$CODE"
  mv "$PREVIOUS" "$CODE"
  install_unit "$CODE"
  say "Restoring the database from $backup"
  # The factory, not app.py: importing app.py migrates, and the previous code cannot migrate a
  # database the new code has already moved to a newer schema revision.
  portal_flask --app 'portal:create_app()' restore "$backup" ||
    warn "the restore failed; the backup is $backup"
  svc start "$UNIT"
  if can_check_health && ! wait_healthy; then
    die "rolled back, but the previous version is not healthy either; see: journalctl -u $UNIT"
  fi
  die "update failed; the previous version runs again (backup: $backup)"
}

main_update() {
  local offline="" root=${DESTDIR:-} backup_dir backup
  while [ $# -gt 0 ]; do
    case "$1" in
      --offline) offline=${2:?--offline needs a directory}; shift 2 ;;
      --root) root=${2:?--root needs a directory}; shift 2 ;;
      -h | --help) usage_update; return 0 ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
  set_root "$root"
  require_root
  if [ ! -d "$CODE" ] || [ ! -e "$ENV_FILE" ]; then
    die "no installation in $CODE; run install.sh"
  fi
  check_python
  find_wheels "$offline"
  umask 022

  stage_code

  # The backup is taken with the service stopped, so a rollback loses no change made meanwhile
  # (a password rotated by a sync, for one).
  say "Stopping $UNIT"
  svc stop "$UNIT"
  backup_dir=$BACKUPS/update-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$backup_dir"
  own "$SERVICE_USER:$SERVICE_USER" 0700 "$backup_dir"
  say "Backing up the database to $backup_dir"
  if ! portal_flask --app app backup --to "$backup_dir"; then
    rm -rf "$STAGE"
    svc start "$UNIT"
    die "the backup failed; nothing was changed"
  fi
  backup=$(find "$backup_dir" -mindepth 1 -maxdepth 1 -printf '%T@ %p\n' | sort -n |
    tail -n 1 | cut -d' ' -f2-)
  if [ -z "$backup" ]; then
    rm -rf "$STAGE"
    svc start "$UNIT"
    die "the backup command wrote nothing to $backup_dir; nothing was changed"
  fi

  say "Installing the new code (the old one is kept as $PREVIOUS)"
  swap_in
  install_unit "$CODE"
  svc start "$UNIT"
  if can_check_health && ! wait_healthy; then
    rollback "$backup"
  fi
  echo "Updated: $(portal_url) (database backup: $backup)"
}

main_update "$@"
