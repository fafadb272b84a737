"""Request ids and structured logs: what an operator reading the logs relies on."""

from __future__ import annotations

import json
import logging
import re

import pytest

from app.config import load_config
from app.observability import bind_request_id, current_request_id

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_response_carries_a_fresh_request_id(client):
    first = client.get("/health")
    second = client.get("/no-such-page")
    assert HEX_ID.fullmatch(first.headers["X-Request-Id"])
    assert HEX_ID.fullmatch(second.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_a_sane_incoming_request_id_is_kept_and_echoed(client, api):
    page = client.get("/health", headers={"X-Request-Id": "lb-7f3a9c21"})
    assert page.headers["X-Request-Id"] == "lb-7f3a9c21"
    uuid_id = "0b6c4f1e-4c3b-4d7e-9a55-2f1f3f0e8c11"
    response = api.get("/api/v1/account", headers={"X-Request-Id": uuid_id})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == uuid_id


@pytest.mark.parametrize(
    "incoming",
    ["short", "has spaces in it", 'quote"injection', "x" * 201, "-starts-with-dash"],
)
def test_an_unsafe_incoming_request_id_is_replaced(client, incoming):
    response = client.get("/health", headers={"X-Request-Id": incoming})
    assert HEX_ID.fullmatch(response.headers["X-Request-Id"])


@pytest.fixture
def app_config(tmp_path):
    # A file where the storage directory should be: the health check fails and logs a warning.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return {"LOG_FORMAT": "json", "STORAGE_DIR": str(blocker / "storage")}


def test_log_lines_of_a_request_are_json_with_its_request_id(client, capsys):
    response = client.get("/health", headers={"X-Request-Id": "trace-health-0001"})
    assert response.status_code == 503

    lines = _json_lines(capsys.readouterr().err)
    warning = next(line for line in lines if line["logger"] == "app.web.ops")
    assert warning["level"] == "WARNING"
    assert warning["request_id"] == "trace-health-0001"
    assert "health check storage failed" in warning["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", warning["time"])


def test_a_job_logs_under_the_request_id_that_enqueued_it(app, capsys):
    log = logging.getLogger("jobs.generate")
    with bind_request_id("req-from-the-api-42"):
        assert current_request_id() == "req-from-the-api-42"
        log.info("generation finished", extra={"generation_id": "g-1", "provider_ms": 812})
    assert current_request_id() is None
    log.info("between jobs")

    finished, between = _json_lines(capsys.readouterr().err)[-2:]
    assert finished == {
        "time": finished["time"],
        "level": "INFO",
        "logger": "jobs.generate",
        "message": "generation finished",
        "request_id": "req-from-the-api-42",
        "generation_id": "g-1",
        "provider_ms": 812,
    }
    assert between["request_id"] is None


def test_an_exception_is_logged_as_one_json_line_with_its_traceback(app, capsys):
    try:
        raise RuntimeError("provider exploded")
    except RuntimeError:
        logging.getLogger("app.test").exception("job failed")
    (line,) = [
        entry for entry in _json_lines(capsys.readouterr().err) if entry["logger"] == "app.test"
    ]
    assert line["level"] == "ERROR"
    assert "RuntimeError: provider exploded" in line["exception"]


def test_log_format_defaults_to_json_in_production_and_text_in_development(tmp_path):
    base = {"PICTOR_INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "k"}
    assert load_config({**base, "PICTOR_ENV": "production"})["LOG_FORMAT"] == "json"
    assert load_config(base)["LOG_FORMAT"] == "text"
    assert load_config({**base, "PICTOR_LOG_FORMAT": "json"})["LOG_FORMAT"] == "json"
