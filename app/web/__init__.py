"""The server-rendered UI and the public, non-JSON routes."""

from flask import Flask


def register_web(app: Flask) -> None:
    from app.web import admin, auth, billing, keys, live, media, ops, projects, studio

    for module in (auth, projects, studio, keys, billing, admin, ops, media, live):
        app.register_blueprint(module.bp)

    from app.web import metrics

    app.register_blueprint(metrics.bp)
