"""Extension objects, created unbound here and initialised in create_app."""

from contextlib import suppress

from authlib.integrations.flask_client import OAuth
from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from app.database import Session

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base, session_options={"class_": Session})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()
oauth = OAuth()
# Flask-Limiter owns the counter storage (RATELIMIT_STORAGE_URI: Redis or memory://) and the
# strategy; app/ratelimit.py applies Pictor's two budgets. Flask-Limiter's own check before every
# request is skipped at once by a request filter: it has nothing to count (and it would read
# RATELIMIT_DEFAULT as a limit on every route of the app), but resolving that took ~0.1 ms.
limiter = Limiter(key_func=get_remote_address, headers_enabled=False, strategy="fixed-window")
limiter.request_filter(lambda: True)


def end_session(_exc: BaseException | None = None) -> None:
    """Teardown: end the request's session even when its connection died under it.

    Flask-SQLAlchemy's own teardown rolls back, which raises when the database went away
    mid-request (a restart) and turns an answered request into a 500. Here the dead
    connection is invalidated instead, and the pool opens a new one next time.
    """
    try:
        db.session.remove()
    except DBAPIError:
        with suppress(DBAPIError):
            db.session().invalidate()
        db.session.registry.clear()
