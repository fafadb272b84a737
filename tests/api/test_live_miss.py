"""Live MISSes (API.md §7): one generation per cache key, charged, rate limited, single-flight.

These run the real generation service (`generations.create` / `generations.wait`) with the
local provider and the embedded queue.
"""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pytest

from app.extensions import db
from app.models import Generation, LiveCacheEntry, User
from app.services import live
from tests.api.test_live import public_url


def _live(api, prompt="a red fox", ratio="1:1"):
    return api.get("/api/v1/live?" + urlencode({"prompt": prompt, "aspectRatio": ratio}))


def _balance(user_id: str) -> int:
    db.session.expire_all()
    return db.session.get(User, user_id).credits_balance


def test_miss_generates_charges_caches_and_then_hits(api, user):
    first = _live(api)
    assert first.status_code == 200, first.get_data(as_text=True)[:300]
    assert first.headers["X-Cache-Status"] == "MISS"
    assert first.headers["Content-Type"] == "image/png"
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first.headers["ETag"].startswith('"')
    gen_id = first.headers["X-Generation-Id"]
    gen = db.session.get(Generation, gen_id)
    assert gen.live_cache_key == live.cache_key("a red fox", "1:1")
    assert gen.output_image_id == first.headers["X-Image-Id"]
    assert _balance(user.id) == 49

    second = _live(api, "  a  red fox ")
    assert second.headers["X-Cache-Status"] == "HIT"
    assert second.headers["X-Cache-Hit-Count"] == "1"
    assert second.data == first.data
    assert _balance(user.id) == 49
    assert db.session.query(Generation).count() == 1


def test_public_miss_generates_for_the_project_owner(client, project, user):
    response = client.get(public_url(project, "a lighthouse at dusk", "16:9"))
    assert response.status_code == 200
    assert response.headers["X-Cache-Status"] == "MISS"
    assert _balance(user.id) == 49


class TestSingleFlight:
    @pytest.fixture
    def app_config(self):
        return {"LOCAL_PROVIDER_DELAY_MS": 400}

    def test_six_concurrent_misses_start_exactly_one_generation(self, app, api, user, backend):
        if backend == "sqlite":
            pytest.skip("six concurrent writers need PostgreSQL")
        barrier = threading.Barrier(6)
        responses = []

        def request_it():
            barrier.wait()
            responses.append(_live(api, "six at once"))

        threads = [threading.Thread(target=request_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in responses] == [200] * 6
        assert len({r.headers["X-Image-Id"] for r in responses}) == 1
        db.session.expire_all()
        assert db.session.query(Generation).count() == 1
        assert db.session.query(LiveCacheEntry).count() == 1
        assert _balance(user.id) == 49


class TestGenerationRateLimit:
    @pytest.fixture
    def app_config(self):
        return {"RATELIMIT_GENERATIONS": "1/hour"}

    def test_a_miss_counts_against_the_generation_budget(self, api):
        assert _live(api, "one").status_code == 200
        refused = _live(api, "two")
        assert refused.status_code == 429
        assert refused.get_json()["error"]["code"] == "RATE_LIMITED"
        assert refused.headers["X-RateLimit-Limit"] == "1"
        assert "Retry-After" in refused.headers
        assert _live(api, "one").headers["X-Cache-Status"] == "HIT"
        assert db.session.query(Generation).count() == 1


class TestTimeout:
    @pytest.fixture
    def app_config(self):
        return {"LOCAL_PROVIDER_DELAY_MS": 2500, "LIVE_WAIT_SECONDS": 1}

    def test_a_slow_miss_is_504_and_the_generation_is_reused_later(self, api, user):
        slow = _live(api, "slow fox")
        assert slow.status_code == 504
        assert slow.get_json()["error"]["code"] == "TIMEOUT"
        gen_id = slow.headers["X-Generation-Id"]
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Generation, gen_id).status == "success":
                break
            time.sleep(0.2)
        later = _live(api, "slow fox")
        assert later.status_code == 200
        assert later.headers["X-Generation-Id"] == gen_id
        assert db.session.query(Generation).count() == 1
        assert _balance(user.id) == 49


def test_daily_limit_counts_misses(api, project):
    project.live_daily_limit = 1
    db.session.commit()
    assert _live(api, "first").status_code == 200
    assert _live(api, "second").status_code == 429
    assert _live(api, "first").status_code == 200


def test_no_credits_is_402_and_nothing_is_queued(api, user):
    user.credits_monthly = 0
    user.credits_purchased = 0
    db.session.commit()
    response = _live(api, "costly")
    assert response.status_code == 402
    assert response.get_json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert db.session.query(Generation).count() == 0
