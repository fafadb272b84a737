"""The JSON API, /api/v1 (API.md). One module per resource, all on this blueprint."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from app.api import (  # noqa: E402,F401  (route modules register themselves on bp)
    account,
    auth,
    canvas,
    catalog,
    flows,
    generations,
    images,
    live,
    openapi,
    project,
)
