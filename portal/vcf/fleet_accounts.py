"""What a fleet management account says about itself, read from the two surfaces: the
appliance types and their labels, the 9.0 locker entry's appliance and host read from its alias
and description (whole words), the credential type that keys an account the same on 9.0 and
9.1, and expiry dates (epoch milliseconds) as ISO 8601."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from ._http import clean_text
from .models import text_of

# Labels of the fleet appliance types (9.1's ``appliance`` enumeration, and the fleet
# appliance itself as the 9.0 locker names it); an unknown type is shown as it came.
APPLIANCE_LABELS = {
    "VCF_OPERATIONS": "VCF Operations",
    "LOG_MANAGEMENT": "VCF Operations for Logs",
    "VCF_OPS_NETWORK": "VCF Operations for Networks",
    "VCF_AUTOMATION": "VCF Automation",
    "IDENTITY_BROKER": "VCF Identity Broker",
    "CLOUD_PROXY": "Cloud proxy",
    "FLEET_MANAGEMENT": "VCF Operations fleet management",
    "VCF_SERVICES_RUNTIME": "VCF services runtime",
    "VCF_OPS_HCX": "VCF Operations HCX",
    "AVI_LOAD_BALANCER": "Avi load balancer",
    "VCENTER": "vCenter",
    "SDDC_MANAGER": "SDDC Manager",
    "NSXT_MANAGER": "NSX Manager",
    "NSXT_EDGE": "NSX Edge",
    "ESX": "ESX host",
    "UNKNOWN": "Unknown appliance",
}

# 9.0: the locker entry's alias and description name the product; first match wins (the
# collector before Operations, Operations for Logs and for Networks before Operations).
_APPLIANCE_WORDS = (
    ("CLOUD_PROXY", ("cloud proxy", "cloudproxy", "collector", "opsc")),
    ("LOG_MANAGEMENT", ("for logs", "log management", "loginsight", "log insight", "vrli")),
    ("VCF_OPS_NETWORK", ("for networks", "networks", "vrni", "opsnet")),
    ("VCF_SERVICES_RUNTIME", ("services runtime", "vsp")),
    ("FLEET_MANAGEMENT", ("fleet", "lcm", "vrslcm", "lifecycle")),
    ("IDENTITY_BROKER", ("identity broker", "vidb", "wsa")),
    ("VCF_AUTOMATION", ("automation", "vra", "auto")),
    ("VCF_OPERATIONS", ("operations", "vrops", "vcfops", "ops")),
)
_FQDN = re.compile(
    r"(?<![A-Za-z0-9.-])([A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})+)"
)


def appliance_label(appliance: str | None) -> str:
    """The operator's name of a fleet appliance type."""
    if not appliance:
        return ""
    return APPLIANCE_LABELS.get(appliance, appliance)


def _word_pattern(needles: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words (a number may follow: ``auto01``), never part of another word: "vsp" is
    not in "vsphere", "ops" not in "devops", "auto" not in "autoscale"."""
    phrases = (r"[^a-z0-9]+".join(map(re.escape, needle.split())) for needle in needles)
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(phrases) + r")[0-9]*(?![a-z0-9])")


_APPLIANCE_PATTERNS = tuple(
    (appliance, _word_pattern(needles)) for appliance, needles in _APPLIANCE_WORDS
)


def appliance_from_text(*texts: str | None) -> str:
    """The appliance type a 9.0 locker entry names in its alias or description (whole
    words; UNKNOWN when none is named)."""
    words = " ".join(t for t in texts if t).lower()
    for appliance, pattern in _APPLIANCE_PATTERNS:
        if pattern.search(words):
            return appliance
    return "UNKNOWN"


def fqdn_from_text(*texts: str | None) -> str | None:
    """The first fully qualified name in a locker entry's alias or description; a domain
    that follows ``@`` (``administrator@vsphere.local``) is a user's, not a host."""
    for text in texts:
        if not text:
            continue
        for match in _FQDN.finditer(text):
            name = match.group(1)
            if text[: match.start(1)].endswith("@") or name.replace(".", "").isdigit():
                continue
            return name.rstrip(".")
    return None


# Users whose fleet account is a shell login (9.0 names no type; 9.1's credentialType wins).
_SSH_USERS = ("root", "vmware-system-user")


def credential_type(username: str, reported: Any = None) -> str:
    """The account's credential type, part of its key, the same on 9.1 and 9.0: 9.1's
    ``credentialType`` when given, else SSH for the appliances' shell users, API for others
    (so an estate moving from the 9.0 locker to 9.1 keeps its rows and history)."""
    given = text_of(reported)
    if given:
        return given.strip().upper()
    return "SSH" if username in _SSH_USERS else "API"


def expiry_iso(value: Any) -> str | None:
    """``expiryDate`` (epoch milliseconds, or already text) as ISO 8601 UTC, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        try:
            moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, str) and value.strip():
        return clean_text(value, 64)
    return None


def stamp(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return expiry_iso(value)
    return clean_text(value, 64) if isinstance(value, str) and value.strip() else None
