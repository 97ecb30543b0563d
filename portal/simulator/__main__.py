"""Command line: ``python -m portal.simulator --port 8443 --credentials 2000``."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from .inventory import QUIRKS
from .server import DEFAULT_PASSWORD, Simulator


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the simulator command."""
    parser = argparse.ArgumentParser(
        prog="python -m portal.simulator",
        description="HTTPS simulator of SDDC Manager, the VCF Installer and VCF Operations fleet "
        "management (one port, every API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--credentials", type=int, default=2000, help="number of credentials")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated inventory")
    parser.add_argument(
        "--cert-dir", help="keep the CA/server certificate here (reused on the next start)"
    )
    parser.add_argument("--hostile", action="store_true", help="hostile strings in some fields")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="access token seconds")
    parser.add_argument("--refresh-lifetime", type=float, default=86400.0)
    parser.add_argument("--token-status", type=int, choices=(200, 201), default=200)
    parser.add_argument(
        "--installer-version",
        choices=("9.0", "9.1"),
        default="9.1",
        help="VCF version of the installer spec and of fleet management: 9.1 answers fleet "
        "password management and the locker, 9.0 the locker only (default %(default)s)",
    )
    parser.add_argument(
        "--fleet-root-password",
        help="the fleet appliance's root password, which the locker's decryption asks for "
        "(default: one generated from the seed)",
    )
    parser.add_argument(
        "--fleet-rotated",
        type=int,
        default=0,
        help="management appliance accounts whose password fleet management changed since "
        "bring-up, so that the installer spec's value is stale (default %(default)s)",
    )
    parser.add_argument(
        "--password",
        default=DEFAULT_PASSWORD,
        help="password of every simulator login account (default %(default)s)",
    )
    parser.add_argument(
        "--task-delay",
        type=float,
        default=0.2,
        help="seconds a credentials task or expiry check stays IN_PROGRESS (default %(default)s)",
    )
    parser.add_argument(
        "--quirk",
        action="append",
        default=[],
        choices=sorted(QUIRKS),
        help="bend responses to test client robustness (repeatable)",
    )
    parser.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="disable POST /_sim/control, GET /_sim/stats and GET /_sim/credentials",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the simulator and serve until interrupted."""
    args = build_parser().parse_args(argv)
    sim = Simulator(
        credentials=args.credentials,
        seed=args.seed,
        hostile=args.hostile,
        token_lifetime=args.token_lifetime,
        refresh_lifetime=args.refresh_lifetime,
        host=args.host,
        port=args.port,
        cert_dir=args.cert_dir,
        password=args.password,
        token_status=args.token_status,
        installer_version=args.installer_version,
        control=args.control,
        quirks=args.quirk,
        task_delay=args.task_delay,
        fleet_root_password=args.fleet_root_password,
    ).start()
    if args.fleet_rotated > 0:
        sim.fleet_rotate(args.fleet_rotated)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"VCF simulator listening on {sim.url}")
    print(f"  certificate SHA-256: {sim.certificate_sha256}")
    if args.cert_dir:
        print(f"  CA certificate: {args.cert_dir}/sim-ca.pem")
    print(f"  SDDC Manager admin: {sim.admin_username}")
    print(f"  SDDC Manager operator (403 on credentials): {sim.operator_username}")
    print(f"  VCF Installer admin: {sim.installer_username}")
    print("  password of these accounts: the --password value (see --help for the default)")
    print(f"  credentials: {args.credentials}, installer spec {args.installer_version}")
    print(
        f"  fleet management {sim.fleet_version}: {len(sim.fleet_accounts())} management "
        f"appliance accounts; service account {sim.installer_username}"
    )
    if args.fleet_rotated > 0:
        print(f"  fleet accounts rotated since bring-up: {args.fleet_rotated}")
    if args.control:
        print(f"  control: POST {sim.url}/_sim/control, GET {sim.url}/_sim/stats")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print("  warning: not bound to loopback; the simulator serves fake passwords openly")
    sys.stdout.flush()
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
