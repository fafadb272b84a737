"""A worker's heartbeat, on real Redis: what the sweeper reads to tell a live worker from a
lost one (`queue.worker_heartbeat`)."""

from __future__ import annotations

import pytest
import redis
from rq import Queue

from app import queue
from jobs.worker import PictorWorker


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


def test_a_heartbeat_marks_the_worker_alive_in_one_round_trip(app, redis_url):
    connection = redis.Redis.from_url(redis_url)
    worker = PictorWorker([Queue("generations", connection=connection)], connection=connection)
    sent = []
    real_send = connection.connection_pool.connection_class.send_packed_command

    def counting(self, command, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        sent.append(command)
        return real_send(self, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection.connection_pool.connection_class, "send_packed_command", counting)
        worker.heartbeat()

    assert len(sent) == 1  # HSET and two EXPIREs, pipelined
    assert queue.worker_heartbeat(worker.name) < 5  # seconds since it beat
    assert 0 < connection.ttl(worker.key) <= worker.worker_ttl + 60
