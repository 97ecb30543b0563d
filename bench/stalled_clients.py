"""How many stalled TLS clients a node withstands: clients that send the first bytes of a
ClientHello and then nothing, held open in growing numbers against the running portal
(./start_https.sh: Gunicorn over HTTPS, 2 workers), while a normal client times /healthz.

    .venv/bin/python bench/stalled_clients.py [--steps 0,250,500,1000,1500,1900]

Prints, per number of stalled connections, the median and worst time of 10 normal requests
(each on a new connection) and whether the workers are the same processes as at the start.
The stalled connections are opened within the portal's handshake deadline (10 s) of each
other and timed at once, so all of them are held while the normal requests are made.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import PortalServer, tls_client_hello  # noqa: E402


def _workers(master: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def _normal(server: PortalServer) -> float:
    started = time.perf_counter()
    try:
        ok = requests.get(server.url + "/healthz", verify=server.cert, timeout=15).ok
    except requests.RequestException:
        ok = False
    return time.perf_counter() - started if ok else float("inf")


def main() -> None:
    """Measure each step and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="0,250,500,1000,1500,1900")
    args = parser.parse_args()
    hello = tls_client_hello()[:60]
    work = Path(tempfile.mkdtemp(prefix="stall", dir="/tmp"))
    server = PortalServer(work, workers=2).start()
    try:
        workers = _workers(server.proc.pid)
        print(f"{'stalled':>8} {'median s':>9} {'worst s':>8}  workers")
        for count in (int(step) for step in args.steps.split(",")):
            held = []
            try:
                for _ in range(count):
                    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                    sock.sendall(hello)
                    held.append(sock)
                times = [_normal(server) for _ in range(10)]
            finally:
                for sock in held:
                    sock.close()
            same = "same" if _workers(server.proc.pid) == workers else "REPLACED"
            print(f"{count:>8} {statistics.median(times):>9.3f} {max(times):>8.3f}  {same}")
            time.sleep(1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
