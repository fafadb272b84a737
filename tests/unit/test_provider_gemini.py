import base64
import socket
import time
from typing import Any

import pytest

from app.providers import (
    TEMPLATES,
    ContentBlocked,
    ProviderError,
    ProviderTimeout,
    Reference,
    get_provider,
)
from app.providers.base import STYLE_HINTS
from app.providers.gemini import GeminiProvider
from tests.fakes.gemini import DEFAULT_PNG, DEFAULT_TEXT, FakeGemini, fake_gemini, tiny_png

__all__ = ["fake_gemini"]  # the fixture, imported for pytest

IMAGE_MODEL = "gemini-2.5-flash-image"
PRO_MODEL = "gemini-3-pro-image-preview"


def _provider(fake: FakeGemini, **overrides: Any) -> GeminiProvider:
    provider = get_provider(fake.config(**overrides))
    assert isinstance(provider, GeminiProvider)
    return provider


def _generate(provider: GeminiProvider, **overrides: Any):
    request: dict[str, Any] = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": None,
        "aspect_ratio": "1:1",
        "references": [],
        "seed": None,
        "model": None,
    }
    request.update(overrides)
    return provider.generate(**request)


def _parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    (content,) = request["json"]["contents"]
    return content["parts"]


def test_generate_sends_prompt_ratio_references_and_seed(fake_gemini: FakeGemini) -> None:
    picture, reference = tiny_png((10, 200, 30), (16, 9)), tiny_png((1, 2, 3))
    fake_gemini.enqueue_image(picture)
    result = _generate(
        _provider(fake_gemini),
        prompt="a cat on a mug",
        negative_prompt="text, watermark",
        aspect_ratio="16:9",
        references=[Reference(reference, "image/png")],
        seed=42,
    )
    assert (result.data, result.mime_type, result.model) == (picture, "image/png", IMAGE_MODEL)

    (sent,) = fake_gemini.requests
    assert sent["path"] == f"/v1beta/models/{IMAGE_MODEL}:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "fake-key"
    ref_part, text_part = _parts(sent)
    assert ref_part["inlineData"]["data"] == base64.b64encode(reference).decode()
    assert text_part == {"text": "a cat on a mug\n\nAvoid: text, watermark"}
    config = sent["json"]["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "16:9"}
    assert config["responseModalities"] == ["IMAGE"]
    assert config["seed"] == 42


def test_generate_without_extras_and_with_a_chosen_model(fake_gemini: FakeGemini) -> None:
    result = _generate(_provider(fake_gemini), prompt="plain", model=PRO_MODEL)
    assert (result.data, result.model) == (DEFAULT_PNG, PRO_MODEL)
    (sent,) = fake_gemini.requests
    assert sent["model"] == PRO_MODEL
    assert _parts(sent) == [{"text": "plain"}]
    assert "seed" not in sent["json"]["generationConfig"]


def test_thought_parts_are_skipped(fake_gemini: FakeGemini) -> None:
    picture = tiny_png((9, 9, 9))
    thought = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}, "thought": True}
    final = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(picture).decode()}}
    content = {"role": "model", "parts": [{"text": "planning", "thought": True}, thought, final]}
    fake_gemini.enqueue(200, {"candidates": [{"content": content, "finishReason": "STOP"}]})
    assert _generate(_provider(fake_gemini)).data == picture


@pytest.mark.parametrize("status", [429, 503])
def test_transient_error_is_retried(fake_gemini: FakeGemini, status: int) -> None:
    picture = tiny_png((50, 60, 70))
    fake_gemini.enqueue_error(status)
    fake_gemini.enqueue_image(picture)
    assert _generate(_provider(fake_gemini)).data == picture
    assert len(fake_gemini.requests) == 2


def test_server_errors_exhaust_the_retries(fake_gemini: FakeGemini) -> None:
    for _ in range(3):
        fake_gemini.enqueue_error(500)
    with pytest.raises(ProviderError) as caught:
        _generate(_provider(fake_gemini))
    error = caught.value
    assert type(error) is ProviderError
    assert (error.code, error.retryable) == ("PROVIDER_ERROR", True)
    assert "500" in str(error)
    assert len(fake_gemini.requests) == 3


def test_bad_request_is_not_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_error(400, "Unsupported aspect ratio")
    with pytest.raises(ProviderError) as caught:
        _generate(_provider(fake_gemini))
    assert not caught.value.retryable
    assert "Unsupported aspect ratio" in str(caught.value)
    assert len(fake_gemini.requests) == 1


