"""Values the browser code needs from the server, rendered once into every page as JSON."""

from __future__ import annotations

from flask import Flask
from flask_login import current_user

from .identity.users import DEFAULT_PREFERENCES, actor, preferences
from .vault.credentials import REVEAL_SECONDS, SEARCH_PAGE_SIZE
from .vcf import APPLIANCE_LABELS

SOURCE_LABELS = {
    "manager": "SDDC Manager",
    "installer": "VCF Installer",
    "fleet": "VCF Operations fleet management",
}
SOURCE_SHORT_LABELS = {"manager": "Manager", "installer": "Installer", "fleet": "Fleet"}
# Resource types as SDDC Manager (5.2, 9.0, 9.1: HCX_MANAGER and VSP), the VCF Installer's
# mapping and fleet management (its appliance types) name them: the filters offer them, the
# pages show the label beside the name.
RESOURCE_TYPE_LABELS = {
    "ESXI": "ESX host",
    "VCENTER": "vCenter",
    "PSC": "vCenter single sign-on",
    "NSXT_MANAGER": "NSX Manager",
    "NSXT_EDGE": "NSX Edge",
    "NSX_ALB": "NSX Advanced Load Balancer",
    "HCX_MANAGER": "HCX Manager",
    "VSP": "VCF services platform cluster",
    "BACKUP": "Backup server (SFTP)",
    "SDDC_MANAGER": "SDDC Manager",
    "VROPS": "VCF Operations",
    "VCF_OPS_CLOUD_PROXY": "VCF Operations collector",
    "VRA": "VCF Automation",
    "VRSLCM": "Fleet management appliance",
    "VRLI": "VCF Operations for logs",
    "WSA": "Workspace ONE Access",
    **{k: v for k, v in APPLIANCE_LABELS.items() if k != "UNKNOWN"},
}
STATE_LABELS = {
    "success": "Success",
    "partial": "Partial",
    "failed": "Failed",
    "never": "Never synced",
    "queued": "Queued",
    "running": "Running",
    "present": "Present",
    "absent": "Absent",
    "paused": "Paused",
    "disabled": "Disabled",
    "active": "Active",
    "EXPIRING": "Expiring",
    "EXPIRED": "Expired",
    "ACTIVE": "Active",
    "UNKNOWN": "Unknown",
}


def portal_config(with_preferences: bool = True) -> dict:
    """The labels and settings the page scripts use, read by static/js/portal.js (error
    pages leave out the user's preferences: they must render without the database)."""
    return {
        "revealSeconds": REVEAL_SECONDS,
        "searchPageSize": SEARCH_PAGE_SIZE,
        "sources": list(SOURCE_LABELS),
        "sourceLabels": SOURCE_LABELS,
        "sourceShortLabels": SOURCE_SHORT_LABELS,
        "stateLabels": STATE_LABELS,
        "resourceTypeLabels": RESOURCE_TYPE_LABELS,
        # The management appliances' types as fleet management names them (VCF 9).
        "applianceLabels": APPLIANCE_LABELS,
        # Exact times in the browser's time zone ("local") or in UTC: the user's preference.
        "timeZone": _preference("time_zone")
        if with_preferences
        else DEFAULT_PREFERENCES["time_zone"],
    }


def _preference(name: str) -> str:
    if current_user and current_user.is_authenticated:
        return preferences(actor())[name]
    return DEFAULT_PREFERENCES[name]


def init_app(app: Flask) -> None:
    """Make `portal_config`, `source_labels` and `resource_type_labels` available to every
    template."""
    app.context_processor(
        lambda: {
            "portal_config": portal_config(),
            "source_labels": SOURCE_LABELS,
            "resource_type_labels": RESOURCE_TYPE_LABELS,
        }
    )
