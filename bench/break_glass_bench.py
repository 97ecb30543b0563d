"""A break-glass copy of many credentials: how long it takes, how much memory it needs, and how
long each of its reads holds the database.

In-process, on a real SQLite file (or DATABASE_URL): N credentials inserted in bulk, one
recipient, one copy; then the file opened with the private key.

    .venv/bin/python bench/break_glass_bench.py [N]     # default 50,000
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pyrage  # noqa: E402
from sqlalchemy import event, insert  # noqa: E402
from support import make_app  # noqa: E402

from portal.environments.service import save_environment  # noqa: E402
from portal.models import Credential  # noqa: E402
from portal.ops import break_glass, break_glass_settings  # noqa: E402
from portal.platform import clock  # noqa: E402
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher  # noqa: E402
from portal.platform.extensions import db  # noqa: E402


def _estate(count: int) -> None:
    env, _ = save_environment(
        {"name": "big", "manager": {"host": "sddc.example.net", "username": "u", "password": "x"}}
    )
    db.session.commit()
    data_cipher, now = cipher(), clock.now()
    for start in range(0, count, 5000):
        rows = [
            {
                "environment_id": env.id,
                "source": "manager",
                "hostname": f"w{n // 500:02d}-esx{n:05d}.sfo.example.net",
                "username": "root" if n % 2 else "svc-vcf-esx",
                "credential_type": "SSH",
                "account_type": "USER",
                "resource_type": "ESXI",
                "resource_ip": f"10.0.{n // 250}.{n % 250}",
                "domain": f"w{n // 500:02d}",
                "password_enc": data_cipher.encrypt(f"Pw-{n:05d}-Zq9!x", CREDENTIAL_PASSWORD),
                "first_seen_at": now,
                "last_seen_at": now,
                "last_changed_at": now,
            }
            for n in range(start, min(count, start + 5000))
        ]
        db.session.execute(insert(Credential), rows)
        db.session.commit()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    base = Path(tempfile.mkdtemp(prefix="break-glass-bench-"))
    app = make_app(base)
    with app.app_context():
        _estate(count)
        identity = pyrage.x25519.Identity.generate()
        recipients = [str(identity.to_public())]
        break_glass_settings.save({"recipients": recipients, "folder": str(base / "copies")})
        db.session.commit()
        holds: list[float] = []
        began: dict[int, float] = {}

        def begin(connection) -> None:
            began[id(connection)] = time.monotonic()

        def end(connection) -> None:
            start = began.pop(id(connection), None)
            if start is not None:
                holds.append(time.monotonic() - start)

        for name, listener in (("begin", begin), ("commit", end), ("rollback", end)):
            event.listen(db.engine, name, listener)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        result = break_glass.make_copy(app, "bench")
        took = time.monotonic() - started
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
        assert result.path is not None, result.error
        size = result.path.stat().st_size / 1e6
        print(f"{count:,} credentials: {result.count:,} rows in {took:.2f} s, {size:.1f} MB")
        print(f"peak memory growth {grown:.1f} MB; {len(holds)} read transactions, ", end="")
        print(f"the longest {max(holds) * 1000:.1f} ms")
        started = time.monotonic()
        plain = pyrage.decrypt(result.path.read_bytes(), [identity])
        print(f"opened with the private key in {time.monotonic() - started:.2f} s", end="")
        rows = plain.count(b"\n") - 1
        print(f" ({rows:,} rows)")


if __name__ == "__main__":
    main()
