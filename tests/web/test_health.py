"""GET /health reports each dependency and answers 503 "degraded" when one is down."""

from __future__ import annotations

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import make_config


def test_health_is_ok_with_every_check(client):
    response = client.get("/health")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "queue": "ok", "storage": "ok"}
    assert body["version"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/none",
        "sqlite:////nonexistent-directory/for/pictor/health.db",
    ],
    ids=["postgres-refused", "sqlite-missing-directory"],
)
def test_health_is_degraded_when_the_database_is_unreachable(tmp_path, database_url):
    app = create_app(make_config(tmp_path, database_url))

    with app.app_context():
        response = app.test_client().get("/health")
        db.engine.dispose()

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "error", "queue": "ok", "storage": "ok"}
