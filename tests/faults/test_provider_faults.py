"""A misbehaving provider (the fake Gemini server) under a real worker process.

Whatever the provider does — hang, rate-limit, fail, answer bytes that are not an image — the
generation ends once: success charged exactly once, or failed with exactly one refund. Retries
never debit again.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation
from app.services import credits
from tests.fakes.gemini import FakeGemini

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROVIDER = {"GEMINI_TIMEOUT_MS": 1000, "GEMINI_RETRY_ATTEMPTS": 3, "GEMINI_RETRY_BASE_DELAY": 0.01}


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def app_config(fake, private_redis):
    return {**fake.config(**PROVIDER), "REDIS_URL": private_redis.url}


def _worker_env(fake: FakeGemini) -> dict[str, str]:
    return {key: str(value) for key, value in fake.config(**PROVIDER).items()}


def _ledger(user_id: str, generation_id: str) -> tuple[int, int]:
    rows = db.session.execute(
        select(CreditTransaction.type, func.count())
        .where(CreditTransaction.generation_id == generation_id)
        .group_by(CreditTransaction.type)
    ).all()
    db.session.commit()
    counts = dict(rows)
    assert credits.ledger_consistent(user_id)
    return counts.get("usage", 0), counts.get("refund", 0)


def _ended(generation_id: str, timeout: float = 90) -> Generation:
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        generation = db.session.get(Generation, generation_id)
        if generation.status in ("success", "failed"):
            db.session.commit()
            return generation
        db.session.commit()
        assert time.monotonic() < deadline, f"still {generation.status}"
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("script", "status", "code"),
    [
        (
            lambda f: [f.enqueue_error(429), f.enqueue_error(429), f.enqueue_image()],
            "success",
            None,
        ),
        (lambda f: [f.enqueue_error(500) for _ in range(3)], "failed", "PROVIDER_ERROR"),
        (lambda f: [f.enqueue_hang(3) for _ in range(3)], "failed", "TIMEOUT"),
        (lambda f: f.enqueue_image(b"GIF89a but not an image at all"), "failed", "PROVIDER_ERROR"),
        (lambda f: f.enqueue_image(b"\x00" * 4096, "image/png"), "failed", "PROVIDER_ERROR"),
    ],
    ids=["429s-then-success", "500s", "hang-past-timeout", "garbage-bytes", "zero-bytes"],
)
def test_provider_fault_ends_once_with_one_charge_or_one_refund(
    api, user, fake, workers, script, status, code
):
    script(fake)
    generation_id = api.post("/api/v1/generations", json={"prompt": "storm"}).get_json()["data"][
        "id"
    ]
    workers.burst(**_worker_env(fake))

    generation = _ended(generation_id)
    assert (generation.status, generation.error_code) == (status, code), workers.logs()
    usage, refunds = _ledger(user.id, generation_id)
    if status == "success":
        assert (usage, refunds) == (1, 0) and credits.balance(user.id) == 49
        assert len(fake.requests) == 3  # two rate-limited attempts, then the image
    else:
        assert (usage, refunds) == (1, 1) and credits.balance(user.id) == 50
        assert generation.error_message


def test_provider_hanging_past_the_job_timeout_ends_timeout_with_one_refund(
    app, api, user, fake, workers
):
    fake.enqueue_hang(60)
    app.config["JOB_TIMEOUT_SECONDS"] = 3
    generation_id = api.post("/api/v1/generations", json={"prompt": "forever"}).get_json()["data"][
        "id"
    ]
    workers.burst(**{**_worker_env(fake), "GEMINI_TIMEOUT_MS": "120000"})

    generation = _ended(generation_id)
    assert (generation.status, generation.error_code) == ("failed", "TIMEOUT"), workers.logs()
    assert _ledger(user.id, generation_id) == (1, 1) and credits.balance(user.id) == 50
