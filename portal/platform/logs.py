"""Logging to logs/portal.log and, under systemd, the journal: one record, one line.

Values in log records come from operators and from SDDC Manager; a CR or LF in an environment
name must not forge a line. The formatter escapes control characters of every message in one
place; tracebacks and stacks follow on indented lines.
"""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler

from .config import Settings
from .text import escape_controls

_CONTINUATION = "\n    | "


class SafeFormatter(logging.Formatter):
    """A formatter whose message is always one line; multi-line detail is indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        detail = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            detail.append(record.exc_text)
        if record.stack_info:
            detail.append(self.formatStack(record.stack_info))
        if trace := getattr(record, "trace", None):
            detail.append(str(trace))
        for block in detail:
            lines = (escape_controls(part) for part in block.rstrip("\n").split("\n"))
            line += _CONTINUATION + _CONTINUATION.join(lines)
        return line


def init_logging(settings: Settings) -> None:
    """Log to logs/portal.log (rotating) and stderr, which systemd sends to the journal."""
    root = logging.getLogger("portal")
    root.setLevel(settings.log_level)
    if any(getattr(h, "_portal", False) for h in root.handlers):
        return
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(
            settings.log_dir / "portal.log",
            maxBytes=10 * 1024 * 1024,
            backupCount=5,
            encoding="utf-8",
        )
    except OSError:
        handler = logging.StreamHandler()
    handler.setFormatter(
        SafeFormatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    handler._portal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if os.environ.get("JOURNAL_STREAM"):
        # Under systemd: the same lines reach the journal too.
        journal = logging.StreamHandler()
        journal.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(journal)
