"""The worker against Gemini (the real SDK talking to the fake server): every failure ends the
generation `failed` with the contract's code and exactly one refund."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation
from app.services import credits, generations
from app.storage import get_storage
from tests.fakes.gemini import FakeGemini, tiny_png


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


@pytest.fixture
def app_config(fake):
    settings = fake.config(GEMINI_RETRY_ATTEMPTS=2, GEMINI_TIMEOUT_MS=1000)
    return {**settings, "EMBEDDED_WORKER": False}


def _run(project, user, **params) -> Generation:
    generation, created = generations.create(
        project, user, {"prompt": "a lighthouse", **params}, enqueue=False
    )
    assert created
    generations.run(generation.id)
    db.session.expire_all()
    return db.session.get(Generation, generation.id)


def _refunds(generation_id: str) -> int:
    return db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation_id
        )
    )


def _assert_failed_and_refunded_once(generation: Generation, user, code: str) -> None:
    assert generation.status == "failed"
    assert generation.error_code == code and generation.error_message
    assert generation.output_image_id is None and generation.completed_at is not None
    assert _refunds(generation.id) == 1
    assert credits.balance(user.id) == 50
    # Any later ending path (callback, sweeper) changes nothing.
    assert generations.fail(generation.id, "WORKER_LOST", "late") is False
    assert _refunds(generation.id) == 1 and credits.ledger_consistent(user.id)


def test_success_sends_prompt_ratio_and_references_and_stores_the_answer(fake, project, user):
    reference = _run(project, user, aspectRatio="1:1")  # default answer: a tiny PNG
    assert reference.status == "success"
    fake.requests.clear()
    answer = tiny_png((10, 200, 30), (32, 18))
    fake.enqueue_image(answer)
    generation = _run(
        project,
        user,
        prompt="the same scene at night",
        aspectRatio="16:9",
        referenceImages=[reference.output_image_id],
        negativePrompt="text",
    )
    assert generation.status == "success" and generation.model == "gemini-2.5-flash-image"
    (sent,) = fake.requests
    parts = sent["json"]["contents"][0]["parts"]
    inline = parts[0]["inlineData"]
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"
    stored = db.session.get(generations.Image, reference.output_image_id)
    assert base64.urlsafe_b64decode(inline["data"]) == get_storage().get(stored.storage_key)
    assert parts[1] == {"text": "the same scene at night\n\nAvoid: text"}
    assert sent["json"]["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}
    output = db.session.get(generations.Image, generation.output_image_id)
    assert (output.width, output.height) == (32, 18)
    assert generation.provider_ms is not None and generation.processing_ms is not None


def test_auto_enhance_asks_the_text_model_first(fake, project, user):
    fake.enqueue_text("A lighthouse on a cliff, golden hour, long exposure")
    generation = _run(project, user, autoEnhance=True, template="photorealistic")
    assert generation.status == "success"
    assert generation.enhanced_prompt == "A lighthouse on a cliff, golden hour, long exposure"
    enhance, image = fake.requests
    assert enhance["model"] == "gemini-2.5-flash"
    assert image["json"]["contents"][0]["parts"][-1]["text"] == generation.enhanced_prompt


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (lambda f: [f.enqueue_error(500), f.enqueue_error(503)], "PROVIDER_ERROR"),
        (lambda f: [f.enqueue_error(429), f.enqueue_error(429)], "PROVIDER_ERROR"),
        (lambda f: f.enqueue_error(400, "bad request"), "PROVIDER_ERROR"),
        (lambda f: f.enqueue_block("SAFETY"), "CONTENT_BLOCKED"),
        (lambda f: f.enqueue_finish("IMAGE_SAFETY"), "CONTENT_BLOCKED"),
        (lambda f: [f.enqueue_hang(3), f.enqueue_hang(3)], "TIMEOUT"),
        (lambda f: [f.enqueue_error(504), f.enqueue_error(504)], "TIMEOUT"),
        (lambda f: f.enqueue_garbage(), "PROVIDER_ERROR"),
        (lambda f: f.enqueue_text("I cannot draw that, here is a poem"), "PROVIDER_ERROR"),
        (lambda f: f.enqueue_image(b"\x89PNG\r\n\x1a\n not really"), "PROVIDER_ERROR"),
    ],
    ids=[
        "server-errors",
        "rate-limited",
        "bad-request",
        "prompt-blocked",
        "image-safety",
        "timeout",
        "deadline-exceeded",
        "unreadable-answer",
        "no-image",
        "corrupt-image",
    ],
)
def test_provider_failure_ends_failed_with_its_code_and_one_refund(
    fake, project, user, script, code
):
    script(fake)
    generation = _run(project, user)
    _assert_failed_and_refunded_once(generation, user, code)


def test_enhancement_failure_fails_the_generation(fake, project, user):
    fake.enqueue_error(500)
    fake.enqueue_error(500)
    generation = _run(project, user, autoEnhance=True)
    _assert_failed_and_refunded_once(generation, user, "PROVIDER_ERROR")
    assert [r["model"] for r in fake.requests] == ["gemini-2.5-flash", "gemini-2.5-flash"]
