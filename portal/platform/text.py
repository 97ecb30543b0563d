"""Untrusted text made safe to show or log: control and direction characters made visible."""

from __future__ import annotations

import re

# Bidirectional embeddings, overrides and isolates can make a host name read backwards.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# For pages and exports: NUL and the other C0/C1 controls except tab and line breaks.
_HIDDEN = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{BIDI_CONTROLS}]")


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def escape_controls(value: object) -> str:
    """One line of text: every non-printable or direction character as a visible escape."""
    return "".join(
        ch if ch.isprintable() and ch not in BIDI_CONTROLS else _escaped(ch) for ch in str(value)
    )


def quoted(value: object) -> str:
    """A value for a `key="value"` log field (logfmt): always in double quotes, with `\\` and
    `"` escaped by a backslash and control characters escaped as above, so no value can end
    its field early or add a field of its own."""
    text = "" if value is None else str(value)
    return '"' + escape_controls(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def has_hidden(text: str) -> bool:
    """Whether `visible` would change the text."""
    return _HIDDEN.search(text) is not None


def visible(value: object) -> str:
    """Text for a page or an export: NUL, controls and direction overrides shown escaped."""
    text = "" if value is None else str(value)
    return _HIDDEN.sub(lambda match: _escaped(match.group()), text)


# A cell starting with one of these is a formula to a spreadsheet program.
_FORMULA_START = frozenset("=+-@\t\r")


def neutralise(value: object) -> str:
    """Text for a spreadsheet cell: a leading quote stops =, +, -, @, tab or CR formulas."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in _FORMULA_START else text
