"""The break-glass settings: recipients, folder, schedule, how many copies to keep. Stored as
one JSON value in portal_meta, checked here field by field, audited when changed.

Schedules (UTC, like every time the scheduler keeps): `off`, `every Nh` (N from 1 to 168: a
copy N hours after the last one), or `daily HH:MM`. Nothing is copied until a recipient is
set; the first copy is made at the first check after that (within a minute).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage

from .. import audit
from ..alerts import notifications
from ..models import PortalMeta
from ..platform.extensions import db

SETTINGS_KEY = "break_glass.settings"
DEFAULT_SCHEDULE = "daily 02:00"
DEFAULT_KEEP = 7
KEEP_RANGE = (1, 365)
EVERY_RANGE = (1, 168)
MAX_RECIPIENTS = 20
MAX_RECIPIENT = 512
MAX_FOLDER = 1024
FIELDS = ("recipients", "folder", "schedule", "keep")
_EVERY = re.compile(r"^every\s+(\d{1,3})\s*h$")
_DAILY = re.compile(r"^daily\s+(\d{1,2}):(\d{2})$")
# What age-keygen writes beside a public key, in its key file and on the terminal: pasted
# whole, the label is left out.
_LABEL = re.compile(r"^(#\s*)?public key:\s*", re.IGNORECASE)


class OptionsError(Exception):
    """Settings we refuse: a message per field (`recipients.2`, `schedule`, ...)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("invalid break-glass settings")
        self.errors = errors


@dataclass(frozen=True)
class Options:
    """The settings in effect; `folder` empty means PORTAL_DATA_DIR/break-glass."""

    recipients: tuple[str, ...] = ()
    folder: str = ""
    schedule: str = DEFAULT_SCHEDULE
    keep: int = DEFAULT_KEEP

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON values."""
        values = asdict(self)
        values["recipients"] = list(self.recipients)
        return values


@dataclass(frozen=True)
class _Schedule:
    every_hours: int | None = None
    daily: tuple[int, int] | None = None
    off: bool = field(default=False)


def recipient(text: str) -> pyrage.x25519.Recipient:
    """An age X25519 recipient from its public key (`age1...`)."""
    return pyrage.x25519.Recipient.from_str(text)


def _recipient_problem(text: str) -> str | None:
    if text.upper().startswith("AGE-SECRET-KEY-"):
        return (
            "This is a private key (AGE-SECRET-KEY-…): it must never be given to the portal. "
            "Make a new key pair offline, since this one is no longer secret, and paste its "
            "public key (age1…)."
        )
    if text.startswith(("ssh-", "ecdsa-", "sk-")):
        return "SSH keys are not accepted: paste an age X25519 public key (age1…)."
    if not text.startswith("age1") or len(text) > MAX_RECIPIENT:
        return "Not an age public key: paste the age1… line that age-keygen printed."
    try:
        recipient(text)
    except (pyrage.RecipientError, ValueError):
        return (
            "Not an age X25519 public key (age1… from age-keygen): the text is damaged, "
            "or it is a plugin's or post-quantum key, which the portal does not take."
        )
    return None


def _recipients(value: Any, errors: dict[str, str]) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        errors["recipients"] = "A list of age public keys."
        return ()
    keys: list[str] = []
    for index, raw in enumerate(value):
        text = _LABEL.sub("", raw.strip())
        problem = _recipient_problem(text)
        if problem is not None:
            errors[f"recipients.{index}"] = problem
        elif text not in keys:
            keys.append(text)
    if len(keys) > MAX_RECIPIENTS:
        errors["recipients"] = f"At most {MAX_RECIPIENTS} recipients."
    return tuple(keys)


def _folder(value: Any, errors: dict[str, str]) -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or len(text) > MAX_FOLDER or any(not ch.isprintable() for ch in text):
        errors["folder"] = f"A folder path of at most {MAX_FOLDER} printable characters."
        return ""
    if text and (not Path(text).is_absolute() or ".." in Path(text).parts):
        errors["folder"] = "An absolute path without .., e.g. /var/backups/vcf-break-glass."
        return ""
    return text.rstrip("/") or ("/" if text else "")


def parse_schedule(text: str) -> _Schedule | None:
    """The schedule's meaning, or None when it is none of the forms above."""
    text = text.strip().lower()
    if text == "off":
        return _Schedule(off=True)
    if match := _EVERY.match(text):
        hours = int(match.group(1))
        if EVERY_RANGE[0] <= hours <= EVERY_RANGE[1]:
            return _Schedule(every_hours=hours)
        return None
    if match := _DAILY.match(text):
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour <= 23 and minute <= 59:
            return _Schedule(daily=(hour, minute))
    return None


