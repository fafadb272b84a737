"""Health, metrics and cron endpoints (API.md §10)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app.extensions import db

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


def _check(name: str, probe) -> str:  # noqa: ANN001
    try:
        probe()
    except Exception as exc:  # noqa: BLE001  (any failure makes the check fail)
        log.warning("health check %s failed: %s", name, exc)
        db.session.rollback()
        return "error"
    return "ok"


@bp.get("/health")
def health():
    from app import queue
    from app.storage import get_storage

    checks = {
        "database": _check("database", lambda: db.session.execute(text("SELECT 1"))),
        "queue": _check("queue", queue.ping),
        "storage": _check("storage", get_storage().check),
    }
    ok = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": current_app.config["VERSION"],
        "checks": checks,
    }
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response
