"""Flask extensions, created here and attached in the application factory."""

from typing import TYPE_CHECKING, ClassVar, cast

from flask import Flask, current_app
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase
from werkzeug.local import LocalProxy


class Base(DeclarativeBase):
    """Declarative base shared by every model."""

    if TYPE_CHECKING:
        # Every model maps one Table (SQLAlchemy types it as any FromClause, such as a join).
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()


def app_object() -> Flask:
    """The application behind `current_app`, for work that outlives the application context
    (a thread, a command's long task). Flask types the proxy as the Flask it stands for."""
    return cast("LocalProxy[Flask]", current_app)._get_current_object()
