#!/usr/bin/env bash
# A working portal in a minute, without a VCF lab: the bundled simulator of a VCF 9 estate
# (SDDC Manager, VCF Installer, VCF Operations fleet management) on 127.0.0.1:8443 and a demo
# environment reading all three, in a separate data directory.
set -euo pipefail
cd "$(dirname "$0")"

# The demo keeps its SQLite database apart from a real one, in instance/demo. With DATABASE_URL
# the database is the operator's, and its data key lives in the data directory of the portal
# that created it (PORTAL_DATA_DIR, default instance): the demo uses that one too.
if [ -z "${DATABASE_URL:-}" ]; then
  export PORTAL_DATA_DIR=${PORTAL_DATA_DIR:-instance/demo}
fi
SIM_PORT=${SIM_PORT:-8443}
SIM_CREDENTIALS=${SIM_CREDENTIALS:-2000}
# The VCF version of the simulated estate: 9.1 (fleet password management) or 9.0 (the locker).
SIM_VCF_VERSION=${SIM_VCF_VERSION:-9.1}
# The simulated fleet appliance's root password: the demo stores it for the locker's decryption.
SIM_FLEET_ROOT_PASSWORD=${SIM_FLEET_ROOT_PASSWORD:-Fleet-Root-Demo-1!}
# Management appliance accounts rotated in fleet management since bring-up: the installer's
# copies of them are stale, as on an estate that has lived a while (Needs attention shows them).
SIM_FLEET_ROTATED=${SIM_FLEET_ROTATED:-2}

sim_pid=""
portal_pid=""
# Stop what this script started, whichever way it ends: Ctrl-C, SIGTERM, or an error.
stop_children() {
  trap - EXIT INT TERM
  for pid in $portal_pid $sim_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_children EXIT
trap 'stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM

./start_https.sh --prepare
sim_dir="${PORTAL_DATA_DIR:-instance}/simulator"
mkdir -p "$sim_dir"
.venv/bin/python -m portal.simulator --port "$SIM_PORT" --credentials "$SIM_CREDENTIALS" \
  --installer-version "$SIM_VCF_VERSION" --fleet-root-password "$SIM_FLEET_ROOT_PASSWORD" \
  --fleet-rotated "$SIM_FLEET_ROTATED" --cert-dir "$sim_dir" > "$sim_dir/simulator.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  [ -s "$sim_dir/sim-ca.pem" ] && grep -q "listening" "$sim_dir/simulator.log" && break
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "error: the simulator did not start:" >&2
    cat "$sim_dir/simulator.log" >&2
    exit 1
  fi
  sleep 0.1
done
.venv/bin/python -m portal.demo --port "$SIM_PORT" --ca "$sim_dir/sim-ca.pem" \
  --fleet-root-password "$SIM_FLEET_ROOT_PASSWORD"
echo "Simulator: https://127.0.0.1:$SIM_PORT (log: $sim_dir/simulator.log)"
# In the background, so that a signal to this script reaches the trap at once: bash runs a
# trap only after its foreground child ends, and would leave the portal running.
./start_https.sh &
portal_pid=$!
wait "$portal_pid"
