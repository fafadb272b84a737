"""Page-or-fragment rendering and htmx-aware redirects (STYLE.md "One view, page or fragment")."""

from __future__ import annotations

from typing import Any

from flask import make_response, redirect, render_template
from flask.wrappers import Response

from app.extensions import htmx


def is_fragment_request() -> bool:
    """An htmx request that swaps a part of the page (not boosted, not a history restore)."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_page(
    template: str, fragment: str | None = None, *, status: int = 200, **context: Any
) -> Response:
    """The whole page normally; only `fragment` (a partial template) for htmx swaps."""
    name = fragment if fragment and is_fragment_request() else template
    response = make_response(render_template(name, **context), status)
    response.headers.add("Vary", "HX-Request")
    return response


def redirect_to(url: str) -> Response:
    """PRG redirect; for htmx requests an HX-Redirect the client follows."""
    if htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def render_error(status: int, title: str, message: str) -> Response:
    response = make_response(
        render_template("errors/error.html", code=status, title=title, message=message), status
    )
    if htmx:
        import json

        response.headers["HX-Trigger"] = json.dumps(
            {"toast": {"message": message, "level": "error"}}
        )
    return response
