"""Redis stopped during traffic, then restarted: the API refuses cleanly, nothing is half charged,
pages keep rendering, and once Redis is back a real worker finishes new submissions."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation
from app.services import credits

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def app_config(private_redis):
    return {"REDIS_URL": private_redis.url}


def _usage_rows() -> int:
    return db.session.scalar(select(func.count()).where(CreditTransaction.type == "usage"))


def test_redis_down_refuses_generations_cleanly_and_recovers(
    api, user, client, auth, private_redis, workers
):
    assert auth.login(user.email).status_code == 303
    private_redis.stop()

    response = api.post("/api/v1/generations", json={"prompt": "while redis is down"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert credits.balance(user.id) == 50 and _usage_rows() == 0
    assert db.session.scalar(select(func.count()).select_from(Generation)) == 0
    assert credits.ledger_consistent(user.id)

    assert client.get("/projects").status_code == 200
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["checks"]["queue"] == "error"

    private_redis.start()
    accepted = api.post("/api/v1/generations", json={"prompt": "after redis is back"})
    assert accepted.status_code == 202, accepted.get_json()
    generation_id = accepted.get_json()["data"]["id"]
    assert client.get("/health").status_code == 200

    workers.burst()
    data = api.get(f"/api/v1/generations/{generation_id}").get_json()["data"]
    assert data["status"] == "success", workers.logs()
    assert credits.balance(user.id) == 49 and credits.ledger_consistent(user.id)
