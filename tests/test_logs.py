"""portal.log: one line per record, whatever the values logged contain."""

from __future__ import annotations

import logging
import sys

from support import create_env, run_sync

from portal.logs import SafeFormatter

FORGED = "2026-12-01 00:00:00,000 INFO [1] portal.audit: audit action=auth.login actor=root"


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("portal.test", logging.INFO, __file__, 1, message, args, exc_info)


def test_control_characters_in_values_are_escaped():
    formatter = SafeFormatter("%(levelname)s %(message)s")
    line = formatter.format(_record("environment %s", f"lab\r\n{FORGED}\x1b[2J\u202e"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "INFO environment lab\\r\\n" + FORGED + "\\x1b[2J\\u202e"


def test_tracebacks_follow_on_indented_lines():
    formatter = SafeFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "INFO failed"
    assert all(line.startswith("    | ") for line in lines[1:])
    assert any(FORGED in line for line in lines[1:])


def _portal_log() -> str | None:
    for handler in logging.getLogger("portal").handlers:
        if getattr(handler, "_portal", False):
            return getattr(handler, "baseFilename", None)
    return None


def test_an_environment_name_cannot_forge_a_line_in_portal_log(app, admin, sim):
    path = _portal_log()
    assert path is not None
    with open(path, encoding="utf-8") as log:
        log.seek(0, 2)
        env = create_env(admin, sim, name=f"lab\n{FORGED}")
        assert run_sync(app, admin, env["id"])["state"] == "success"
        for handler in logging.getLogger("portal").handlers:
            handler.flush()
        written = log.read()
    assert "sync lab\\n" + FORGED in written
    assert not any(line.startswith(FORGED) for line in written.splitlines())
