"""Request parsing and response shapes shared by every /api/v1 route (API.md §1)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import jsonify, request
from flask.wrappers import Response

from app.errors import Invalid

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def json_body() -> dict[str, Any]:
    """The request's JSON object; anything else is 400 INVALID_JSON."""
    data = request.get_json(silent=True, force=True) if request.get_data() else None
    if not isinstance(data, dict):
        raise Invalid("Request body must be a JSON object", code="INVALID_JSON")
    return data


def pagination_args() -> tuple[int, int]:
    """`limit` (default 20, clamped to 100) and `offset`; negative or non-numeric → 400."""
    errors: dict[str, str] = {}
    values = {}
    for name, default in (("limit", DEFAULT_LIMIT), ("offset", 0)):
        raw = request.args.get(name)
        if raw is None or raw == "":
            values[name] = default
            continue
        value = parse_integer(raw)
        if value is None:
            errors[name] = "must be a non-negative integer"
            continue
        if value < 0:
            errors[name] = "must be a non-negative integer"
        elif name == "offset" and value > MAX_OFFSET:
            errors[name] = f"must be at most {MAX_OFFSET}"
        values[name] = value
    if errors:
        raise Invalid("Invalid pagination parameters", details=errors)
    return min(values["limit"], MAX_LIMIT), values["offset"]


def parse_integer(raw: str) -> int | None:
    """An integer query value in ASCII digits; `5.0` and `5e0` count too (JSON Schema calls
    them integers). None for anything else."""
    if not _NUMBER.fullmatch(raw):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    number = float(raw)
    return int(number) if number.is_integer() else None


def bool_arg(name: str, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise Invalid(f"{name} must be true or false", details={name: "must be true or false"})


def one(obj: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"data": obj})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def page(
    items: Iterable[T],
    serialize: Callable[[T], dict[str, Any]],
    *,
    total: int,
    limit: int,
    offset: int,
    has_more: bool | None = None,
) -> Response:
    """A list response; `has_more` when the caller knows it exactly (totals may be estimates)."""
    data = [serialize(item) for item in items]
    return jsonify(
        {
            "data": data,
            "pagination": {
                "total": total,
                "limit": limit,
                "offset": offset,
                "hasMore": offset + len(data) < total if has_more is None else has_more,
            },
        }
    )


def no_content() -> Response:
    return Response(status=204)
