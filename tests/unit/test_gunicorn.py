"""gunicorn.conf.py really serves the app: health, JSON access log, multiprocess metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from app.extensions import db
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _wait_until_up(base: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited: {server.communicate()[1]}")
        try:
            requests.get(f"{base}/metrics", timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.1)
    pytest.fail("gunicorn did not answer in time")


def _health_requests_counted(base: str) -> float:
    body = requests.get(f"{base}/metrics", timeout=10).text
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "pictor_http_requests_total" and sample.labels == {
                "route": "ops.health",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gunicorn_serves_health_and_writes_a_json_access_log(tmp_path, redis_url):
    database = f"sqlite:///{tmp_path / 'pictor.db'}"
    engine = create_engine(database)
    db.metadata.create_all(engine)
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PICTOR_ENV"}
    env.update(
        PYTHONPATH=str(ROOT),
        REDIS_URL=redis_url,  # several processes: the production shape needs a real Redis
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
        DATABASE_URL=database,
        PICTOR_INSTANCE_DIR=str(tmp_path / "instance"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        PICTOR_LOG_FORMAT="json",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server)
        traced = requests.get(f"{base}/health", headers={"X-Request-Id": "gunicorn-0001"})
        assert traced.status_code == 200
        assert traced.json()["status"] == "ok"
        assert traced.headers["X-Request-Id"] == "gunicorn-0001"
        for _ in range(5):
            assert requests.get(f"{base}/health", timeout=10).status_code == 200
        # Two worker processes served these; the scrape adds up both from their files.
        assert _health_requests_counted(base) == 6
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=60)

    assert server.returncode == 0, stderr
    access = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    (line,) = [entry for entry in access if entry["request_id"] == "gunicorn-0001"]
    assert line["method"] == "GET"
    assert line["path"] == "/health"
    assert line["status"] == 200
    assert line["remote"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)
    assert line["time"].endswith("Z")
    # gunicorn's own messages follow PICTOR_LOG_FORMAT=json too.
    errors = [json.loads(entry) for entry in stderr.splitlines() if entry.strip()]
    assert any(entry["message"].startswith("Listening at") for entry in errors)
