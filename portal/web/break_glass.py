"""Settings → Break-glass copy (admin only): recipients, folder, schedule, how many copies to
keep, the last copy, and "make a copy now"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access.guards import admin_required, recent_sign_in
from ..ops import break_glass
from ..ops import break_glass_settings as options_store
from ..platform.clock import UTC
from ..platform.extensions import db

bp = Blueprint("break_glass", __name__, url_prefix="/settings/break-glass")
SHOWN_COPIES = 20


def _refused():
    flash("Confirm your password for this change.", "error")
    return redirect(url_for("break_glass.overview"))


def _copies(folder: Path) -> list[dict]:
    """The newest copies in the folder: name, size, time (UTC)."""
    found = []
    for path in reversed(break_glass.copies_in(folder)[-SHOWN_COPIES:]):
        try:
            info = path.stat()
        except OSError:
            continue
        written = datetime.fromtimestamp(info.st_mtime, UTC).strftime("%Y-%m-%d %H:%M")
        found.append({"name": path.name, "size": info.st_size, "written": written})
    return found


def _schedule_form(schedule: str) -> dict:
    """The schedule as the form's three choices."""
    parsed = options_store.parse_schedule(schedule)
    if parsed is None or parsed.off:
        return {"kind": "off", "every": 24, "daily": "02:00"}
    if parsed.every_hours is not None:
        return {"kind": "every", "every": parsed.every_hours, "daily": "02:00"}
    hour, minute = parsed.daily or (2, 0)
    return {"kind": "daily", "every": 24, "daily": f"{hour:02d}:{minute:02d}"}


def _render(form: dict | None = None, errors: dict | None = None, status: int = 200):
    state = break_glass.status()
    options = state["options"]
    folder = break_glass.folder_of(current_app, options)
    command = current_app.config["PORTAL_SETTINGS"].break_glass_command
    values = form or {
        "recipients": "\n".join(options.recipients),
        "folder": options.folder,
        "keep": options.keep,
        **_schedule_form(options.schedule),
    }
    return (
        render_template(
            "settings_break_glass.html",
            state=state,
            options=options,
            folder=str(folder),
            default_folder=str(break_glass.folder_of(current_app, options_store.Options())),
            copies=_copies(folder),
            handoff_program=Path(command[0]).name if command else None,
            form=values,
            errors=errors or {},
        ),
        status,
    )


@bp.get("")
@admin_required
def overview():
    """The settings, the last copy, the copies in the folder."""
    return _render()


def _recipient_errors(errors: dict[str, str], lines: list[tuple[int, str]]) -> dict[str, str]:
    """The service names a refused key by its place in the list; the page by its line."""
    shown = {key: value for key, value in errors.items() if not key.startswith("recipients.")}
    lines_refused = [
        f"Line {lines[int(key.split('.')[1])][0]}: {message}"
        for key, message in errors.items()
        if key.startswith("recipients.")
    ]
    if lines_refused:
        shown["recipients"] = " ".join([shown.get("recipients", ""), *lines_refused]).strip()
    return shown


@bp.post("")
@admin_required
@recent_sign_in("settings.break_glass", refuse=_refused)
def save():
    """Save the recipients (one public key a line), folder, schedule and how many to keep."""
    form = {
        "recipients": request.form.get("recipients", ""),
        "folder": request.form.get("folder", ""),
        "keep": request.form.get("keep", ""),
        "kind": request.form.get("schedule_kind", "off"),
        "every": request.form.get("every_hours", ""),
        "daily": request.form.get("daily_at", ""),
    }
    lines = [
        (number, line.strip())
        for number, line in enumerate(form["recipients"].splitlines(), start=1)
        if line.strip()
    ]
    schedule = {
        "every": f"every {form['every'].strip()}h",
        "daily": f"daily {form['daily'].strip()}",
    }.get(form["kind"], "off")
    keep: object = form["keep"]
    if isinstance(keep, str) and keep.strip().isdigit() and len(keep.strip()) <= 4:
        keep = int(keep.strip())
    try:
        options_store.save(
            {
                "recipients": [line for _, line in lines],
                "folder": form["folder"],
                "schedule": schedule,
                "keep": keep,
            }
        )
    except options_store.OptionsError as exc:
        db.session.rollback()
        flash("Some fields are not valid; nothing was saved.", "error")
        # A private key pasted by mistake is never sent back to the browser.
        form["recipients"] = "\n".join(
            "" if line.strip().upper().startswith("AGE-SECRET-KEY-") else line
            for line in form["recipients"].splitlines()
        )
        return _render(form, _recipient_errors(exc.errors, lines), 400)
    flash("The break-glass settings are saved.", "info")
    return redirect(url_for("break_glass.overview"))


@bp.post("/copies")
@admin_required
def make_copy():
    """Make a copy now (and hand it off), as the schedule would."""
    try:
        result = break_glass.copy_now(current_app, current_user.username)
    except break_glass.NotConfigured as exc:
        flash(str(exc), "error")
        return redirect(url_for("break_glass.overview"))
    if result.state == "success":
        flash(f"Copy written: {result.file} ({result.count} passwords).", "info")
    elif result.state == "handoff_failed":
        flash(f"Copy written: {result.file}, but {result.error}.", "error")
    else:
        flash(f"No copy was written: {result.error}.", "error")
    return redirect(url_for("break_glass.overview"))
