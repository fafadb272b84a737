"""PostgreSQL restarted under a running app and worker (a private cluster, never the shared one).

The connection pool recovers (app.database drops connections the server closed): the next
request after the restart succeeds. A generation that was processing while the database
bounced ends success or failed with exactly one refund; it is never left stuck.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select

from app.extensions import db
from app.models import CreditTransaction, Generation
from app.services import credits
from tests.api.test_live import cache, public_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def database_urls(private_postgres):
    engine = create_engine(private_postgres.url)
    db.metadata.create_all(engine)
    engine.dispose()
    return {"postgres": private_postgres.url}


@pytest.fixture
def app_config(private_redis):
    return {"REDIS_URL": private_redis.url, "WORKER_LOST_AFTER_SECONDS": 5}


def _status(generation_id: str) -> str:
    """Read and release the connection at once (the test must not hold one across the restart)."""
    status = db.session.scalar(select(Generation.status).where(Generation.id == generation_id))
    db.session.commit()
    return status


def _wait_for(generation_id: str, statuses: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(generation_id)
        if status in statuses:
            return status
        assert time.monotonic() < deadline, f"{generation_id} stuck in {status}"
        time.sleep(0.3)


def test_pool_recovers_and_in_flight_generation_ends_after_a_database_restart(
    api, user, private_postgres, workers
):
    assert api.get("/api/v1/project").status_code == 200
    generation_id = api.post("/api/v1/generations", json={"prompt": "bounced"}).get_json()["data"][
        "id"
    ]
    workers.start(
        LOCAL_PROVIDER_DELAY_MS="3000", SWEEP_INTERVAL_SECONDS="5", WORKER_LOST_AFTER_SECONDS="5"
    )
    _wait_for(generation_id, {"processing"}, 60)

    private_postgres.restart()

    assert api.get("/api/v1/project").status_code == 200
    ended = _wait_for(generation_id, {"success", "failed"}, 120)
    refunds = db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation_id
        )
    )
    if ended == "success":
        assert refunds == 0 and credits.balance(user.id) == 49
    else:
        assert refunds == 1 and credits.balance(user.id) == 50
    assert credits.ledger_consistent(user.id), workers.logs()

    follow_up = api.post("/api/v1/generations", json={"prompt": "after the bounce"})
    assert follow_up.status_code == 202
    assert _wait_for(follow_up.get_json()["data"]["id"], {"success"}, 60) == "success"


def test_database_down_is_a_503_envelope_and_a_page_then_recovers(
    api, client, auth, user, project, private_postgres
):
    auth.login(user.email)
    cache(project)
    assert client.get("/projects").status_code == 200
    assert client.get(public_url(project)).status_code == 200  # a live HIT
    db.session.remove()
    private_postgres.stop()
    try:
        response = api.get("/api/v1/project")
        assert response.status_code == 503, response.data
        assert response.headers["Retry-After"] == "5"
        assert response.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        # A prompt not cached yet needs the database (a cached one this process has served
        # can be answered from Redis and memory).
        miss = client.get(public_url(project, "a prompt never seen"))
        assert miss.status_code == 503, miss.data
        assert miss.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        page = client.get("/projects")
        assert page.status_code == 503
        assert "Temporarily unavailable" in page.get_data(as_text=True)
        assert client.get("/health").status_code == 503
    finally:
        private_postgres.start()
    assert api.get("/api/v1/project").status_code == 200
    assert client.get("/projects").status_code == 200
    assert client.get(public_url(project)).headers["X-Cache-Hit-Count"] == "2"


def test_a_request_whose_connection_dies_under_it_still_ends_cleanly(app, private_postgres):
    # The connection is in a transaction when the server restarts: ending the request's
    # session (the teardown's rollback) must not raise, and the next request gets a new one.
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Generation)) == 0
        private_postgres.restart()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Generation)) == 0
