"""With a shared Redis, a HIT of a public live URL and a poll of a remembered generation are
answered before Flask builds a request (app/fastpath.py): the same bytes and headers as the
Flask route, counted once in the rate limit and the metrics; anything else reaches Flask."""

from __future__ import annotations

import pytest
from flask import request

from app.api.generations import BODIES_PER_READ
from app.services import api_keys, projects
from tests import factories
from tests.api.test_live import cache, public_url
from tests.api.test_metrics import requests_served, scrape

# What differs from one response to the next whoever answers.
VOLATILE = {"X-Request-Id", "X-RateLimit-Remaining", "X-Cache-Hit-Count", "Date"}


@pytest.fixture
def app_config(redis_url):
    return {"RATELIMIT_STORAGE_URI": redis_url}


@pytest.fixture
def flask_saw(app) -> list[str]:
    """The endpoints of the requests that reached Flask."""
    seen: list[str] = []
    app.before_request(lambda: seen.append(request.endpoint))
    return seen


def _stable(response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name not in VOLATILE}


def _remaining(response) -> int:
    return int(response.headers["X-RateLimit-Remaining"])


def test_a_repeated_poll_gets_the_flask_answer_without_flask(api, project, user, flask_saw):
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"

    first = api.get(path)  # read, answered and remembered by the Flask route
    second = api.get(path)
    third = api.get(path)

    assert flask_saw == ["api.get_generation"]
    assert first.status_code == second.status_code == third.status_code == 200
    assert second.data == first.data
    assert second.get_json()["data"]["outputImage"]["url"].startswith("http://localhost/i/")
    assert _stable(second) == _stable(first)
    assert [_remaining(r) for r in (first, second, third)] == [
        _remaining(first),
        _remaining(first) - 1,
        _remaining(first) - 2,
    ]


def test_the_fast_answer_carries_the_request_id_and_is_counted_in_the_metrics(
    client, api, project, user, flask_saw
):
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    api.get(path)
    before = scrape(client)

    response = api.get(path, headers={"X-Request-Id": "poll-0001-abcdef"})
    fresh = api.get(path)

    assert flask_saw.count("api.get_generation") == 1
    assert response.headers["X-Request-Id"] == "poll-0001-abcdef"
    assert len(fresh.headers["X-Request-Id"]) == 32  # a new one when none is sent
    after = scrape(client)
    assert requests_served(after, "api.get_generation") == (
        requests_served(before, "api.get_generation") + 2
    )


def test_a_poll_from_another_host_is_answered_with_its_own_urls_and_counted_once(
    api, project, user, flask_saw
):
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    first = api.get(path)

    # Counted before Flask, then handed to it: no body was made for this host yet.
    other = api.get(path, headers={"Host": "pictor.example"})
    again = api.get(path, headers={"Host": "pictor.example"})

    assert flask_saw == ["api.get_generation", "api.get_generation"]
    assert other.get_json()["data"]["outputImage"]["url"].startswith("http://pictor.example/i/")
    assert again.data == other.data
    assert [_remaining(other), _remaining(again)] == [_remaining(first) - 1, _remaining(first) - 2]


def test_polls_with_a_cookie_or_a_query_go_to_flask(api, project, user, flask_saw):
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    api.get(path)

    with_query = api.get(path, query_string={"includeDeleted": "true"})
    api.client.set_cookie("theme", "dark")
    with_cookie = api.get(path)

    assert flask_saw == ["api.get_generation"] * 3
    assert with_cookie.status_code == with_query.status_code == 200
    assert with_cookie.data == with_query.data


def test_a_revoked_key_is_refused_by_flask_at_once(api, project, user, flask_saw):
    created = factories.make_key(user, project)
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    headers = {"X-API-Key": created.plaintext}
    assert api.client.get(path, headers=headers).status_code == 200
    assert api.client.get(path, headers=headers).status_code == 200
    assert flask_saw == ["api.get_generation"]

    api_keys.revoke_key(user, created.key.id)

    refused = api.client.get(path, headers=headers)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "UNAUTHORIZED"


def test_a_spent_budget_is_refused_by_flask_and_counted_once(app, api, project, user):
    app.config["RATELIMIT_DEFAULT"] = "3/hour"
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"

    answers = [api.get(path) for _ in range(5)]

    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert [_remaining(r) for r in answers] == [2, 1, 0, 0, 0]
    assert answers[3].get_json()["error"]["code"] == "RATE_LIMITED"
    assert int(answers[3].headers["Retry-After"]) >= 1


def test_a_live_hit_gets_the_flask_answer_without_flask(client, project, flask_saw):
    image = cache(project, hits=3)
    url = public_url(project)

    client.set_cookie("theme", "dark")
    by_flask = client.get(url)  # a cookie: Flask answers
    client.delete_cookie("theme")
    fast = client.get(url)

    assert flask_saw == ["live.live_image"]
    assert fast.status_code == by_flask.status_code == 200
    assert fast.data == by_flask.data
    assert _stable(fast) == _stable(by_flask)
    assert fast.headers["X-Image-Id"] == image.id
    assert [by_flask.headers["X-Cache-Hit-Count"], fast.headers["X-Cache-Hit-Count"]] == ["4", "5"]


def test_live_urls_that_do_not_pass_are_answered_by_flask(client, project, flask_saw):
    cache(project)

    projects.update_settings(project, {"liveAllowedOrigins": ["https://shop.example"]})
    url = public_url(project)

    forged = client.get(public_url(project, sig="0" * 64))
    expired = client.get(public_url(project, exp=1))
    elsewhere = client.get(url, headers={"Origin": "https://evil.example"})
    assert flask_saw == ["live.live_image"] * 3
    allowed = client.get(url, headers={"Origin": "https://shop.example"})

    assert [forged.status_code, expired.status_code, elsewhere.status_code] == [403, 410, 403]
    assert allowed.headers["X-Cache-Status"] == "HIT"
    assert flask_saw == ["live.live_image"] * 3


def test_a_client_that_varies_the_host_makes_no_more_bodies_than_the_bound(
    api, project, user, flask_saw
):
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    for n in range(BODIES_PER_READ + 2):
        api.get(path, headers={"Host": f"h{n}.example"})
    assert len(flask_saw) == BODIES_PER_READ + 2

    kept = api.get(path, headers={"Host": "h0.example"})
    assert len(flask_saw) == BODIES_PER_READ + 2  # its body was kept
    past_the_bound = api.get(path, headers={"Host": f"h{BODIES_PER_READ + 1}.example"})
    assert len(flask_saw) == BODIES_PER_READ + 3  # made again, not kept

    assert kept.get_json()["data"]["outputImage"]["url"].startswith("http://h0.example/")
    url = past_the_bound.get_json()["data"]["outputImage"]["url"]
    assert url.startswith(f"http://h{BODIES_PER_READ + 1}.example/")
