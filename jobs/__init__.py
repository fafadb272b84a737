"""RQ entry points: thin wrappers that open an app context and call a service."""

from __future__ import annotations

from flask import Flask, current_app, has_app_context
from flask.ctx import AppContext

_process_app: Flask | None = None


def app_context() -> AppContext:
    """A fresh app context for one job: its own database session, torn down after the job.

    Inside `flask worker` (and its forked work-horses) and the embedded worker thread, the
    running app is reused; a bare `rq worker` process builds one app, once.
    """
    global _process_app
    if has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    else:
        if _process_app is None:
            from app import create_app

            _process_app = create_app()
        app = _process_app
    return app.app_context()
