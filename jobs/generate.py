"""Generation jobs. `run` does the work; `on_failure` ends a generation RQ saw fail."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from jobs import app_context


def run(generation_id: str) -> None:
    from app.services import generations

    with app_context():
        generations.run(generation_id)


def on_failure(
    job: Job,
    connection: Any,
    exc_type: type[BaseException],
    exc_value: BaseException | None,
    traceback: TracebackType | None,
) -> None:
    """Called by RQ after every failed attempt (retries included) and for abandoned jobs."""
    from app.services import generations

    generation_id = job.args[0]
    with app_context():
        if issubclass(exc_type, AbandonedJobError):
            generations.fail(generation_id, "WORKER_LOST", generations.WORKER_LOST_MESSAGE)
        elif issubclass(exc_type, JobTimeoutException):
            generations.fail(generation_id, "TIMEOUT", "The generation took too long")
        elif job.retries_left:
            generations.requeue(generation_id)
        else:
            generations.fail(generation_id, "INTERNAL_ERROR", "The generation failed unexpectedly")
