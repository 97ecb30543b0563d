"""An HTTPS simulator of SDDC Manager and the VCF Installer for tests and benchmarks.

Run it with ``python -m portal.simulator --help``, or in-process::

    with Simulator(credentials=2000, seed=1) as sim:
        ...  # sim.url, sim.ca_pem, sim.certificate_sha256, sim.admin_username, ...
"""

from __future__ import annotations

from .server import FAILURE_MODES, Simulator

__all__ = ["FAILURE_MODES", "Simulator"]
