"""portal.log: one line per record, whatever the values logged contain."""

from __future__ import annotations

import logging
import shlex
import sys

from support import create_env, run_sync

from portal.platform.logs import SafeFormatter
from portal.platform.text import quoted

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


def _fields(line: str) -> dict[str, str]:
    # A key=value (logfmt) reader: quoted values with backslash escapes, as shlex reads them.
    return dict(part.split("=", 1) for part in shlex.split(line.split(" audit ", 1)[1]))


def test_a_typed_name_cannot_forge_fields_of_an_audit_line(app, anon):
    hostile = 'mallory ip=10.9.9.9 target=admin outcome=success actor="admin" \\" x=\\'
    path = _portal_log()
    with open(path, encoding="utf-8") as log:
        log.seek(0, 2)
        assert anon.login(hostile, "wrong password").status_code == 401
        for handler in logging.getLogger("portal").handlers:
            handler.flush()
        lines = [line for line in log.read().splitlines() if " audit action=" in line]
    assert len(lines) == 1, lines
    fields = _fields(lines[0])
    assert fields == {
        "action": "auth.login",
        "actor": hostile,
        "ip": "127.0.0.1",
        "target": hostile,
        "outcome": "failure",
    }


def test_quoted_values_read_back_as_written():
    for value in ("", "plain", 'a "b" c', "back\\slash", "x=1 y=2", "line\nbreak"):
        field = quoted(value)
        assert field.startswith('"') and field.endswith('"') and "\n" not in field
        read = shlex.split(f"k={field}")[0].split("=", 1)[1]
        assert read == value.replace("\n", "\\n")  # a line break stays visible, escaped
