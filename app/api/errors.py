"""One error shape for /api/v1 (API.md §1) and HTML error pages for the web."""

from __future__ import annotations

import logging
from contextlib import suppress

from flask import Flask, current_app, g, jsonify, request
from flask.wrappers import Response
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from app.errors import DomainError, ServiceUnavailable
from app.extensions import db

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "INVALID_STATE",
    410: "GONE",
    412: "PRECONDITION_FAILED",
    413: "FILE_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "PROVIDER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "TIMEOUT",
}
HTTP_MESSAGES = {413: "File too large", 404: "Not found", 405: "Method not allowed"}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks/", "/health", "/metrics")) or (
        request.path.startswith("/live/")
    )


def envelope(
    status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None
) -> Response:
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_page(status: int, title: str, message: str) -> Response:
    from app.web.rendering import render_error

    return render_error(status, title, message)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        if wants_json():
            return envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)
        return error_page(exc.status, HTTP_STATUS_CODES.get(exc.status, "Error"), exc.message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Response:
        message = "The security token is missing or expired; reload the page and try again"
        if wants_json():
            return envelope(400, "CSRF_FAILED", message)
        return error_page(400, "Session expired", message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = HTTP_MESSAGES.get(status) or exc.description or exc.name
        if wants_json():
            headers = {}
            if status == 405 and exc.get_response().headers.get("Allow"):
                headers["Allow"] = exc.get_response().headers["Allow"]
            return envelope(
                status, HTTP_CODES.get(status, exc.name.upper()), message, None, headers
            )
        return error_page(status, exc.name, message)

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError) -> Response:
        # A lost or refused connection (the database restarting) is a 503 to retry, not a bug.
        if not (exc.connection_invalidated or _is_transient(exc)):
            return unexpected(exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc.orig)
        with suppress(Exception):
            db.session.rollback()
        return _unavailable()

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def redis_error(exc: Exception) -> Response:
        log.warning("Redis unavailable on %s %s: %s", request.method, request.path, exc)
        with suppress(Exception):
            db.session.rollback()
        return _unavailable()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        if wants_json():
            return envelope(500, "INTERNAL_ERROR", "Something went wrong on our side")
        return error_page(500, "Something went wrong", "We have been notified; try again.")


_UNAVAILABLE_SIGNS = (
    "connection",
    "server closed",
    "terminating",
    "shutting down",
    "starting up",
    "database is locked",  # SQLite: another writer held it past the busy timeout
)


def _is_transient(exc: DBAPIError) -> bool:
    """True for the driver's "cannot connect / connection lost / busy" errors
    (OperationalError): the database is there again in a moment."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    text = str(exc.orig).lower()
    return any(sign in text for sign in _UNAVAILABLE_SIGNS)


def _unavailable() -> Response:
    message = ServiceUnavailable.message
    # What follows must not need the database: the page is shown as to a visitor.
    g._login_user = current_app.login_manager.anonymous_user()
    if wants_json():
        return envelope(503, ServiceUnavailable.code, message, headers={"Retry-After": "5"})
    response = error_page(503, "Temporarily unavailable", message)
    response.headers["Retry-After"] = "5"
    return response
