#!/usr/bin/env bash
# A working portal in a minute, without a VCF lab: the bundled SDDC Manager / VCF Installer
# simulator on 127.0.0.1:8443 and a demo environment, in a separate data directory.
set -euo pipefail
cd "$(dirname "$0")"

export PORTAL_DATA_DIR=${PORTAL_DATA_DIR:-instance/demo}
SIM_PORT=${SIM_PORT:-8443}
SIM_CREDENTIALS=${SIM_CREDENTIALS:-2000}

./start_https.sh --prepare
sim_dir="$PORTAL_DATA_DIR/simulator"
mkdir -p "$sim_dir"
.venv/bin/python -m portal.simulator --port "$SIM_PORT" --credentials "$SIM_CREDENTIALS" \
  --cert-dir "$sim_dir" > "$sim_dir/simulator.log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  [ -s "$sim_dir/sim-ca.pem" ] && grep -q "listening" "$sim_dir/simulator.log" && break
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "error: the simulator did not start:" >&2
    cat "$sim_dir/simulator.log" >&2
    exit 1
  fi
  sleep 0.1
done
.venv/bin/python -m portal.demo --port "$SIM_PORT" --ca "$sim_dir/sim-ca.pem"
echo "Simulator: https://127.0.0.1:$SIM_PORT (log: $sim_dir/simulator.log)"
./start_https.sh
