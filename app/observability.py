"""Structured logs and the request id that follows a request into its job and its webhook.

Every log record gets the current request id (a contextvar): set per HTTP request from a sane
incoming `X-Request-Id` or a fresh one, echoed in the response header, and re-bound by a job
with `bind_request_id(...)` so the worker's lines carry the id of the request that enqueued it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import Flask, Response, g, request
from flask.logging import default_handler

REQUEST_ID_HEADER = "X-Request-Id"
# What we accept from a client or a proxy: 8-200 characters, no spaces or quotes, so it is
# safe to echo in a header and to write in a log line. Anything else is replaced.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{7,199}")

_request_id: ContextVar[str | None] = ContextVar("pictor_request_id", default=None)

# Attributes every LogRecord has; anything else on a record was passed as `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def current_request_id() -> str | None:
    """The request id bound to this context (an HTTP request or a job), if any."""
    return _request_id.get()


@contextmanager
def bind_request_id(request_id: str | None) -> Iterator[str | None]:
    """Run a block (a job, a webhook delivery) under the request id that caused it."""
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The incoming id when it is a sane token, else a fresh one."""
    if incoming and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


def brief(exc: BaseException) -> str:
    """An error in one line (its type and the first line of its text), for logs and reports."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def timestamp(created: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, for `created` (a Unix time) or now."""
    moment = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RequestIdFilter(logging.Filter):
    """Stamp each record with the bound request id (an explicit `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for development, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(_rid)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record._rid = f"[{request_id}] " if request_id else ""
        return super().format(record)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test runners and gunicorn swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Send the root logger to stderr as JSON lines or text. Safe to call again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "pictor", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.pictor = True
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Configure logging and give every request an id. Call before other request hooks."""
    configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.logger.removeHandler(default_handler)

    @app.before_request
    def assign_request_id() -> None:
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = _request_id.set(request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def release_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            _request_id.reset(token)
