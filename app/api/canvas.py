"""GET/PUT /canvas with ETag / If-Match (API.md §8; docs/decisions.md "Canvas")."""

from __future__ import annotations

import re

from flask import request

from app.api import bp
from app.api.auth import principal
from app.api.helpers import json_body, one
from app.database import read_only
from app.errors import DomainError, Invalid
from app.models import isoformat
from app.services import canvas

# RFC 9110 entity tags as the canvas uses them: "7", W/"7", a comma-separated list, or *.
IF_MATCH = re.compile(r'\*|(W/)?"[0-9]+"( *, *(W/)?"[0-9]+")*')


class PreconditionRequired(DomainError):
    status = 428
    code = "PRECONDITION_REQUIRED"
    message = 'If-Match is required: send the ETag of the canvas you read, e.g. If-Match: "7"'


def _respond(found: canvas.Canvas):
    return one(
        {"state": found.state, "version": found.version, "updatedAt": isoformat(found.updated_at)},
        headers={"ETag": f'"{found.version}"', "Cache-Control": "no-store"},
    )


def _expected_versions() -> set[int] | None:
    """The versions If-Match names; None for `*` (any). Missing → 428, malformed → 400."""
    header = request.headers.get("If-Match", "")
    if not header.strip():
        raise PreconditionRequired()
    if not IF_MATCH.fullmatch(header):
        raise Invalid(
            'If-Match must be the ETag of a canvas version, such as "7"',
            details={"If-Match": "expected a quoted version number or *"},
        )
    if header == "*":
        return None
    return {int(version) for version in re.findall(r'"([0-9]+)"', header)}


@bp.get("/canvas")
@read_only
def get_canvas():
    return _respond(canvas.get_canvas(principal().project_id))


@bp.put("/canvas")
def put_canvas():
    expected = _expected_versions()
    body = json_body()
    return _respond(canvas.save_canvas(principal().project_id, body.get("state"), expected))
