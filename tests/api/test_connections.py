"""Pooled database connections the server has closed are replaced, not served to a request."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL


def _terminate_backends(database: str) -> None:
    """What a database restart or an idle-session timeout does to the app's pooled connections."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    others = "FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(f"SELECT count(pg_terminate_backend(pid)) {others}"),
                {"db": database},
            ).scalar_one()
            deadline = time.monotonic() + 10
            while conn.execute(text(f"SELECT count(*) {others}"), {"db": database}).scalar_one():
                assert time.monotonic() < deadline, "the backends did not go away"
                time.sleep(0.05)
    finally:
        admin.dispose()
    assert killed >= 1


def test_requests_succeed_after_the_server_closed_the_pooled_connections(app, backend, api):
    if backend != "postgres":
        pytest.skip("closing connections from the server side is a PostgreSQL test")
    for _ in range(3):
        assert api.get("/api/v1/project").status_code == 200
    _terminate_backends(app.config["SQLALCHEMY_DATABASE_URI"].rsplit("/", 1)[1])

    for path in ("/api/v1/project", "/api/v1/images", "/api/v1/generations"):
        assert api.get(path).status_code == 200, path
