"""Gemini image models through the google-genai SDK.

Retries are ours, not the SDK's (`retry_options` is left unset, which means one attempt per call),
so that only rate limits, server errors and timeouts are retried, and a whole call, retries
included, stays well inside the job timeout.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx2
from google import genai
from google.genai import errors, types
from pydantic import ValidationError

from .base import (
    STYLE_HINTS,
    ContentBlocked,
    GeneratedImage,
    ModelInfo,
    ProviderError,
    ProviderTimeout,
    Reference,
    check_template,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 429})
_BLOCK_FINISH_REASONS = frozenset(
    {
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "NO_IMAGE",
        "SAFETY",
        "BLOCKLIST",
        "SPII",
    }
)
_MAX_BACKOFF_S = 20.0
_MAX_MESSAGE = 300

_ENHANCE_INSTRUCTION = (
    "You rewrite prompts for an image generation model. Keep the user's subject, intent and any "
    "text they want shown; add concrete detail about composition, lighting, colour and style. "
    "Style to aim for: {hints}. Answer with the rewritten prompt only: plain text, one paragraph, "
    "no quotes, no preamble, at most 120 words."
)
ENHANCE_INSTRUCTIONS: dict[str, str] = {
    template: _ENHANCE_INSTRUCTION.format(hints=hints) for template, hints in STYLE_HINTS.items()
}


class GeminiProvider:
    name = "gemini"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        image_model: str = "gemini-2.5-flash-image",
        text_model: str = "gemini-2.5-flash",
        pro_models: Sequence[str] = ("gemini-3-pro-image-preview",),
        timeout_ms: int = 60_000,
        retry_attempts: int = 3,
        retry_base_delay: float = 1.0,
        deadline_ms: int = 150_000,
        credits: int = 1,
    ) -> None:
        self._image_model = image_model
        self._text_model = text_model
        self._pro_models = tuple(m for m in pro_models if m and m != image_model)
        self._timeout_s = timeout_ms / 1000
        self._attempts = max(1, retry_attempts)
        self._base_delay = max(0.0, retry_base_delay)
        self._deadline_s = deadline_ms / 1000
        self._credits = credits
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=base_url or None, api_version="v1beta", timeout=timeout_ms
            ),
        )

    # --- interface -----------------------------------------------------------------------------

    def generate(
        self,
        *,
        prompt: str,
        negative_prompt: str | None,
        aspect_ratio: str,
        references: Sequence[Reference],
        seed: int | None,
        model: str | None,
    ) -> GeneratedImage:
        model_id = model or self._image_model
        text = f"{prompt}\n\nAvoid: {negative_prompt}" if negative_prompt else prompt
        contents: list[types.Part | str] = [
            types.Part.from_bytes(data=ref.data, mime_type=ref.mime_type) for ref in references
        ]
        contents.append(text)
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect_ratio),
            seed=seed,
        )
        response = self._with_retries(
            lambda: self._client.models.generate_content(
                model=model_id, contents=contents, config=config
            )
        )
        data, mime_type = _image_from(response)
        return GeneratedImage(data=data, mime_type=mime_type, model=model_id)

    def enhance(self, prompt: str, template: str) -> str:
        config = types.GenerateContentConfig(
            system_instruction=ENHANCE_INSTRUCTIONS[check_template(template)],
            response_modalities=["TEXT"],
        )
        response = self._with_retries(
            lambda: self._client.models.generate_content(
                model=self._text_model, contents=prompt, config=config
            )
        )
        return _text_from(response)

    def models(self) -> list[ModelInfo]:
        default = ModelInfo(self._image_model, self.name, self._credits, ("free", "pro"), True)
        pro = [ModelInfo(m, self.name, self._credits, ("pro",), False) for m in self._pro_models]
        return [default, *pro]

    # --- retries -------------------------------------------------------------------------------

    def _with_retries(self, call: Callable[[], T]) -> T:
        started = time.monotonic()
        for attempt in range(1, self._attempts + 1):
            try:
                return call()
            except Exception as exc:
                error = _translate(exc)
                if error is None:
                    raise
                delay = self._backoff(attempt)
                if not self._should_retry(error, attempt, started, delay):
                    raise error from exc
                log.info("gemini call failed (%s), retry %d in %.2fs", error, attempt, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _should_retry(
        self, error: ProviderError, attempt: int, started: float, delay: float
    ) -> bool:
        if not error.retryable or attempt >= self._attempts:
            return False
        # Another attempt could run a full timeout: give up if that would overrun the deadline.
        elapsed = time.monotonic() - started
        return elapsed + delay + self._timeout_s <= self._deadline_s

    def _backoff(self, attempt: int) -> float:
        delay = self._base_delay * 2 ** (attempt - 1)
        jitter = random.uniform(0, self._base_delay)  # nosec B311  # retry jitter, not a secret
        return min(_MAX_BACKOFF_S, delay + jitter)


def _translate(exc: Exception) -> ProviderError | None:
    """Map an SDK or transport exception to a ProviderError; None for anything unexpected."""
    if isinstance(exc, errors.APIError):
        return _from_api_error(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout("Gemini did not answer in time")
    if isinstance(exc, httpx2.TransportError):
        return ProviderError(f"Could not reach Gemini: {type(exc).__name__}", retryable=True)
    if isinstance(exc, json.JSONDecodeError | errors.UnknownApiResponseError | ValidationError):
        return ProviderError("Gemini sent an answer that could not be read")
    return None


def _from_api_error(exc: errors.APIError) -> ProviderError:
    code = exc.code or 0
    detail = _short(exc.message or exc.status or "")
    message = f"Gemini error {code}" + (f": {detail}" if detail else "")
    if code == 504:
        return ProviderTimeout(message)
    return ProviderError(message, retryable=code in _RETRYABLE_STATUS or code >= 500)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# --- answers ---------------------------------------------------------------------------------


def _answer_parts(response: types.GenerateContentResponse) -> list[types.Part]:
    candidates = response.candidates or []
    if not candidates:
        feedback = response.prompt_feedback
        if feedback and feedback.block_reason:
            raise ContentBlocked(f"The prompt was blocked ({_enum_name(feedback.block_reason)})")
        raise ProviderError("Gemini returned no candidates")
    parts = [
        part
        for candidate in candidates
        for part in ((candidate.content.parts if candidate.content else None) or [])
        if not part.thought
    ]
    if not parts:
        _raise_if_blocked(candidates[0])
    return parts


def _raise_if_blocked(candidate: types.Candidate) -> None:
    reason = _enum_name(candidate.finish_reason)
    if reason in _BLOCK_FINISH_REASONS:
        raise ContentBlocked(f"The model refused this request ({reason})")


def _image_from(response: types.GenerateContentResponse) -> tuple[bytes, str]:
    parts = _answer_parts(response)
    for part in parts:
        blob = part.inline_data
        if blob and blob.data and (blob.mime_type or "").startswith("image/"):
            return blob.data, blob.mime_type or "image/png"
    for candidate in response.candidates or []:
        _raise_if_blocked(candidate)
    said = _short(" ".join(p.text for p in parts if p.text))
    raise ProviderError("Gemini answered without an image" + (f": {said}" if said else ""))


def _text_from(response: types.GenerateContentResponse) -> str:
    text = "".join(part.text for part in _answer_parts(response) if part.text).strip()
    if not text:
        raise ProviderError("Gemini answered without text")
    return text


def _enum_name(value: object) -> str:
    return str(getattr(value, "value", value) or "")
