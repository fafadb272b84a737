"""Real workers: `flask --app wsgi worker` processes on real Redis and PostgreSQL.

Nothing is lost: a generation whose work-horse or whole worker is killed with SIGKILL ends
`failed` with WORKER_LOST and exactly one refund, within 2 minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation, Image
from app.queue import CRON_LEADER_KEY
from app.services import credits, generations

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


@pytest.fixture
def only_postgres(backend):
    if backend != "postgres":
        pytest.skip("separate worker processes are tested on PostgreSQL")


class Workers:
    """Start and stop `flask worker` processes sharing the test's database, Redis and storage."""

    def __init__(self, app, database_url: str, log_dir: Path) -> None:
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GEMINI_", "IMAGE_PROVIDER", "FLASK_"))
        }
        self.env.update(
            DATABASE_URL=database_url,
            REDIS_URL=app.config["REDIS_URL"],
            STORAGE_DIR=app.config["STORAGE_DIR"],
            PICTOR_INSTANCE_DIR=str(log_dir / "worker-instance"),
            SECRET_KEY="test-secret-key",
            IMAGE_PROVIDER="local",
            PYTHONPATH=str(ROOT),
        )
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def burst(self, **env: str) -> None:
        process = self.start("--burst", **env)
        assert process.wait(timeout=180) == 0, self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            for pid in [*_descendants(process.pid), process.pid]:
                _kill(pid, signal.SIGKILL)
            process.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = [int(c) for c in children]
    for child in list(found):
        found += _descendants(child)
    return found


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _process_group(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may contain spaces.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[2])


def _horse(worker_pid: int) -> int:
    """RQ's work-horse: the worker's child that leads its own process group."""
    for child in _descendants(worker_pid):
        try:
            if _process_group(child) == child:
                return child
        except OSError:
            continue
    raise AssertionError("no work-horse running")


