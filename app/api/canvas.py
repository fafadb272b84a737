"""GET/PUT /canvas with ETag / If-Match (API.md §8; docs/decisions.md "Canvas")."""

from __future__ import annotations

from flask import request

from app.api import bp
from app.api.auth import principal
from app.api.helpers import json_body, one
from app.errors import DomainError, Invalid
from app.models import isoformat
from app.services import canvas


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
    """The versions If-Match accepts; None for `*` (any). Missing → 428."""
    if not request.headers.get("If-Match", "").strip():
        raise PreconditionRequired()
    if request.if_match.star_tag:
        return None
    versions = set()
    for tag in request.if_match.as_set(include_weak=True):
        if not tag.isdigit():
            raise Invalid('If-Match must be a canvas version such as "7"')
        versions.add(int(tag))
    return versions


@bp.get("/canvas")
def get_canvas():
    return _respond(canvas.get_canvas(principal().project.id))


@bp.put("/canvas")
def put_canvas():
    body = json_body()
    expected = _expected_versions()
    return _respond(canvas.save_canvas(principal().project.id, body.get("state"), expected))
