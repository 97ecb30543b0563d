"""The portal's version and when this process started (imports nothing of the portal)."""

from __future__ import annotations

from datetime import datetime, timezone

__version__ = "0.1.0"
STARTED_AT = datetime.now(timezone.utc).replace(tzinfo=None)