def _dead(pid: int) -> bool:
    """Exited (a zombie until its parent reaps it: its pipes closed) or gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _horse_or_none(worker_pid: int) -> int | None:
    try:
        return _horse(worker_pid)
    except AssertionError:
        return None


@pytest.fixture
def workers(app, only_postgres, database_urls, tmp_path) -> Iterator[Workers]:
    pool = Workers(app, database_urls["postgres"], tmp_path)
    yield pool
    pool.stop_all()


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def _status(generation_id: str) -> str:
    db.session.expire_all()
    status = db.session.scalar(select(Generation.status).where(Generation.id == generation_id))
    db.session.commit()
    return status


def _refunds(generation_id: str) -> int:
    return db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation_id
        )
    )


def test_worker_process_runs_queued_generations_to_success(api, user, workers):
    ids = [
        api.post(
            "/api/v1/generations", json={"prompt": f"worker {i}", "aspectRatio": ratio}
        ).get_json()["data"]["id"]
        for i, ratio in enumerate(("1:1", "16:9", "9:16"))
    ]
    assert [_status(i) for i in ids] == ["pending"] * 3
    # Polled (and so remembered by this process) before the worker runs them: the work-horse's
    # commits must replace each generation's epoch for the next poll to see them.
    polled = [api.get(f"/api/v1/generations/{i}").get_json()["data"]["status"] for i in ids]
    assert polled == ["pending"] * 3
    workers.burst()
    for generation_id in ids:
        data = api.get(f"/api/v1/generations/{generation_id}").get_json()["data"]
        assert data["status"] == "success", workers.logs()
        assert data["stage"] == "done" and data["processingMs"] is not None
        assert api.client.get(data["outputImage"]["url"]).status_code == 200
    assert db.session.scalar(select(func.count()).select_from(Image)) == 3
    assert credits.balance(user.id) == 47 and credits.ledger_consistent(user.id)


def test_events_stream_across_processes_ends_with_success(api, workers):
    generation_id = api.post(
        "/api/v1/generations", json={"prompt": "watched from afar"}
    ).get_json()["data"]["id"]
    workers.start(LOCAL_PROVIDER_DELAY_MS="1500")
    response = api.get(f"/api/v1/generations/{generation_id}/events")
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.get_data(as_text=True).splitlines()
        if line.startswith("data: ")
    ]
    stages = [(e["status"], e["stage"]) for e in events]
    assert stages[-1] == ("success", "done"), workers.logs()
    assert ("processing", "generating") in stages  # seen live, published by the worker


def test_prefer_wait_sees_a_separate_worker_finish(api, workers):
    workers.start()
    response = api.post(
        "/api/v1/generations", json={"prompt": "quick"}, headers={"Prefer": "wait=60"}
    )
    assert response.status_code == 201, workers.logs()
    assert response.get_json()["data"]["status"] == "success"


def test_one_work_horse_serves_many_jobs_and_a_dead_one_is_replaced(api, workers):
    worker = workers.start()

    def generate(prompt: str) -> str:
        response = api.post(
            "/api/v1/generations", json={"prompt": prompt}, headers={"Prefer": "wait=60"}
        )
        assert response.status_code == 201, workers.logs()
        return response.get_json()["data"]["status"]

    assert generate("first") == "success"
    horse = _horse(worker.pid)
    assert generate("second") == "success"
    assert _horse(worker.pid) == horse  # not a fork per job
    os.kill(horse, signal.SIGKILL)  # dies between jobs
    # Dead, not just signalled: a job handed over in between would die with it (WORKER_LOST).
    _wait_until(lambda: _dead(horse), 10, "the horse's death")
    assert generate("third") == "success", workers.logs()
    assert _horse(worker.pid) != horse
    assert worker.poll() is None


def test_a_work_horse_is_replaced_after_its_share_of_jobs(api, workers, redis_url):
    """Whatever a horse leaks stays bounded: after WORKER_HORSE_JOBS jobs it is retired, and
    its successor serves the next ones."""
    # Another process leads the periodic jobs: the horses run only this test's generations
    # (a periodic job counts towards a horse's share like any other).
    Redis.from_url(redis_url).set(CRON_LEADER_KEY, "another-worker", ex=600)
    worker = workers.start(WORKER_HORSE_JOBS="2")

    def generate(prompt: str) -> None:
        response = api.post(
            "/api/v1/generations", json={"prompt": prompt}, headers={"Prefer": "wait=60"}
        )
        assert response.get_json()["data"]["status"] == "success", workers.logs()

    generate("one")
    first = _horse(worker.pid)
    generate("two")  # its second job: retired once it has reported the job done
    _wait_until(lambda: _horse_or_none(worker.pid) not in (None, first), 30, "a new horse")
    second = _horse(worker.pid)
    generate("three")
    assert _horse(worker.pid) == second  # one job into its share
    assert worker.poll() is None


def test_a_job_that_times_out_is_refunded_and_the_next_one_runs_in_a_new_horse(
    app, api, user, workers
):
    worker = workers.start(LOCAL_PROVIDER_DELAY_MS="2500")
    _wait_until(lambda: _horse_or_none(worker.pid) is not None, 60, "the work-horse")
    first_horse = _horse(worker.pid)
    app.config["JOB_TIMEOUT_SECONDS"] = 1  # read when the job is queued
    slow = api.post("/api/v1/generations", json={"prompt": "too slow"}).get_json()["data"]["id"]
    _wait_until(lambda: _status(slow) == "failed", 60, "the timeout")
    app.config["JOB_TIMEOUT_SECONDS"] = 60
    response = api.post(
        "/api/v1/generations", json={"prompt": "in time"}, headers={"Prefer": "wait=60"}
    )
    assert response.get_json()["data"]["status"] == "success", workers.logs()
    timed_out = generations.get_generation(api_project_id(api), slow)
    assert timed_out.error_code == "TIMEOUT" and _refunds(slow) == 1
    assert credits.balance(user.id) == 49 and credits.ledger_consistent(user.id)
    # The interrupted job may have left the horse's state half-done: it was replaced.
    assert _horse(worker.pid) != first_horse
    assert worker.poll() is None


@pytest.mark.slow
def test_killed_work_horse_ends_worker_lost_with_one_refund(api, user, workers):
    generation_id = api.post("/api/v1/generations", json={"prompt": "doomed"}).get_json()["data"][
        "id"
    ]
    worker = workers.start(LOCAL_PROVIDER_DELAY_MS="120000")
    _wait_until(lambda: _status(generation_id) == "processing", 60, "processing")
    killed = _horse(worker.pid)
    os.kill(killed, signal.SIGKILL)
    took = _wait_until(lambda: _status(generation_id) == "failed", 120, "WORKER_LOST")
    assert took < 30  # the work-horse-killed hook, not the sweeper
    # The next horse is forked at once (before RQ's retry of the job, 2 s later, needs one).
    _wait_until(lambda: _horse_or_none(worker.pid) not in (None, killed), 1.5, "a new horse")
    generation = generations.get_generation(api_project_id(api), generation_id)
    assert generation.error_code == "WORKER_LOST"
    assert _refunds(generation_id) == 1
    assert credits.balance(user.id) == 50 and credits.ledger_consistent(user.id)
    assert worker.poll() is None  # the worker itself carries on


@pytest.mark.slow
def test_killed_worker_ends_worker_lost_with_one_refund_within_two_minutes(api, user, workers):
    generation_id = api.post("/api/v1/generations", json={"prompt": "orphan"}).get_json()["data"][
        "id"
    ]
    worker = workers.start(LOCAL_PROVIDER_DELAY_MS="600000")
    _wait_until(lambda: _status(generation_id) == "processing", 60, "processing")
    killed_at = time.monotonic()
    for pid in [*_descendants(worker.pid), worker.pid]:
        _kill(pid, signal.SIGKILL)
    worker.wait(timeout=10)
    workers.start()  # a fresh worker (a restart); nobody else runs RQ's abandoned-job sweep
    _wait_until(lambda: _status(generation_id) == "failed", 120, "the sweeper")
    assert time.monotonic() - killed_at < 120
    generation = generations.get_generation(api_project_id(api), generation_id)
    assert (generation.error_code, generation.status) == ("WORKER_LOST", "failed")
    assert _refunds(generation_id) == 1
    assert credits.balance(user.id) == 50 and credits.ledger_consistent(user.id)


def api_project_id(api) -> str:
    return api.get("/api/v1/project").get_json()["data"]["id"]
