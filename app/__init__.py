"""Pictor: create_app is the only place that wires extensions and blueprints."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from flask import Flask

from app.config import load_config
from app.extensions import csrf, db, end_session, htmx, login_manager, migrate, oauth

ROOT = Path(__file__).resolve().parent.parent

try:
    __version__ = version("pictor")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings = load_config()
    if config:
        settings.update(config)
    app = Flask(
        __name__,
        instance_path=settings["INSTANCE_DIR"],
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(settings)
    app.config["VERSION"] = __version__
    # CSRF is enforced by app.security for everything but API-key and signed requests.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False

    from app import database, metrics, observability

    # First, so every later hook and log line already has the request id.
    observability.init_app(app)
    metrics.init_app(app)
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            database.watch_connections(engine)
            database.enforce_foreign_keys(engine)
    app.teardown_appcontext(end_session)  # runs before Flask-SQLAlchemy's (reverse order)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    oauth.init_app(app)

    from app import (
        models,  # noqa: F401  (register every table on the metadata)
        ratelimit,
        security,
        storage,
    )
    from app.api import bp as api_bp
    from app.api.errors import register_error_handlers
    from app.api.openapi import docs_bp
    from app.cli import register_cli
    from app.web import register_web
    from app.web.auth import register_google

    storage.init_app(app)
    ratelimit.init_app(app)
    security.init_app(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(docs_bp)
    register_web(app)
    register_google(app)
    register_error_handlers(app)
    register_cli(app)

    from app import queue
    from app.fastpath import FastPath

    queue.init_app(app)
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    return app
