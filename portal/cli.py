"""Command line: `flask --app app users list|create|reset-password|set-role`."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from . import audit, clock
from .extensions import db
from .models import ROLES, User
from .security import hash_password, password_problem
from .sessions import revoke_user_sessions

users_cli = AppGroup("users", help="Manage portal users (for a locked-out operator).")


def _get(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return user


def _new_password(username: str) -> str:
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if problem := password_problem(password, username):
        raise click.ClickException(problem)
    return password


@users_cli.command("list")
def list_users() -> None:
    """List users with role and state."""
    for user in db.session.scalars(select(User).order_by(User.username)):
        state = "disabled" if user.disabled else "active"
        if user.locked_until and user.locked_until > clock.now():
            state = "locked"
        flag = " (must change password)" if user.must_change_password else ""
        click.echo(f"{user.username}\t{user.role}\t{state}{flag}")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="readonly", show_default=True)
def create_user(username: str, role: str) -> None:
    """Create a user; the password is asked for and must be changed at first sign-in."""
    if db.session.scalar(select(User.id).where(User.username == username)):
        raise click.ClickException(f"user {username!r} exists")
    password = _new_password(username)
    db.session.add(
        User(
            username=username,
            role=role,
            password_hash=hash_password(password),
            must_change_password=True,
        )
    )
    audit.record("user.create", username, details={"role": role}, actor="cli", commit=False)
    db.session.commit()
    click.echo(f"created {username} ({role})")


@users_cli.command("reset-password")
@click.argument("username")
def reset_password(username: str) -> None:
    """Set a temporary password, unlock and re-enable the account, end its sessions."""
    user = _get(username)
    user.password_hash = hash_password(_new_password(username))
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    user.disabled = False
    revoke_user_sessions(user.id)
    audit.record("user.reset_password", username, actor="cli", commit=False)
    db.session.commit()
    click.echo(f"password reset for {username}; it must be changed at next sign-in")


@users_cli.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username: str, role: str) -> None:
    """Change a user's role (the last admin cannot be demoted)."""
    user = _get(username)
    if user.role == "admin" and role != "admin":
        admins = db.session.scalars(select(User).where(User.role == "admin")).all()
        if len([u for u in admins if not u.disabled]) <= 1:
            raise click.ClickException("the last admin cannot be demoted")
    old, user.role = user.role, role
    audit.record(
        "user.role", username, details={"from": old, "to": role}, actor="cli", commit=False
    )
    db.session.commit()
    click.echo(f"{username}: {old} -> {role}")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(users_cli)
