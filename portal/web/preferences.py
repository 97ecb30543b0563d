"""The signed-in user's preferences: dashboard layout, and exact times in the browser's time
zone or in UTC."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from ..identity import users

bp = Blueprint("preferences", __name__)


@bp.get("/preferences")
@login_required
def preferences():
    """Show the preferences form."""
    return render_template("preferences.html", preferences=users.preferences(users.actor()))


@bp.post("/preferences")
@login_required
def save_preferences():
    """Store the preferences chosen in the form; an unknown value is refused."""
    changes = {}
    for name, choices in users.PREFERENCE_CHOICES.items():
        value = request.form.get(name)
        if value is None:
            continue
        if value not in choices:
            flash(f"Unknown value for {name}.", "error")
            return redirect(url_for("preferences.preferences"), 303)
        changes[name] = value
    users.set_preferences(users.actor(), changes)
    flash("Preferences saved.", "info")
    return redirect(url_for("preferences.preferences"), 303)
