"""On the embedded default, SQLite has one writer at a time: a request that cannot get the
database within its busy timeout answers 503 with Retry-After (retry), not a 500 (a bug)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests import factories


@pytest.fixture
def app_config(backend):
    if backend != "sqlite":
        pytest.skip("SQLite's lock")
    return {"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 0.2}}}  # not 5 s


@contextmanager
def _held_by_another_process(app) -> Iterator[None]:
    """SQLite's write lock, held by an exclusive transaction of another connection."""
    holder = sqlite3.connect(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        holder.rollback()
        holder.close()


def test_a_locked_database_is_a_503_to_retry(app, user, project):
    api = factories.ApiClient(app.test_client(), factories.make_key(user, project).plaintext)
    assert api.get("/api/v1/project").status_code == 200

    with _held_by_another_process(app):
        response = api.get("/api/v1/project")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"
    assert api.get("/api/v1/project").status_code == 200  # and once it is released
