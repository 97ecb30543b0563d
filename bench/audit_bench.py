"""The audit chain at the size of a long-lived estate: how long writing, sealing and a full
verification take for N records, and whether a request waits while the leader seals.

    .venv/bin/python -m bench.audit_bench [--records 200000]

Prints records per second for each step and the longest time an audited request waited for
the database while a seal of all N ran beside it (SQLite, the embedded default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from portal import audit
from portal.audit import chain, checkpoints
from portal.platform.extensions import db
from tests.support import make_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    app = make_app(Path(tempfile.mkdtemp(prefix="audit-bench-")))
    n = args.records
    with app.app_context():
        started = time.perf_counter()
        for start in range(0, n, 1000):
            audit.record_many(
                "credential.reveal",
                [
                    (f"esx-{i}.sfo.example / root", "success", {"id": i})
                    for i in range(start, start + 1000)
                ],
                actor="bench",
            )
            db.session.commit()
        written = time.perf_counter() - started

    waits: list[float] = []
    done = threading.Event()

    def requests_beside() -> None:
        with app.app_context():
            while not done.is_set():
                began = time.perf_counter()
                audit.record("auth.login", "alice", actor="alice")
                db.session.commit()
                waits.append(time.perf_counter() - began)
                time.sleep(0.01)
            db.session.remove()

    beside = threading.Thread(target=requests_beside)
    beside.start()
    with app.app_context():
        started = time.perf_counter()
        sealed = chain.seal().sealed
        sealing = time.perf_counter() - started
    done.set()
    beside.join()
    with app.app_context():
        started = time.perf_counter()
        report, checked = checkpoints.verify_all()
        verifying = time.perf_counter() - started
    print(f"records                    {n}")
    print(f"write (record_many)        {written:7.2f} s  {n / written:10.0f} records/s")
    print(f"seal                       {sealing:7.2f} s  {sealed / sealing:10.0f} records/s")
    rate = report.checked / verifying
    print(f"verify ({checked} checkpoints)   {verifying:7.2f} s  {rate:10.0f} records/s")
    print(f"intact                     {report.intact}")
    median, longest = statistics.median(waits) * 1000, max(waits) * 1000
    print(f"audited writes beside the seal: {len(waits)}, median {median:.1f} ms, ", end="")
    print(f"longest {longest:.1f} ms")


if __name__ == "__main__":
    main()
