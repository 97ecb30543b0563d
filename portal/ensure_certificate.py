"""`python -m portal.ensure_certificate CERT KEY`: create a self-signed pair when none exists.

The command of start_https.sh and the installer. A module of its own: the package imports
portal.platform.certs, and running an already imported module with -m makes Python warn.
"""

from __future__ import annotations

import sys

from .platform.certs import main

if __name__ == "__main__":
    sys.exit(main(["ensure", *sys.argv[1:]]))
