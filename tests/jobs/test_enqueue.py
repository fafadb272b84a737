"""Queueing a job (`queue.enqueue`), on real Redis: one round trip, and the job is there for a
worker to take, now or when it is due."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry

from app import queue
from tests import factories


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


@pytest.fixture
def sent(app):
    """What is sent to Redis from here on, once the connection is open and RQ has asked the
    server's version."""
    queue.enqueue("warm-up", "jobs.generate.run", "w")
    with factories.redis_sends(queue.get_redis()) as sent:
        yield sent


def test_a_job_is_queued_in_one_round_trip(app, redis_url, sent):
    job = queue.enqueue("generations", "jobs.generate.run", "g-1", job_id="g-1")

    assert len(sent) == 1
    waiting = Queue("generations", connection=redis.Redis.from_url(redis_url))
    assert waiting.job_ids == ["g-1"] and job.get_status() == "queued"


def test_a_delayed_job_is_scheduled_in_one_round_trip(app, redis_url, sent):
    job = queue.enqueue("maintenance", "jobs.maintenance.sweep_stuck", delay=30)

    assert len(sent) == 1
    scheduled = ScheduledJobRegistry("maintenance", connection=redis.Redis.from_url(redis_url))
    assert scheduled.get_job_ids() == [job.id]
