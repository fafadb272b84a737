"""Rate limits (API.md §3): per key, two budgets, headers on every /api/v1 response, 429."""

from __future__ import annotations

import pytest

from app import ratelimit
from tests import factories, servers


@pytest.fixture(params=["memory", "redis"])
def app_config(request):
    """Every test counts in process memory and in Redis (one script per request there)."""
    storage = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    return {
        "RATELIMIT_DEFAULT": "5/minute",
        "RATELIMIT_GENERATIONS": "2/minute",
        "RATELIMIT_STORAGE_URI": storage,
    }


def _limits(response):
    return (
        response.headers["X-RateLimit-Limit"],
        response.headers["X-RateLimit-Remaining"],
        int(response.headers["X-RateLimit-Reset"]),
    )


def test_headers_count_down_with_seconds_until_reset(api):
    first = api.get("/api/v1/project")
    second = api.get("/api/v1/account")
    assert _limits(first)[:2] == ("5", "4")
    assert _limits(second)[:2] == ("5", "3")
    assert 0 < _limits(second)[2] <= 60


def test_every_api_response_carries_the_headers_errors_included(api, client):
    responses = {
        "ok": api.get("/api/v1/project"),
        "validation": api.get("/api/v1/images?limit=-1"),
        "not found": api.get("/api/v1/images/nope"),
        "unknown route": api.get("/api/v1/no-such-thing"),
        "wrong method": api.delete("/api/v1/account"),
        "no key": client.get("/api/v1/project"),
        "bad key": client.get("/api/v1/project", headers={"X-API-Key": "pk_" + "x" * 40}),
    }
    for name, response in responses.items():
        assert "X-RateLimit-Limit" in response.headers, name
        assert "X-RateLimit-Remaining" in response.headers, name
        assert "X-RateLimit-Reset" in response.headers, name


def test_past_the_limit_is_429_with_retry_after(api):
    for _ in range(5):
        assert api.get("/api/v1/project").status_code == 200
    refused = api.get("/api/v1/project")
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"] == {"limit": 5, "budget": "default"}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_each_key_has_its_own_budget(api, client, user, project):
    other_key = factories.make_key(user, project, "second").plaintext
    for _ in range(5):
        api.get("/api/v1/project")
    assert api.get("/api/v1/project").status_code == 429
    other = client.get("/api/v1/project", headers={"X-API-Key": other_key})
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Remaining"] == "4"


def test_session_callers_are_counted_per_user(client, auth, user):
    auth.login(user.email)
    assert client.get("/api/v1/project").headers["X-RateLimit-Remaining"] == "4"
    assert client.get("/api/v1/account").headers["X-RateLimit-Remaining"] == "3"


def test_generation_budget_is_separate_from_the_default_one(app, api, user, project):
    key = factories.make_key(user, project, "gen").key
    identity = f"key:{key.id}"
    with app.test_request_context("/api/v1/generations", method="POST"):
        assert ratelimit.consume(ratelimit.GENERATION_BUDGET, identity).remaining == 1
        assert ratelimit.consume(ratelimit.GENERATION_BUDGET, identity).remaining == 0
        with pytest.raises(ratelimit.RateLimited):
            ratelimit.consume(ratelimit.GENERATION_BUDGET, identity)
    headers = {"X-API-Key": api.key}
    assert api.client.get("/api/v1/project", headers=headers).status_code == 200


def test_generation_creating_endpoints_share_one_budget():
    for endpoint in (
        "api.create_generation",
        "api.regenerate_generation",
        "api.retry_generation",
        "api.upscale_image",
    ):
        assert ratelimit.budget_for(endpoint) == ratelimit.GENERATION_BUDGET
    for endpoint in ("api.list_generations", "api.get_image", None):
        assert ratelimit.budget_for(endpoint) == ratelimit.DEFAULT_BUDGET


def test_pages_outside_the_api_are_not_limited(client):
    for _ in range(8):
        response = client.get("/login")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers


# --- across processes ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
def test_the_limit_is_shared_by_two_gunicorn_workers(app, user, project, redis_url, tmp_path):
    key = factories.make_key(user, project).plaintext
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    settings = {"RATELIMIT_DEFAULT": "10/minute"}
    with servers.two_gunicorn_workers(database, redis_url, tmp_path, **settings) as gunicorn:
        url = gunicorn.url("/api/v1/project")
        with gunicorn.hold_one_worker("/api/v1/project") as held:
            first = [servers.get_status(url, key) for _ in range(6)]
            reply = held.finish(key)
        rest = [servers.get_status(url, key) for _ in range(6)]

        assert first == [200] * 6
        assert reply.startswith(b"HTTP/1.1 200")
        # The held worker counted nothing itself, yet it sees the other worker's six requests.
        assert b"X-RateLimit-Remaining: 3\r\n" in reply
        assert rest == [200] * 3 + [429] * 3
        assert len(gunicorn.worker_pids()) == 2, "both workers must have served requests"
