"""Shared fixtures: an app per test on SQLite and (when reachable) PostgreSQL.

`app` is parametrised over the database backends: every test that uses it runs once on the
embedded default (SQLite) and once on PostgreSQL. On CI (CI=true) PostgreSQL must be reachable.
Each backend gets one database per test session; rows are wiped after every test.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app, queue
from app.extensions import db
from tests import factories

PG_ADMIN_URL = os.environ.get(
    "PICTOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("PICTOR_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _reachable("127.0.0.1", 5432)


def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


def _backends() -> list[str]:
    wanted = os.environ.get("PICTOR_TEST_DB", "all")
    if wanted in ("sqlite", "postgres"):
        return [wanted]
    if postgres_available() or os.environ.get("CI"):
        return ["sqlite", "postgres"]
    return ["sqlite"]


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One database per backend for the whole run, schema created once."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('db') / 'pictor.db'}"}
    pg_name = None
    if "postgres" in _backends():
        pg_name = f"pictor_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        admin.dispose()
        urls["postgres"] = re.sub(r"/[^/]*$", f"/{pg_name}", PG_ADMIN_URL)
    for url in urls.values():
        engine = create_engine(url)
        db.metadata.create_all(engine)
        engine.dispose()
    yield urls
    if pg_name:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        admin.dispose()


def _wipe(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if url.startswith("postgresql"):
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
    engine.dispose()


def make_config(tmp_path: Path, database_url: str, **overrides: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STORAGE_BACKEND": "local",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "REDIS_URL": None,
        "IMAGE_PROVIDER": "local",
        "GEMINI_API_KEY": None,
        "LOCAL_PROVIDER_DELAY_MS": 0,
        "WEBHOOK_ALLOW_PRIVATE": True,
        "CRON_SECRET": "test-cron-secret",
        "PUBLIC_BASE_URL": None,
        "SERVER_NAME": None,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    config.update(overrides)
    return config


class FreshContextClient(FlaskClient):
    """Each request runs in its own app context, as in production.

    The test holds an app context for its factories; without this, requests would reuse it and
    share `g` and the database session with the test (and with each other).
    """

    def open(self, *args: Any, **kwargs: Any):  # noqa: ANN201
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a module or test to change settings: `app_config.update(...)`."""
    return {}


@pytest.fixture
def app(backend: str, database_urls: dict[str, str], tmp_path: Path, app_config: dict[str, Any]):
    url = database_urls[backend]
    application = create_app(make_config(tmp_path, url, **app_config))
    application.test_client_class = FreshContextClient
    with application.app_context():
        yield application
        queue.stop(application)  # the embedded worker thread and server, if they started
        db.session.remove()
        db.engine.dispose()
    _wipe(url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def user(app):
    return factories.make_user()


@pytest.fixture
def project(user):
    return factories.first_project(user)


@pytest.fixture
def api(app, user, project):
    """A JSON client authenticated with a fresh API key of `project`."""
    return factories.ApiClient(app.test_client(), factories.make_key(user, project).plaintext)


@pytest.fixture
def auth(client):
    """Sign in through the real login form (CSRF token included)."""
    return factories.AuthActions(client)


@pytest.fixture
def redis_url() -> str:
    """A real Redis database for this test (flushed before use); skipped when not running."""
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail("Redis must be reachable on CI")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    import redis

    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    return REDIS_TEST_URL


@pytest.fixture
def shared(redis_url):
    """A client of that Redis: what every process of an installation shares."""
    import redis

    return redis.Redis.from_url(redis_url)