def _normal_schedule(value: Any, errors: dict[str, str]) -> str:
    parsed = parse_schedule(value) if isinstance(value, str) else None
    if parsed is None:
        errors["schedule"] = (
            f"off, every Nh (N from {EVERY_RANGE[0]} to {EVERY_RANGE[1]} hours) or daily HH:MM "
            "(UTC), e.g. every 6h or daily 02:00."
        )
        return DEFAULT_SCHEDULE
    if parsed.off:
        return "off"
    if parsed.every_hours is not None:
        return f"every {parsed.every_hours}h"
    hour, minute = parsed.daily or (0, 0)
    return f"daily {hour:02d}:{minute:02d}"


def _keep(value: Any, errors: dict[str, str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        errors["keep"] = "A whole number of copies."
        return DEFAULT_KEEP
    if not KEEP_RANGE[0] <= value <= KEEP_RANGE[1]:
        errors["keep"] = f"Keep from {KEEP_RANGE[0]} to {KEEP_RANGE[1]} copies."
    return value


def validate(values: Mapping[str, Any]) -> Options:
    """Options from `values` (every field present), or OptionsError with a message per field."""
    errors: dict[str, str] = {}
    options = Options(
        recipients=_recipients(values.get("recipients"), errors),
        folder=_folder(values.get("folder"), errors),
        schedule=_normal_schedule(values.get("schedule"), errors),
        keep=_keep(values.get("keep"), errors),
    )
    if errors:
        raise OptionsError(errors)
    return options


def load() -> Options:
    """The stored settings; the defaults where none are stored (or a stored value no longer
    passes, which is never the case for what `save` wrote)."""
    raw = db.session.scalar(db.select(PortalMeta.value).where(PortalMeta.key == SETTINGS_KEY))
    if raw is None:
        return Options()
    try:
        stored = json.loads(raw)
        return validate({**Options().as_dict(), **stored})
    except (ValueError, OptionsError, TypeError):
        return Options()


def save(changes: Mapping[str, Any], actor: str | None = None) -> Options:
    """Change the settings (a missing field keeps its value); audited with the values before
    and after, and announced (`break_glass.changed`) when anything changed. The caller
    commits."""
    before = load()
    after = validate({**before.as_dict(), **{k: v for k, v in changes.items() if k in FIELDS}})
    row = db.session.get(PortalMeta, SETTINGS_KEY)
    value = json.dumps(after.as_dict())
    if row is None:
        db.session.add(PortalMeta(key=SETTINGS_KEY, value=value))
    else:
        row.value = value
    changed = [name for name in FIELDS if getattr(before, name) != getattr(after, name)]
    audit.record(
        "settings.break_glass",
        "break-glass copy",
        details={
            "changed": ", ".join(changed),
            "before": before.as_dict(),
            "after": after.as_dict(),
        },
        actor=actor,
    )
    if changed:
        added = [key for key in after.recipients if key not in before.recipients]
        notifications.emit(
            "break_glass.changed",
            "Break-glass settings changed: " + ", ".join(changed),
            f"The break-glass settings changed ({', '.join(changed)}). Recipients now: "
            f"{len(after.recipients)}; added: {', '.join(added) or 'none'}. If nobody meant "
            "to change them, a new key may be reading every password: check the audit log.",
            {
                "changed": changed,
                "recipients": list(after.recipients),
                "added": added,
                "folder": after.folder,
                "schedule": after.schedule,
                "keep": after.keep,
            },
        )
    return after


def active(options: Options) -> bool:
    """True when scheduled copies are made: a recipient is set and the schedule is not off."""
    return bool(options.recipients) and options.schedule != "off"


def next_copy(options: Options, last_at: datetime | None, now: datetime) -> datetime | None:
    """When the next scheduled copy is due (naive UTC), or None when none is scheduled."""
    if not active(options):
        return None
    schedule = parse_schedule(options.schedule)
    if schedule is None or schedule.off:
        return None
    if last_at is None:
        return now
    if schedule.every_hours is not None:
        return last_at + timedelta(hours=schedule.every_hours)
    hour, minute = schedule.daily or (0, 0)
    slot = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if slot > now:
        slot -= timedelta(days=1)  # the last time the clock passed HH:MM
    return slot if last_at < slot else slot + timedelta(days=1)


def is_due(options: Options, last_at: datetime | None, now: datetime) -> bool:
    """Whether the schedule wants a copy now (the last attempt, success or not, counts)."""
    upcoming = next_copy(options, last_at, now)
    return upcoming is not None and upcoming <= now
