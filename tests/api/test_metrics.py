"""GET /metrics: Prometheus text format, `pictor_` names, bearer token when configured."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from app.extensions import db
from app.models import Generation
from app.services import credits


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape, keyed by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        assert family.name.startswith("pictor_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_served(samples, route: str, method: str = "GET", status: str = "200") -> float:
    key = ("pictor_http_requests_total", (("method", method), ("route", route), ("status", status)))
    return samples.get(key, 0.0)


def test_requests_are_counted_and_timed_by_route_method_and_status(client, api):
    before = scrape(client)
    client.get("/health")
    client.get("/health")
    api.get("/api/v1/account")
    after = scrape(client)

    assert requests_served(after, "ops.health") == requests_served(before, "ops.health") + 2
    assert requests_served(after, "api.get_account") == (
        requests_served(before, "api.get_account") + 1
    )
    timed = (
        "pictor_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "ops.health"), ("status", "200")),
    )
    assert after[timed] == before.get(timed, 0) + 2


def test_paths_become_route_names_so_ids_in_urls_add_no_series(client, api):
    before = scrape(client)
    api.get("/api/v1/generations/0b6c4f1e-4c3b-4d7e-9a55-2f1f3f0e8c11")
    client.get("/no-such-page/1")
    client.get("/no-such-page/2")
    after = scrape(client)

    labels = {dict(key[1]).get("route", "") for key in after}
    assert not any(label.startswith("/") for label in labels)
    assert requests_served(after, "unmatched", status="404") >= (
        requests_served(before, "unmatched", status="404") + 2
    )


def _generation(project, user, status: str, provider_ms: int | None) -> Generation:
    return Generation(
        project_id=project.id,
        user_id=user.id,
        prompt="a lighthouse",
        aspect_ratio="1:1",
        model="local-test",
        status=status,
        provider_ms=provider_ms,
    )


def test_generations_by_status_and_provider_latency_come_from_the_database(client, user, project):
    db.session.add_all(
        [
            _generation(project, user, "success", 800),
            _generation(project, user, "success", 3000),
            _generation(project, user, "failed", None),
            _generation(project, user, "pending", None),
        ]
    )
    db.session.commit()
    samples = scrape(client)

    def generations(status: str) -> float:
        return samples[("pictor_generations", (("status", status),))]

    assert [generations(s) for s in ("pending", "processing", "success", "failed")] == [1, 0, 2, 1]
    assert generations("cancelled") == 0

    def latency(suffix: str, le: str | None = None) -> float:
        labels = (("le", le), ("model", "local-test")) if le else (("model", "local-test"),)
        return samples[(f"pictor_provider_latency_seconds_{suffix}", labels)]

    assert latency("bucket", "0.5") == 0
    assert latency("bucket", "1.0") == 1
    assert latency("bucket", "5.0") == 2
    assert latency("bucket", "+Inf") == 2
    assert latency("count") == 2
    assert latency("sum") == pytest.approx(3.8)


def test_credits_spent_counts_usage_net_of_refunds(client, user):
    for generation_id in ("g-1", "g-2", "g-3"):
        credits.debit(user.id, 2, generation_id=generation_id)
    db.session.commit()
    credits.refund("g-2")
    credits.add(user.id, 100, "grant", note="not spending")

    assert scrape(client)[("pictor_credits_spent_total", ())] == 4


def test_dependencies_read_at_scrape_are_reported_up(client):
    samples = scrape(client)
    assert samples[("pictor_dependency_up", (("dependency", "database"),))] == 1
    assert samples[("pictor_dependency_up", (("dependency", "queue"),))] == 1
    assert ("pictor_queue_depth", (("queue", "generations"),)) in samples


class TestWithRedis:
    @pytest.fixture
    def app_config(self, redis_url):
        return {"REDIS_URL": redis_url}

    def test_queue_depth_is_read_from_redis_per_queue(self, client):
        from app.queue import get_redis

        waiting = Queue("generations", connection=get_redis())
        waiting.enqueue_call("builtins.print", args=("one",))
        waiting.enqueue_call("builtins.print", args=("two",))

        samples = scrape(client)
        assert samples[("pictor_queue_depth", (("queue", "generations"),))] == 2
        assert samples[("pictor_queue_depth", (("queue", "maintenance"),))] == 0
        assert samples[("pictor_workers", ())] == 0


@pytest.mark.parametrize("app_config", [{"REDIS_URL": "redis://127.0.0.1:1/0"}])
def test_redis_down_drops_queue_metrics_but_the_scrape_still_answers(client):
    samples = scrape(client)
    assert samples[("pictor_dependency_up", (("dependency", "queue"),))] == 0
    assert not any(name == "pictor_queue_depth" for name, _ in samples)
    assert samples[("pictor_generations", (("status", "pending"),))] == 0


TOKEN = "metrics-token-for-tests"


@pytest.mark.parametrize("app_config", [{"METRICS_TOKEN": TOKEN}])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", TOKEN]
)
def test_with_a_token_configured_a_missing_or_wrong_token_gets_401(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "pictor_" not in response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"METRICS_TOKEN": TOKEN}])
def test_with_a_token_configured_the_right_bearer_token_gets_the_metrics(client):
    samples = scrape(client, Authorization=f"Bearer {TOKEN}")
    assert ("pictor_generations", (("status", "success"),)) in samples


def test_without_a_token_configured_metrics_are_open(client):
    assert client.get("/metrics").status_code == 200


def test_a_finished_generation_shows_in_status_latency_and_credits(client, api):
    response = api.post(
        "/api/v1/generations", json={"prompt": "a kite"}, headers={"Prefer": "wait=30"}
    )
    assert response.status_code == 201
    model = response.get_json()["data"]["model"]

    samples = scrape(client)
    assert samples[("pictor_generations", (("status", "success"),))] == 1
    count = ("pictor_provider_latency_seconds_count", (("model", model),))
    assert samples[count] == 1
    assert samples[("pictor_credits_spent_total", ())] == 1
