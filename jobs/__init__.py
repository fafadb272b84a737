"""RQ entry points: thin wrappers that open an app context and call a service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, has_app_context
from rq import get_current_job
from rq.job import Job

from app.observability import bind_request_id

_process_app: Flask | None = None


@contextmanager
def app_context(job: Job | None = None) -> Iterator[None]:
    """A fresh app context for one job: its own database session, torn down after the job.

    Inside `flask worker` (and its forked work-horses) and the embedded worker thread, the
    running app is reused; a bare `rq worker` process builds one app, once. The job (the one
    running, or `job` for RQ's callbacks) logs under the request id of the request that
    enqueued it, which app.queue.enqueue keeps in the job's meta.
    """
    global _process_app
    if has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    else:
        if _process_app is None:
            from app import create_app

            _process_app = create_app()
        app = _process_app
    job = job or get_current_job()
    request_id = job.meta.get("request_id") if job is not None else None
    with app.app_context(), bind_request_id(request_id):
        yield
