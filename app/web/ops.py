"""Health, metrics and cron endpoints (API.md §10)."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text

from app.errors import Unauthorized
from app.extensions import db
from app.services import credits

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


@bp.route("/api/cron/reset-credits", methods=["GET", "POST"])
def cron_reset_credits():
    """Reset every monthly bucket whose period has ended (a scheduler calls this daily)."""
    secret = current_app.config.get("CRON_SECRET") or ""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    valid = scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), secret.encode()
    )
    if not secret or not valid:
        raise Unauthorized(
            "Missing or invalid cron secret", headers={"WWW-Authenticate": 'Bearer realm="cron"'}
        )
    count = credits.reset_due()
    return jsonify({"message": "Credit reset completed", "resetCount": count})
