"""The RQ connection: real Redis at REDIS_URL, or an embedded in-process one."""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis


def init_app(app: Flask) -> None:
    app.extensions["pictor.redis"] = None


def get_redis() -> Redis:
    """The shared Redis connection for queues, locks, rate limits and progress."""
    conn = current_app.extensions.get("pictor.redis")
    if conn is None:
        url = current_app.config.get("REDIS_URL")
        if url:
            conn = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        else:
            import fakeredis

            conn = fakeredis.FakeStrictRedis()
        current_app.extensions["pictor.redis"] = conn
    return conn


def ping() -> None:
    """Raise when the queue's Redis cannot be reached."""
    get_redis().ping()


GENERATION_QUEUE = "generations"
MAINTENANCE_QUEUE = "maintenance"
