"""The embedded queue (no REDIS_URL): a private redis-server or an in-process fake Redis, with
a worker thread that starts on the first job and stops with the app."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from sqlalchemy import func, select

from app import queue
from app.extensions import db
from app.models import CreditTransaction, Generation
from app.services import credits, generations
from jobs.worker import Cron


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pictor-embedded-worker"]


def _finish(generation_id: str) -> Generation:
    generation = generations.wait(generation_id, 60)
    db.session.expire_all()
    return generation


@pytest.mark.parametrize(
    ("app_config", "mode"),
    [
        ({"EMBEDDED_QUEUE": "fakeredis"}, "embedded-fakeredis"),
        ({"EMBEDDED_QUEUE": "auto"}, "embedded-redis"),
    ],
)
def test_each_embedded_mode_runs_generations_and_stops_cleanly(app, project, user, mode):
    if mode == "embedded-redis" and not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    runtime = queue.runtime()
    assert runtime.mode == mode and _worker_threads() == []
    generation, _ = generations.create(project, user, {"prompt": "embedded"})
    assert _finish(generation.id).status == "success"
    assert runtime.describe().startswith(mode)
    supervisor = runtime._supervisor
    queue.stop(app)
    assert _worker_threads() == []
    if supervisor is not None:
        assert supervisor.poll() is not None  # the private redis-server is gone too


def test_nothing_starts_until_the_first_job(app, api):
    assert api.get("/api/v1/models").status_code == 200
    assert api.get("/api/v1/generations").status_code == 200
    assert _worker_threads() == []
    assert queue.runtime()._redis is None


@pytest.mark.parametrize(
    "app_config", [{"JOB_TIMEOUT_SECONDS": 1, "LOCAL_PROVIDER_DELAY_MS": 4000}]
)
def test_job_over_its_timeout_ends_timeout_with_one_refund(app, project, user, app_config):
    generation, _ = generations.create(project, user, {"prompt": "too slow"})
    finished = _finish(generation.id)
    assert (finished.status, finished.error_code) == ("failed", "TIMEOUT")
    time.sleep(3)  # RQ retries the job; the retry finds it ended and does nothing
    refunds = db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation.id
        )
    )
    assert refunds == 1 and credits.balance(user.id) == 50
    assert db.session.get(Generation, generation.id).status == "failed"


def test_only_one_cron_leads(app):
    connection = queue.runtime().new_connection()
    first, second = Cron(connection, app.config), Cron(connection, app.config)
    assert first.tick() == 3  # the three interval jobs are due at once; daily ones are not
    assert second.tick() == 0
    assert first.tick() == 0  # nothing due again until the interval passes


def test_worker_command_needs_redis_url(runner):
    result = runner.invoke(args=["worker", "--burst"])
    assert result.exit_code != 0
    assert "REDIS_URL is not set" in result.output