def test_blocked_prompt_is_content_blocked_without_retry(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_block("PROHIBITED_CONTENT")
    with pytest.raises(ContentBlocked) as caught:
        _generate(_provider(fake_gemini))
    assert (caught.value.code, caught.value.retryable) == ("CONTENT_BLOCKED", False)
    assert "PROHIBITED_CONTENT" in str(caught.value)
    assert len(fake_gemini.requests) == 1


@pytest.mark.parametrize("reason", ["IMAGE_SAFETY", "NO_IMAGE", "PROHIBITED_CONTENT"])
def test_safety_finish_reason_is_content_blocked(fake_gemini: FakeGemini, reason: str) -> None:
    fake_gemini.enqueue_finish(reason)
    with pytest.raises(ContentBlocked, match=reason):
        _generate(_provider(fake_gemini))
    assert len(fake_gemini.requests) == 1


def test_text_only_answer_is_a_provider_error(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_text("I would rather describe it in words.")
    with pytest.raises(ProviderError) as caught:
        _generate(_provider(fake_gemini))
    assert type(caught.value) is ProviderError
    assert "without an image" in str(caught.value) and "in words" in str(caught.value)
    assert len(fake_gemini.requests) == 1


def test_garbage_answer_is_a_provider_error(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_garbage()
    with pytest.raises(ProviderError) as caught:
        _generate(_provider(fake_gemini))
    assert type(caught.value) is ProviderError and not caught.value.retryable
    assert len(fake_gemini.requests) == 1


def test_hanging_server_times_out_after_retries(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_hang(3)
    fake_gemini.enqueue_hang(3)
    provider = _provider(fake_gemini, GEMINI_TIMEOUT_MS=300, GEMINI_RETRY_ATTEMPTS=2)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        _generate(provider)
    assert time.monotonic() - started < 2.5
    assert (caught.value.code, caught.value.retryable) == ("TIMEOUT", True)
    assert len(fake_gemini.requests) == 2


def test_no_retry_that_would_overrun_the_deadline(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_hang(3)
    provider = _provider(fake_gemini, GEMINI_TIMEOUT_MS=300, GEMINI_DEADLINE_MS=500)
    with pytest.raises(ProviderTimeout):
        _generate(provider)
    assert len(fake_gemini.requests) == 1


def test_gateway_timeout_status_is_a_timeout(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_error(504)
    fake_gemini.enqueue_error(504)
    with pytest.raises(ProviderTimeout):
        _generate(_provider(fake_gemini, GEMINI_RETRY_ATTEMPTS=2))
    assert len(fake_gemini.requests) == 2


def test_unreachable_server_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "IMAGE_PROVIDER": "gemini",
        "GEMINI_API_KEY": "fake-key",
        "GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
        "GEMINI_RETRY_ATTEMPTS": 2,
        "GEMINI_RETRY_BASE_DELAY": 0.01,
    }
    with pytest.raises(ProviderError) as caught:
        _generate(get_provider(config))
    assert caught.value.retryable and caught.value.code == "PROVIDER_ERROR"


@pytest.mark.parametrize("template", TEMPLATES)
def test_enhance_sends_the_template_instruction(fake_gemini: FakeGemini, template: str) -> None:
    assert _provider(fake_gemini).enhance("a red bicycle", template) == DEFAULT_TEXT
    (sent,) = fake_gemini.requests
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert _parts(sent) == [{"text": "a red bicycle"}]
    instruction = " ".join(p["text"] for p in sent["json"]["systemInstruction"]["parts"])
    assert STYLE_HINTS[template] in instruction


def test_enhance_strips_the_answer_and_uses_the_text_model(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_text("  A red bicycle leaning on a sunlit wall.\n")
    provider = _provider(fake_gemini, GEMINI_TEXT_MODEL="gemini-text-fake")
    assert provider.enhance("a red bicycle", "general") == "A red bicycle leaning on a sunlit wall."
    assert fake_gemini.requests[0]["model"] == "gemini-text-fake"


def test_enhance_errors_become_provider_errors(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue_error(400)
    with pytest.raises(ProviderError):
        _provider(fake_gemini).enhance("a cat", "comic")
    fake_gemini.enqueue_text("   ")
    with pytest.raises(ProviderError, match="without text"):
        _provider(fake_gemini).enhance("a cat", "comic")
    with pytest.raises(ValueError):
        _provider(fake_gemini).enhance("a cat", "baroque")


def test_models_lists_the_default_and_pro_models(fake_gemini: FakeGemini) -> None:
    models = _provider(fake_gemini, CREDITS_PER_GENERATION=2).models()
    assert [(m.id, m.provider, m.credits, m.tiers, m.default) for m in models] == [
        (IMAGE_MODEL, "gemini", 2, ("free", "pro"), True),
        (PRO_MODEL, "gemini", 2, ("pro",), False),
    ]


def test_get_provider_chooses_gemini_with_a_key_and_caches(fake_gemini: FakeGemini) -> None:
    config = fake_gemini.config(IMAGE_PROVIDER=None)
    provider = get_provider(config)
    assert provider.name == "gemini"
    assert get_provider(dict(config)) is provider
    assert get_provider({**config, "GEMINI_TIMEOUT_MS": 1234}) is not provider
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        get_provider({"IMAGE_PROVIDER": "gemini", "GEMINI_API_KEY": None})
