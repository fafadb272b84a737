"""The forking worker's own parts, on real Redis: its heartbeat (what the sweeper reads to
tell a live worker from a lost one, `queue.worker_heartbeat`) and the hand-over of a job to
its work-horse."""

from __future__ import annotations

import pytest
import redis
from rq import Queue

from app import queue
from jobs.worker import PictorWorker, job_line, read_job_line
from tests import factories


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


def test_a_heartbeat_marks_the_worker_alive_in_one_round_trip(app, redis_url):
    connection = redis.Redis.from_url(redis_url)
    worker = PictorWorker([Queue("generations", connection=connection)], connection=connection)
    with factories.redis_sends(connection) as sent:
        worker.heartbeat()

    assert len(sent) == 1  # HSET and two EXPIREs, pipelined
    assert queue.worker_heartbeat(worker.name) < 5  # seconds since it beat
    assert 0 < connection.ttl(worker.key) <= worker.worker_ttl + 60


def test_the_horse_gets_the_job_as_dequeued_without_reading_redis(app, redis_url):
    connection = redis.Redis.from_url(redis_url)
    waiting = Queue("generations", connection=connection)
    every_byte = bytes(range(256))  # a newline among them: the hand-over is one line
    waiting.enqueue("jobs.generate.run", every_byte, job_id="handed-over", job_timeout=42)
    worker = PictorWorker([waiting], connection=connection)
    job, _ = Queue.dequeue_any([waiting], None, connection=connection, job_class=worker.job_class)

    line = job_line(job, waiting.name, "an-execution", 1.5)
    connection.delete(job.key)  # what the horse runs cannot come from Redis now
    job_id, queue_name, execution_id, created, raw = read_job_line(line)
    handed = worker.job_from(job_id, raw)

    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert (queue_name, execution_id, created) == ("generations", "an-execution", 1.5)
    assert (handed.id, handed.func_name, handed.args) == (
        "handed-over",
        "jobs.generate.run",
        (every_byte,),
    )
    assert handed.timeout == 42 and handed.origin == "generations"
