"""Waiting for a generation's news on its Redis channel (`queue.listen`), on real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from app import queue

CHANNEL = "pictor:test:listen"


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


def test_a_listener_waits_past_its_subscription_for_the_first_message(app, redis_url):
    publisher = redis.Redis.from_url(redis_url)
    with app.app_context(), queue.listen(CHANNEL) as listener:
        threading.Timer(0.2, publisher.publish, args=(CHANNEL, "ended")).start()
        # The subscription's confirmation comes first; it is not news, nor a timeout.
        assert listener.next(5.0) == "ended"


def test_a_listener_with_no_news_waits_out_its_timeout(app):
    with app.app_context(), queue.listen(CHANNEL) as listener:
        started = time.monotonic()
        assert listener.next(0.3) is None
        assert time.monotonic() - started >= 0.25  # not at once, on the confirmation
