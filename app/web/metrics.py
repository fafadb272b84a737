"""`GET /metrics`: Prometheus exposition, behind a bearer token when METRICS_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request
from flask.wrappers import Response

from app import metrics
from app.errors import Unauthorized

bp = Blueprint("metrics", __name__)


def _authorize() -> None:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized(
            "A valid metrics token is required",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@bp.get("/metrics")
def scrape() -> Response:
    _authorize()
    body, content_type = metrics.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
