"""A model's answer is judged before it is stored: damaged pixels are refused, sound ones kept
exactly as they came (imaging.judge_output)."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image as PILImage

from app.errors import UnsupportedMedia
from app.services import imaging
from tests import factories

WIDTH, HEIGHT = 24, 10


def _png(
    rows: bytes,
    *,
    stream: bytes | None = None,
    colour: int = 2,
    interlaced: bool = False,
    idats_apart: bool = False,
) -> bytes:
    """`rows` (each a filter type and its bytes) compressed, or `stream` as it is, as a PNG."""
    stream = zlib.compress(rows) if stream is None else stream
    return factories.handmade_png(
        WIDTH, HEIGHT, stream, colour=colour, interlaced=interlaced, idats_apart=idats_apart
    )


def _rows(channels: int = 3) -> bytes:
    """Rows using all five filter types, over bytes that vary."""
    return b"".join(
        bytes([y % 5]) + bytes((x * 7 + y * 13) % 256 for x in range(WIDTH * channels))
        for y in range(HEIGHT)
    )


# Adam7: each pass's first column and row, and its steps across and down.
_PASSES = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def _interlaced_rows(rgb: tuple[int, int, int]) -> bytes:
    """An interlaced picture of one colour: the seven passes' rows, one after another."""
    rows = []
    for x0, y0, dx, dy in _PASSES:
        across, down = len(range(x0, WIDTH, dx)), len(range(y0, HEIGHT, dy))
        rows += [b"\0" + bytes(rgb) * across] * (down if across else 0)
    return b"".join(rows)


def _pixels(data: bytes) -> bytes:
    with PILImage.open(io.BytesIO(data)) as picture:
        return picture.tobytes()


@pytest.mark.parametrize(
    ("colour", "channels"), [(0, 1), (2, 3), (4, 2), (6, 4)], ids=["L", "RGB", "LA", "RGBA"]
)
def test_a_sound_png_is_kept_pixel_for_pixel(colour, channels):
    data = _png(_rows(channels), colour=colour)
    judged = imaging.judge_output(data, text={"prompt": "a lighthouse"})
    assert (judged.width, judged.height, judged.mime_type) == (WIDTH, HEIGHT, "image/png")
    assert _pixels(judged.data) == _pixels(data)
    with PILImage.open(io.BytesIO(judged.data)) as stored:
        assert stored.text["prompt"] == "a lighthouse"
    assert judged.thumbnail is None  # made when first asked for


def _flipped(stream: bytes) -> bytes:
    damaged = bytearray(stream)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


def _unknown_filter() -> bytes:
    rows = bytearray(_rows())
    rows[(1 + WIDTH * 3) * 4] = 5  # the fifth row's filter type: only 0–4 exist
    return _png(bytes(rows))


@pytest.mark.parametrize(
    "damaged",
    [
        pytest.param(_unknown_filter(), id="unknown filter type"),
        pytest.param(_png(b"", stream=_flipped(zlib.compress(_rows()))), id="bytes flipped"),
        pytest.param(_png(b"", stream=zlib.compress(_rows())[:-12]), id="stream cut short"),
        pytest.param(_png(_rows(), idats_apart=True), id="IDATs apart"),
    ],
)
def test_a_png_with_damaged_pixels_is_refused(damaged):
    with pytest.raises(UnsupportedMedia):
        imaging.judge_output(damaged)


def _saved(picture: PILImage.Image, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_saved(PILImage.new("P", (40, 30), 3)), id="palette"),
        pytest.param(_png(_interlaced_rows((0, 128, 128)), interlaced=True), id="interlaced"),
        pytest.param(_saved(PILImage.new("I;16", (40, 30), 900)), id="16-bit"),
    ],
)
def test_other_pngs_are_decoded_and_thumbnailed_at_once(data):
    judged = imaging.judge_output(data)
    with PILImage.open(io.BytesIO(data)) as picture:
        size = picture.size
    assert (judged.width, judged.height) == size
    assert _pixels(judged.data) == _pixels(data)
    assert judged.thumbnail is not None
    with PILImage.open(io.BytesIO(judged.thumbnail)) as thumbnail:
        assert thumbnail.format == "WEBP" and thumbnail.size == size
