"""Configure a demo environment pointing at the bundled simulator (used by ./demo.sh)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import select

from . import create_app, sync
from .environments.service import save_environment
from .models import Environment
from .ops.bootstrap import StartupError, first_sign_in_hint, initialize
from .platform.config import ConfigError
from .platform.extensions import db
from .simulator.server import DEFAULT_PASSWORD

DEMO_NAME = "Demo lab (simulator)"


def main(argv: list[str] | None = None) -> int:
    """Create the demo environment once; later runs leave it as the operator changed it."""
    parser = argparse.ArgumentParser(prog="python -m portal.demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--ca", type=Path, required=True, help="the simulator's CA (PEM)")
    parser.add_argument("--password", default=os.environ.get("SIM_PASSWORD"))
    parser.add_argument(
        "--fleet-root-password",
        help="the simulator's fleet appliance root password (the locker's decryption)",
    )
    args = parser.parse_args(argv)
    os.environ["PORTAL_SCHEDULER"] = "off"
    try:
        app = create_app()
        created = initialize(app)["admin_created"]
    except (ConfigError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if created:
        print(first_sign_in_hint(app))
    password = args.password or DEFAULT_PASSWORD
    ca_pem = args.ca.read_text()
    with app.app_context():
        if db.session.scalar(select(Environment).where(Environment.name == DEMO_NAME)):
            print(f"demo environment '{DEMO_NAME}' already configured")
            return 0
        endpoint = {
            "host": args.host,
            "port": args.port,
            "password": password,
            "ca_pem": ca_pem,
            "sync_enabled": True,
            "sync_interval_minutes": 15,
        }
        env, _ = save_environment(
            {
                "name": DEMO_NAME,
                "description": "A VCF 9 estate simulated by portal.simulator: SDDC Manager, "
                "the VCF Installer and VCF Operations fleet management",
                "manager": {**endpoint, "username": "administrator@vsphere.local"},
                "installer": {**endpoint, "username": "admin@local"},
                "fleet": {
                    **endpoint,
                    "username": "admin@local",
                    "locker_password": args.fleet_root_password,
                },
            }
        )
        db.session.commit()
        for source in ("manager", "installer", "fleet"):
            sync.request_sync(env.id, source, "schedule", "demo")
        print(f"demo environment '{DEMO_NAME}' configured; its first sync is queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
