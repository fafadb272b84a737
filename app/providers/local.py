"""A deterministic stand-in model that paints with Pillow: no network, no keys.

The picture is a function of sha256(prompt, seed, negative prompt, aspect ratio) plus the reference
images (their colours become the palette and they appear as small thumbnails), so the same request
always yields the same PNG bytes.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import time
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, UnidentifiedImageError

from .base import (
    STYLE_HINTS,
    GeneratedImage,
    ModelInfo,
    ProviderError,
    Reference,
    check_template,
    size_for,
)

MODEL_ID = "local-pillow"

RGB = tuple[int, int, int]

_MAX_REFERENCES = 4
_MAX_REFERENCE_PIXELS = 40_000_000
_REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")
_CAPTION_WORDS = 6
_CAPTION_CHARS = 48
_SOFT_SCALE = 8
_PNG_COMPRESS_LEVEL = 3  # level 6 doubles the encode time for ~15% smaller files


class LocalProvider:
    name = "local"

    def __init__(self, *, delay_ms: int = 0, credits: int = 1) -> None:
        self._delay_s = max(0, delay_ms) / 1000
        self._credits = credits

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
        if model not in (None, MODEL_ID):
            raise ProviderError(f"Unknown model {model!r} for the local provider")
        size = size_for(aspect_ratio)
        if self._delay_s:
            time.sleep(self._delay_s)
        digest = _digest(prompt, seed, negative_prompt, aspect_ratio)
        picture = paint(size, digest, prompt, references)
        return GeneratedImage(data=_png(picture), mime_type="image/png", model=MODEL_ID)

    def enhance(self, prompt: str, template: str) -> str:
        hints = STYLE_HINTS[check_template(template)]
        subject = " ".join(prompt.split()).rstrip(".,;: ")
        return f"{subject}, {hints}, cohesive colour palette, high quality"

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=MODEL_ID,
                provider=self.name,
                credits=self._credits,
                tiers=("free", "pro"),
                default=True,
            )
        ]


def _digest(prompt: str, seed: int | None, negative_prompt: str | None, aspect_ratio: str) -> bytes:
    fields = (prompt, "" if seed is None else str(seed), negative_prompt or "", aspect_ratio)
    return hashlib.sha256("\x1f".join(fields).encode()).digest()


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def paint(
    size: tuple[int, int], digest: bytes, prompt: str, references: Sequence[Reference] = ()
) -> Image.Image:
    """Paint the picture for a request digest; returns an RGB image of `size`."""
    rng = random.Random(digest)  # nosec B311  # seeded: same request, same picture
    thumbnails = [t for t in (_load_reference(r) for r in references[:_MAX_REFERENCES]) if t]
    palette = _palette(rng, references, thumbnails)
    canvas = _soft_scene(size, rng, palette).resize(size, Image.Resampling.BICUBIC)
    _crisp_shapes(canvas, rng, palette)
    _thumbnail_strip(canvas, thumbnails)
    _caption(canvas, prompt)
    return canvas


# --- palette ---------------------------------------------------------------------------------


def _luminance(colour: RGB) -> float:
    r, g, b = colour
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _hls(h: float, lightness: float, s: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, lightness, s)
    return round(r * 255), round(g * 255), round(b * 255)


def _hashed_palette(rng: random.Random) -> list[RGB]:
    base = rng.random()
    offsets = rng.choice(((0, 0.08, 0.16), (0, 0.5, 0.58), (0, 0.33, 0.66), (0, 0.42, 0.58)))
    palette = [
        _hls(base + offsets[0], rng.uniform(0.12, 0.22), rng.uniform(0.45, 0.8)),
        _hls(base + offsets[1], rng.uniform(0.35, 0.5), rng.uniform(0.55, 0.9)),
        _hls(base + offsets[2], rng.uniform(0.6, 0.78), rng.uniform(0.6, 0.95)),
    ]
    palette += [_hls(base + rng.random(), rng.uniform(0.45, 0.85), 0.85) for _ in range(3)]
    return palette


def _reference_colours(image: Image.Image) -> list[RGB]:
    """The mean colour and the four quadrant colours of a reference."""
    mean = image.resize((1, 1), Image.Resampling.BOX)
    quads = image.resize((2, 2), Image.Resampling.BOX)
    pixels = [mean.getpixel((0, 0))] + [quads.getpixel((x, y)) for y in range(2) for x in range(2)]
    return [_rgb(p) for p in pixels]


def _rgb(pixel: object) -> RGB:
    r, g, b = pixel[:3]  # type: ignore[index]
    return int(r), int(g), int(b)


def _bytes_colour(data: bytes) -> RGB:
    digest = hashlib.sha256(data).digest()
    return _hls(digest[0] / 255, 0.3 + digest[1] / 640, 0.7)


def _palette(
    rng: random.Random, references: Sequence[Reference], thumbnails: Sequence[Image.Image]
) -> list[RGB]:
    """Colours dark to light for the background, then accents. References take over the palette."""
    hashed = _hashed_palette(rng)
    if not references:
        return hashed
    borrowed: list[RGB] = []
    for thumb in thumbnails:
        borrowed += _reference_colours(thumb)
    if not thumbnails:
        borrowed = [_bytes_colour(r.data) for r in references[:_MAX_REFERENCES]]
    borrowed = sorted(dict.fromkeys(borrowed), key=_luminance)
    background = [borrowed[0], borrowed[len(borrowed) // 2], borrowed[-1]]
    if len(borrowed) < 3:
        background = [_shade(borrowed[0], 0.35), borrowed[0], _shade(borrowed[-1], 1.6)]
    accents = borrowed[::-1][:3] + hashed[3:]
    return background + accents[:3]


def _shade(colour: RGB, factor: float) -> RGB:
    r, g, b = (min(255, round(c * factor)) for c in colour)
    return r, g, b


def _load_reference(reference: Reference) -> Image.Image | None:
    """A small RGB copy of a reference image, or None when it cannot be decoded safely."""
    try:
        with Image.open(io.BytesIO(reference.data), formats=_REFERENCE_FORMATS) as image:
            if image.width * image.height > _MAX_REFERENCE_PIXELS:
                return None
            image.draft("RGB", (256, 256))
            image = ImageOps.exif_transpose(image)
            thumb = image.convert("RGB")
            thumb.thumbnail((256, 256), Image.Resampling.BILINEAR)
            return thumb
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None


# --- layers ----------------------------------------------------------------------------------


def _soft_scene(size: tuple[int, int], rng: random.Random, palette: list[RGB]) -> Image.Image:
    """Gradient, glows and blurred shapes, painted at 1/8 scale: upscaling gives the softness."""
    small = (max(8, size[0] // _SOFT_SCALE), max(8, size[1] // _SOFT_SCALE))
    scene = _gradient(small, rng, palette).convert("RGBA")
    _glows(scene, rng, palette)
    scene.alpha_composite(_soft_shapes(small, rng, palette).filter(ImageFilter.GaussianBlur(1)))
    return scene.convert("RGB")


def _gradient(size: tuple[int, int], rng: random.Random, palette: list[RGB]) -> Image.Image:
    angle = rng.uniform(0, 360)
    gradient = Image.linear_gradient("L").rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True
    )
    radians = math.radians(angle)
    inner = 256 / (abs(math.cos(radians)) + abs(math.sin(radians)))
    cx, cy = gradient.width / 2, gradient.height / 2
    box = (cx - inner / 2 + 1, cy - inner / 2 + 1, cx + inner / 2 - 1, cy + inner / 2 - 1)
    gradient = gradient.resize(size, Image.Resampling.BILINEAR, box=box)
    return ImageOps.colorize(gradient, black=palette[0], white=palette[2], mid=palette[1])


def _glows(scene: Image.Image, rng: random.Random, palette: list[RGB]) -> None:
    width, height = scene.size
    short = min(width, height)
    for _ in range(rng.randint(2, 3)):
        diameter = max(2, int(short * rng.uniform(0.5, 1.1)))
        strength = rng.uniform(0.35, 0.7)
        mask = ImageOps.invert(Image.radial_gradient("L")).resize((diameter, diameter))
        mask = mask.point(lambda v, s=strength: int(v * v / 255 * s))
        x = int(rng.uniform(-0.2, 1.0) * width)
        y = int(rng.uniform(-0.2, 1.0) * height)
        scene.paste(rng.choice(palette[2:]) + (255,), (x, y), mask)


def _soft_shapes(size: tuple[int, int], rng: random.Random, palette: list[RGB]) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = size
    for _ in range(rng.randint(5, 8)):
        colour = rng.choice(palette[1:]) + (rng.randint(70, 170),)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.08, 0.3) * min(w, h)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif kind == 1:
            draw.regular_polygon((cx, cy, r), rng.randint(3, 6), rng.uniform(0, 360), fill=colour)
        else:
            box = (cx - r * 1.4, cy - r * 0.8, cx + r * 1.4, cy + r * 0.8)
            draw.rounded_rectangle(box, radius=r * 0.3, fill=colour)
    return layer


def _crisp_shapes(canvas: Image.Image, rng: random.Random, palette: list[RGB]) -> None:
    width, height = canvas.size
    short = min(width, height)
    draw = ImageDraw.Draw(canvas, "RGBA")
    for _ in range(rng.randint(2, 4)):
        colour = rng.choice(palette[2:]) + (rng.randint(150, 230),)
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.7) * height
        r = rng.uniform(0.04, 0.16) * short
        stroke = max(2, int(short * rng.uniform(0.004, 0.012)))
        if rng.random() < 0.6:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=stroke)
        else:
            draw.regular_polygon(
                (cx, cy, r), rng.randint(3, 6), rng.uniform(0, 360), outline=colour, width=stroke
            )
    _ridges(draw, canvas.size, rng, palette[0])


def _ridges(
    draw: ImageDraw.ImageDraw, size: tuple[int, int], rng: random.Random, colour: RGB
) -> None:
    width, height = size
    for depth, (alpha, shade) in enumerate(((120, 1.0), (210, 0.6))):
        base = height * (rng.uniform(0.66, 0.76) + depth * 0.1)
        points = [(width * i / 8, base + rng.uniform(-0.05, 0.05) * height) for i in range(9)]
        points += [(float(width), float(height)), (0.0, float(height))]
        draw.polygon(points, fill=_shade(colour, shade) + (alpha,))


def _thumbnail_strip(canvas: Image.Image, thumbnails: Sequence[Image.Image]) -> None:
    short = min(canvas.size)
    side, border, margin = short // 7, max(2, short // 256), short // 32
    x = margin
    for thumb in thumbnails:
        framed = ImageOps.pad(thumb, (side, side), color=(255, 255, 255))
        framed = ImageOps.expand(framed, border=border, fill=(255, 255, 255))
        canvas.paste(framed, (x, margin))
        x += framed.width + margin // 2


def _caption_text(prompt: str, fits: Callable[[str], bool]) -> str:
    """The first words of the prompt that fit on one line."""
    words = prompt.split()
    for count in range(min(len(words), _CAPTION_WORDS), 0, -1):
        text = " ".join(words[:count])[:_CAPTION_CHARS]
        if count < len(words) or len(text) < len(" ".join(words[:count])):
            text += " …"
        if fits(text):
            return text
    return ""


def _caption(canvas: Image.Image, prompt: str) -> None:
    width, height = canvas.size
    short = min(width, height)
    font = ImageFont.load_default(size=max(12, short // 22))
    draw = ImageDraw.Draw(canvas, "RGBA")
    pad, margin = short // 40, short // 24
    text = _caption_text(
        prompt, lambda t: draw.textlength(t, font=font) + 2 * (pad + margin) <= width
    )
    if not text:
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    y = height - margin - (bottom - top) - 2 * pad
    box = (margin, y, margin + (right - left) + 2 * pad, y + (bottom - top) + 2 * pad)
    draw.rounded_rectangle(box, radius=pad, fill=(12, 12, 20, 150))
    draw.text((margin + pad - left, y + pad - top), text, font=font, fill=(255, 255, 255, 240))
