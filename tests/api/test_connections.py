"""Database connections: replaced when the server closed them, reused by a busy process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from app.config import load_config
from app.extensions import db
from tests.api.test_live import cache, public_url
from tests.conftest import PG_ADMIN_URL

THREADS = 8


@pytest.fixture
def app_config(backend, database_urls):
    """The pool a web process of THREADS threads gets from its environment."""
    env = {"DATABASE_URL": database_urls[backend], "GUNICORN_THREADS": str(THREADS)}
    return {"SQLALCHEMY_ENGINE_OPTIONS": load_config(env)["SQLALCHEMY_ENGINE_OPTIONS"]}


def _sessions(database: str) -> int:
    """Connections the server has accepted for this database so far."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(
                text("SELECT sessions FROM pg_stat_database WHERE datname = :db"), {"db": database}
            ).scalar_one()
    finally:
        admin.dispose()


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


def test_requests_succeed_after_the_server_closed_the_pooled_connections(
    app, backend, api, project
):
    if backend != "postgres":
        pytest.skip("closing connections from the server side is a PostgreSQL test")
    cache(project)
    hit_url = public_url(project)
    db.session.rollback()  # the test's own session holds no connection across the kill
    for _ in range(3):
        assert api.get("/api/v1/project").status_code == 200
        assert api.client.get(hit_url).status_code == 200
    _terminate_backends(app.config["SQLALCHEMY_DATABASE_URI"].rsplit("/", 1)[1])

    for path in ("/api/v1/project", "/api/v1/images", "/api/v1/generations"):
        assert api.get(path).status_code == 200, path
    assert api.client.get(hit_url).headers["X-Cache-Status"] == "HIT"


def test_a_busy_process_reuses_its_connections(app, backend, api):
    if backend != "postgres":
        pytest.skip("counts the server's sessions: a PostgreSQL test")
    database = app.config["SQLALCHEMY_DATABASE_URI"].rsplit("/", 1)[1]

    def burst() -> list[int]:
        with ThreadPoolExecutor(THREADS) as pool:
            paths = ["/api/v1/project", "/api/v1/images", "/api/v1/generations"] * 16
            return list(pool.map(lambda path: api.get(path).status_code, paths))

    assert set(burst()) == {200}  # opens up to one connection per thread
    before = _sessions(database)
    assert set(burst()) == {200}
    # Only the admin connection that counts: no request opened one of its own.
    assert _sessions(database) - before <= 1
