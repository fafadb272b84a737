"""`flask --app wsgi doctor` against real databases migrated by the real `db upgrade`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq import Worker
from rq.scheduler import RQScheduler
from sqlalchemy import create_engine, text, update

from app import create_app
from app.extensions import db
from app.models import User
from jobs.worker import Cron
from tests import factories
from tests.conftest import PG_ADMIN_URL, _wipe, make_config
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CHECK_NAMES = ["database", "schema", "redis", "storage", "workers", "scheduler", "ledger"]


def _create_database(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / f'{uuid.uuid4().hex}.db'}", None
    name = f"pictor_doctor_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL), name


def _drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _db_upgrade(url: str, instance: Path) -> None:
    """What an operator runs: `flask --app wsgi db upgrade`, in its own process."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PICTOR_ENV")}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=url, PICTOR_INSTANCE_DIR=str(instance))
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Iterator:
    """One database per backend for this module, brought to head by `db upgrade`."""
    made: dict[str, str] = {}
    pg_names: list[str] = []

    def get(backend: str) -> str:
        if backend not in made:
            url, pg_name = _create_database(backend, tmp_path_factory.mktemp("doctor-db"))
            if pg_name:
                pg_names.append(pg_name)
            _db_upgrade(url, tmp_path_factory.mktemp("instance"))
            made[backend] = url
        return made[backend]

    yield get
    for name in pg_names:
        _drop_database(name)


@contextmanager
def doctor_app(url: str, tmp_path: Path, **overrides) -> Iterator[Flask]:
    app = create_app(make_config(tmp_path, url, **overrides))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def run_doctor(app: Flask) -> tuple[int, dict[str, tuple[str, str]]]:
    result = app.test_cli_runner().invoke(args=["doctor"])
    lines = result.stdout.strip().splitlines()
    parsed = {}
    for line in lines:
        status, name, detail = line.split(None, 2)
        parsed[name] = (status, detail)
    assert list(parsed) == CHECK_NAMES, result.output
    return result.exit_code, parsed


@pytest.fixture
def migrated_url(backend, migrated) -> Iterator[str]:
    url = migrated(backend)
    yield url
    _wipe(url)


def test_a_healthy_embedded_deployment_is_all_ok(migrated_url, tmp_path):
    with doctor_app(migrated_url, tmp_path) as app:
        factories.make_user()
        code, checks = run_doctor(app)
    assert code == 0
    assert {name: status for name, (status, _) in checks.items()} == dict.fromkeys(
        CHECK_NAMES, "OK"
    )
    assert checks["schema"][1].startswith("at head ")
    assert checks["ledger"][1] == "1 users, every balance equals the sum of its ledger"


def test_a_database_without_the_schema_fails(backend, tmp_path):
    url, pg_name = _create_database(backend, tmp_path)
    try:
        with doctor_app(url, tmp_path) as app:
            code, checks = run_doctor(app)
    finally:
        if pg_name:
            _drop_database(pg_name)
    assert code == 1
    assert checks["database"][0] == "OK"
    assert checks["schema"][0] == "FAIL"
    assert "db upgrade" in checks["schema"][1]


def test_a_balance_changed_without_a_ledger_row_fails_the_ledger_check(migrated_url, tmp_path):
    with doctor_app(migrated_url, tmp_path) as app:
        factories.make_user("honest@example.com")
        tampered = factories.make_user("tampered@example.com")
        db.session.execute(
            update(User)
            .where(User.id == tampered.id)
            .values(credits_purchased=User.credits_purchased + 7)
        )
        db.session.commit()
        code, checks = run_doctor(app)
    assert code == 1
    status, detail = checks["ledger"]
    assert status == "FAIL"
    assert detail.startswith("1 of 2 users")
    assert "tampered@example.com balance 57 vs ledger 50" in detail
    assert "honest@" not in detail


def test_unwritable_storage_fails(migrated_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with doctor_app(migrated_url, tmp_path, STORAGE_DIR=str(blocker / "storage")) as app:
        code, checks = run_doctor(app)
    assert code == 1
    assert checks["storage"][0] == "FAIL"


def test_unreachable_redis_fails(migrated_url, tmp_path):
    with doctor_app(migrated_url, tmp_path, REDIS_URL="redis://127.0.0.1:1/0") as app:
        code, checks = run_doctor(app)
    assert code == 1
    assert checks["redis"][0] == "FAIL"
    assert checks["workers"][0] == "FAIL"


def test_redis_mode_warns_without_workers_and_scheduler_then_sees_them(
    migrated_url, tmp_path, redis_url
):
    with doctor_app(migrated_url, tmp_path, REDIS_URL=redis_url) as app:
        code, checks = run_doctor(app)
        assert code == 0
        assert checks["redis"] == ("OK", "reachable, maxmemory-policy noeviction")
        assert checks["workers"][0] == "WARN"
        assert checks["scheduler"][0] == "WARN"

        conn = redis.Redis.from_url(redis_url)
        worker = Worker(["generations", "maintenance"], connection=conn)
        worker.register_birth()
        scheduler = RQScheduler(["generations", "maintenance"], connection=conn)
        try:
            assert scheduler.acquire_locks() == {"generations", "maintenance"}
            code, checks = run_doctor(app)
            assert checks["scheduler"] == ("WARN", checks["scheduler"][1])
            assert checks["scheduler"][1].startswith("no process leads the periodic jobs")

            Cron(conn, app.config).tick()  # what a running worker does every second
            code, checks = run_doctor(app)
        finally:
            scheduler.release_locks()
            worker.register_death()
    assert code == 0
    assert checks["workers"] == ("OK", f"1 alive on {worker.hostname}")
    assert checks["scheduler"] == (
        "OK",
        "running for maintenance, generations; periodic jobs led",
    )


@pytest.fixture
def evicting_redis(tmp_path) -> Iterator[str]:
    """A private redis-server whose maxmemory-policy would evict queued jobs."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--maxmemory-policy", "allkeys-lru", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_redis_that_may_evict_jobs_is_a_warning(migrated_url, tmp_path, evicting_redis):
    with doctor_app(migrated_url, tmp_path, REDIS_URL=evicting_redis) as app:
        code, checks = run_doctor(app)
    assert code == 0
    status, detail = checks["redis"]
    assert status == "WARN"
    assert "allkeys-lru" in detail and "noeviction" in detail
