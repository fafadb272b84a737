"""Queue health on /admin comes from RQ, and says "unavailable" when Redis is down."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, Worker

from app.queue import GENERATION_QUEUE, MAINTENANCE_QUEUE
from tests import factories


@pytest.fixture
def app_config(request):
    url = request.param
    if url == "real":
        url = request.getfixturevalue("redis_url")
    return {"REDIS_URL": url}


@pytest.fixture
def as_admin(client, auth):
    admin = factories.make_user("queue.admin@example.com", is_admin=True)
    auth.login(admin.email)
    return client


def stat(html: str, queue: str) -> str:
    return html.split(f'data-queue="{queue}"', 1)[1].split("</div>", 1)[0]


@pytest.mark.parametrize("app_config", ["real"], indirect=True)
def test_queue_health_shows_real_rq_counts_and_live_workers(as_admin, app_config):
    conn = Redis.from_url(app_config["REDIS_URL"])
    generations = Queue(GENERATION_QUEUE, connection=conn)
    generations.enqueue("os.getcwd")
    generations.enqueue("os.getcwd")
    maintenance = Queue(MAINTENANCE_QUEUE, connection=conn)
    broken = maintenance.enqueue("os.getcwd")
    maintenance.remove(broken)
    maintenance.failed_job_registry.add(broken, ttl=600)
    worker = Worker([generations], connection=conn, name="worker-test-1")
    worker.register_birth()
    try:
        html = as_admin.get("/admin").get_data(as_text=True)
        fragment = as_admin.get("/admin/queue", headers={"HX-Request": "true"})
    finally:
        worker.register_death()
        conn.close()

    assert ">2 <" in stat(html, GENERATION_QUEUE).replace("\n", "")
    assert '<span data-count="failed" class="text-danger">1</span>' in stat(html, MAINTENANCE_QUEUE)
    assert 'data-workers="1"' in html and "worker-test-1" in html
    assert fragment.status_code == 200 and "worker-test-1" in fragment.get_data(as_text=True)


@pytest.mark.parametrize("app_config", ["redis://127.0.0.1:1/0"], indirect=True)
def test_unreachable_redis_shows_unavailable_instead_of_crashing(as_admin):
    response = as_admin.get("/admin")
    assert response.status_code == 200
    assert "Queue unavailable" in response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [None], indirect=True)
def test_the_embedded_queue_reports_no_worker(as_admin):
    html = as_admin.get("/admin").get_data(as_text=True)
    assert 'data-workers="0"' in html and "No worker is running" in html
