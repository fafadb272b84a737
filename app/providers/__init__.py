"""Image model providers behind one interface; `get_provider(app.config)` picks and caches one."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any

from .base import (
    ASPECT_RATIOS,
    TEMPLATES,
    ContentBlocked,
    GeneratedImage,
    ImageProvider,
    ModelInfo,
    ProviderError,
    ProviderTimeout,
    Reference,
    size_for,
)

__all__ = [
    "ASPECT_RATIOS",
    "TEMPLATES",
    "ContentBlocked",
    "GeneratedImage",
    "ImageProvider",
    "ModelInfo",
    "ProviderError",
    "ProviderTimeout",
    "Reference",
    "get_provider",
    "provider_name",
    "size_for",
]

_cache: dict[tuple[Hashable, ...], ImageProvider] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 16


def provider_name(config: Mapping[str, Any]) -> str:
    """The configured provider: IMAGE_PROVIDER, else "gemini" when a Gemini key is set."""
    name = (config.get("IMAGE_PROVIDER") or "").strip().lower()
    if not name:
        return "gemini" if config.get("GEMINI_API_KEY") else "local"
    if name not in ("local", "gemini"):
        raise ValueError(f"Unknown IMAGE_PROVIDER {name!r} (expected 'local' or 'gemini')")
    return name


def get_provider(config: Mapping[str, Any]) -> ImageProvider:
    """The provider for these settings; one instance per distinct settings, shared by threads."""
    name = provider_name(config)
    settings = _local_settings(config) if name == "local" else _gemini_settings(config)
    key = (name, *sorted(settings.items()))
    with _cache_lock:
        provider = _cache.get(key)
        if provider is None:
            provider = _build(name, settings)
            if len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = provider
        return provider


def _build(name: str, settings: dict[str, Any]) -> ImageProvider:
    if name == "local":
        from .local import LocalProvider

        return LocalProvider(**settings)
    from .gemini import GeminiProvider

    return GeminiProvider(**settings)


def _local_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "delay_ms": int(config.get("LOCAL_PROVIDER_DELAY_MS") or 0),
        "credits": int(config.get("CREDITS_PER_GENERATION", 1)),
    }


def _gemini_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    api_key = config.get("GEMINI_API_KEY")
    if not api_key:
        raise ValueError("IMAGE_PROVIDER is 'gemini' but GEMINI_API_KEY is not set")
    return {
        "api_key": api_key,
        "base_url": config.get("GEMINI_BASE_URL") or None,
        "image_model": config.get("GEMINI_IMAGE_MODEL") or "gemini-2.5-flash-image",
        "text_model": config.get("GEMINI_TEXT_MODEL") or "gemini-2.5-flash",
        "pro_models": _model_list(config.get("GEMINI_PRO_MODELS", ("gemini-3-pro-image-preview",))),
        "timeout_ms": int(config.get("GEMINI_TIMEOUT_MS") or 60_000),
        "retry_attempts": int(config.get("GEMINI_RETRY_ATTEMPTS", 3)),
        "retry_base_delay": float(config.get("GEMINI_RETRY_BASE_DELAY", 1.0)),
        "deadline_ms": int(config.get("GEMINI_DEADLINE_MS") or 150_000),
        "credits": int(config.get("CREDITS_PER_GENERATION", 1)),
    }


def _model_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else (value or ())
    return tuple(m.strip() for m in items if m and m.strip())
