"""Settings → Notifications (admin only): thresholds, channels, test messages, failures."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import audit
from ..access.guards import admin_required, recent_sign_in
from ..alerts import channels, delivery, notifications
from ..models import NotificationChannel
from ..platform.extensions import db

bp = Blueprint("notifications", __name__, url_prefix="/settings/notifications")


def _refused():
    flash("Confirm your password for this change.", "error")
    return redirect(url_for("notifications.overview"))


def _channel(channel_id: int) -> NotificationChannel:
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None:
        abort(404, description="No such channel.")
    return channel


def _form() -> dict:
    form: dict[str, str | list[str]] = dict(request.form.to_dict())
    form["events"] = request.form.getlist("events")
    return form


@bp.get("")
@admin_required
def overview():
    """The thresholds, every channel with its last result, and the last failed deliveries."""
    rows = db.session.scalars(select_channels()).all()
    return render_template(
        "settings_notifications.html",
        channels=[
            {
                "row": row,
                "where": channels.describe(row),
                "events": channels.events_of(row),
            }
            for row in rows
        ],
        kinds=notifications.KINDS,
        failing_after=notifications.failing_after(),
        expiry_days=notifications.expiry_days(),
        failures=delivery.recent_failures(),
    )


def select_channels():
    """Every channel, by name."""
    return db.select(NotificationChannel).order_by(NotificationChannel.name)


@bp.post("/thresholds")
@admin_required
@recent_sign_in("settings.notifications", refuse=_refused)
def save_thresholds():
    """Save after how many failed syncs a source is failing, and the digest's horizon."""
    try:
        failing = int(request.form.get("failing_after", ""))
        days = int(request.form.get("expiry_days", ""))
        notifications.set_thresholds(failing, days)
    except ValueError:
        db.session.rollback()
        flash("Failed syncs: 1 to 100; expiry horizon: 1 to 365 days.", "error")
        return redirect(url_for("notifications.overview"))
    flash("The notification settings are saved.", "info")
    return redirect(url_for("notifications.overview"))


def _render_form(channel: NotificationChannel, status: int = 200, error_field: str = ""):
    return (
        render_template(
            "settings_notification_channel.html",
            channel=channel,
            config=channels.config_of(channel),
            events=channels.events_of(channel),
            kinds=notifications.KINDS,
            error_field=error_field,
        ),
        status,
    )


def _save(channel: NotificationChannel, action: str):
    try:
        changed = channels.apply_form(channel, _form(), tuple(notifications.KINDS))
    except channels.ChannelError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _render_form(channel, 400, exc.field)
    clash = db.session.scalar(
        db.select(NotificationChannel.id).where(
            NotificationChannel.name == channel.name, NotificationChannel.id != (channel.id or 0)
        )
    )
    if clash is not None:
        db.session.rollback()
        flash("Another channel has this name.", "error")
        return _render_form(channel, 409, "name")
    db.session.add(channel)
    db.session.flush()
    audit.record(
        action,
        channel.name,
        details={
            "kind": channel.kind,
            "where": channels.describe(channel),
            "events": ", ".join(channels.events_of(channel)),
            "enabled": channel.enabled,
            "changed": ", ".join(changed),
        },
    )
    flash(f"The channel {channel.name} is saved.", "info")
    return redirect(url_for("notifications.overview"))


@bp.route("/channels/new", methods=["GET", "POST"])
@admin_required
@recent_sign_in("settings.notification_channel_create", refuse=_refused)
def new_channel():
    """Add an e-mail or webhook channel (`kind` in the query)."""
    kind = request.args.get("kind", "email")
    if kind not in channels.KINDS:
        abort(404)
    channel = NotificationChannel(
        kind=kind, name="", enabled=True, events="[]", config='{"verify_tls": true}'
    )
    if request.method == "GET":
        return _render_form(channel)
    return _save(channel, "settings.notification_channel_create")


@bp.route("/channels/<int:channel_id>", methods=["GET", "POST"])
@admin_required
@recent_sign_in("settings.notification_channel_update", refuse=_refused)
def edit_channel(channel_id: int):
    """Change a channel; blank secret fields keep the stored secrets."""
    channel = _channel(channel_id)
    if request.method == "GET":
        return _render_form(channel)
    return _save(channel, "settings.notification_channel_update")


@bp.post("/channels/<int:channel_id>/delete")
@admin_required
@recent_sign_in("settings.notification_channel_delete", refuse=_refused)
def delete_channel(channel_id: int):
    """Remove a channel and its pending deliveries."""
    channel = _channel(channel_id)
    name = channel.name
    db.session.delete(channel)
    audit.record("settings.notification_channel_delete", name)
    flash(f"The channel {name} is removed.", "info")
    return redirect(url_for("notifications.overview"))


@bp.post("/channels/<int:channel_id>/test")
@admin_required
def test_channel(channel_id: int):
    """Send a test message to the channel now and say whether it arrived."""
    channel = _channel(channel_id)
    error = delivery.send_test(channel, current_user.username)
    if error is None:
        flash(f"A test message went to {channel.name}.", "info")
    else:
        flash(f"The test message to {channel.name} failed: {error}", "error")
    return redirect(url_for("notifications.overview"))
