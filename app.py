"""WSGI entry point. Importing it builds the portal and runs the idempotent start-up.

Gunicorn (preload_app = True) imports this once in the master before forking workers, so the
schema, keys and first admin exist before any worker serves, and the scheduler runs only here.
"""

import sys

if "--version" in sys.argv[1:]:
    from portal.version import __version__

    print(f"VCF Credential Portal {__version__}")
    sys.exit(0)

from portal import create_app
from portal.ops import scheduler  # noqa: E402 - after the cheap --version exit
from portal.ops.bootstrap import StartupError, first_sign_in_hint, initialize, startup_wanted
from portal.platform.config import ConfigError

try:
    app = create_app()
    if startup_wanted() and initialize(app)["admin_created"]:
        print(first_sign_in_hint(app), file=sys.stderr, flush=True)
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
except StartupError as exc:
    sys.exit(f"Start-up error: {exc}")

scheduler.start_if_enabled(app)

if __name__ == "__main__":
    settings = app.config["PORTAL_SETTINGS"]
    host, _, port = settings.bind.rpartition(":")
    ssl_dir = settings.ssl_dir
    app.run(
        host=host.strip("[]"),
        port=int(port),
        ssl_context=(str(ssl_dir / "cert.pem"), str(ssl_dir / "key.pem")),
        use_reloader=False,
        threaded=True,
    )
