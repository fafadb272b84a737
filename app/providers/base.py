"""The small interface every image model provider implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Protocol, runtime_checkable

ASPECT_RATIOS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
TEMPLATES: tuple[str, ...] = (
    "general",
    "photorealistic",
    "illustration",
    "minimalist",
    "sticker",
    "product",
    "comic",
)

# Style words per enhancement template, shared by the local enhancer and the Gemini instructions.
STYLE_HINTS: Mapping[str, str] = {
    "general": "rich detail, balanced composition, natural lighting, sharp focus",
    "photorealistic": (
        "photorealistic photograph, 50mm lens, soft natural light, shallow depth of field, "
        "true-to-life textures"
    ),
    "illustration": "digital illustration, clean line work, vibrant colours, storybook mood",
    "minimalist": "minimalist, generous negative space, simple geometric forms, limited palette",
    "sticker": "die-cut sticker, bold outline, thick white border, flat shading, plain background",
    "product": (
        "studio product shot, seamless backdrop, softbox lighting, crisp reflections, "
        "commercial catalogue quality"
    ),
    "comic": "comic book panel, bold ink outlines, halftone shading, dynamic camera angle",
}

_SIDE_STEP = 16
_TARGET_SHORT_SIDE = 1024
_MAX_SIDE = 2048
_MAX_AREA = 2_000_000


@cache
def size_for(aspect_ratio: str) -> tuple[int, int]:
    """Pixel size (width, height) for an aspect ratio, e.g. "16:9" -> (1792, 1008).

    The ratio is kept exact: both sides are a multiple of 16, the short side is as close to
    1024 as possible without exceeding it, the long side is at most 2048 and the area at most 2 MP.
    """
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError("Invalid aspect ratio")
    w_part, h_part = (int(p) for p in aspect_ratio.split(":"))
    ratio = Fraction(w_part, h_part)
    unit_w, unit_h = ratio.numerator * _SIDE_STEP, ratio.denominator * _SIDE_STEP
    k = min(
        _TARGET_SHORT_SIDE // min(unit_w, unit_h),
        _MAX_SIDE // max(unit_w, unit_h),
        int((_MAX_AREA / (unit_w * unit_h)) ** 0.5),
    )
    return unit_w * k, unit_h * k


def check_template(template: str) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"Unknown template {template!r}")
    return template


@dataclass(frozen=True)
class Reference:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime_type: str
    model: str
    enhanced_prompt: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    provider: str
    credits: int
    tiers: tuple[str, ...]
    default: bool


class ProviderError(Exception):
    """The model could not produce an image. `retryable` says whether trying again may help."""

    code = "PROVIDER_ERROR"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ContentBlocked(ProviderError):
    code = "CONTENT_BLOCKED"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=False)


class ProviderTimeout(ProviderError):
    code = "TIMEOUT"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


@runtime_checkable
class ImageProvider(Protocol):
    name: str

    def generate(
        self,
        *,
        prompt: str,
        negative_prompt: str | None,
        aspect_ratio: str,
        references: Sequence[Reference],
        seed: int | None,
        model: str | None,
    ) -> GeneratedImage: ...

    def enhance(self, prompt: str, template: str) -> str: ...

    def models(self) -> list[ModelInfo]: ...
