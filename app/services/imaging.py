"""Image bytes: judged by decoding, re-encoded, thumbnailed, stored (DESIGN.md "Bytes").

Every image that enters Pictor is judged with Pillow (format, dimensions, decompression-bomb
limit) and by its pixels, and stored under a generated key with a WebP thumbnail, and
recorded: an upload is re-encoded (`decode` → `encode` → `store`), a model's output judged
(`judge_output` → `store`; a PNG's thumbnail is made on first request); either way metadata
and trailing bytes are dropped.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import ImageOps, PngImagePlugin, UnidentifiedImageError

from app.errors import TooLarge, UnsupportedMedia
from app.extensions import db
from app.models import Image, new_id
from app.services import flows
from app.storage import get_storage

MAX_PIXELS = 40_000_000  # 40 MP: above this Pillow refuses to decode (pixel-flood images)
MAX_SIDE = 12_000
THUMB_SIZE = 512
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.simplefilter("error", PILImage.DecompressionBombWarning)


@dataclass(frozen=True)
class Encoded:
    data: bytes
    mime_type: str
    width: int
    height: int
    thumbnail: bytes | None  # None: made when first asked for (`store_thumbnail`)


def decode(data: bytes, *, max_bytes: int | None = None) -> PILImage.Image:
    """Decode PNG, JPEG or WebP bytes fully; anything else is UnsupportedMedia (415)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge("File too large", details={"maxBytes": max_bytes})
    _verified(data)
    return _loaded(data)


def _verified(data: bytes) -> tuple[str, int, int]:
    """The format and size of PNG, JPEG or WebP bytes whose structure holds (for a PNG: every
    chunk's CRC, the chunks' order, IEND), within MAX_SIDE and MAX_PIXELS; the pixels are not
    decoded. Anything else is UnsupportedMedia (415)."""
    if not data:
        raise UnsupportedMedia("The file is empty", details={"allowed": sorted(FORMATS.values())})
    with _judging(), PILImage.open(io.BytesIO(data), formats=list(FORMATS)) as probe:
        width, height = probe.size
        if width > MAX_SIDE or height > MAX_SIDE:
            raise UnsupportedMedia(
                "Image dimensions are too large",
                details={"maxSide": MAX_SIDE, "width": width, "height": height},
            )
        fmt = probe.format
        probe.verify()
    return fmt, width, height


def _loaded(data: bytes) -> PILImage.Image:
    """Verified bytes decoded to their pixels (UnsupportedMedia when the pixels are damaged)."""
    with _judging():
        image = PILImage.open(io.BytesIO(data), formats=list(FORMATS))
        image.load()
    return image


@contextmanager
def _judging() -> Iterator[None]:
    """What Pillow raises on a file it cannot read, as UnsupportedMedia."""
    try:
        yield
    except UnsupportedMedia:
        raise
    except (
        UnidentifiedImageError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        # Malformed files PIL's parsers trip over (e.g. a PNG without IDAT: IndexError in verify).
        IndexError,
        KeyError,
        TypeError,
        struct.error,
    ) as exc:
        raise UnsupportedMedia(
            "Unsupported or damaged image: PNG, JPEG or WebP expected",
            details={"allowed": sorted(FORMATS.values()), "reason": type(exc).__name__},
        ) from None


def encode(
    image: PILImage.Image, source_format: str | None, *, text: dict[str, str] | None = None
) -> Encoded:
    """Re-encode in the source's format (PNG if unknown), EXIF-rotated, metadata dropped.

    `text` becomes PNG text chunks (prompt, seed, model, generation id) on PNG output.
    """
    fmt = source_format if source_format in FORMATS else "PNG"
    image = ImageOps.exif_transpose(image)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=92, optimize=True)
    elif fmt == "WEBP":
        image.save(buffer, "WEBP", quality=90, method=4)
    else:
        info = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            info.add_itxt(key, value)
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(buffer, "PNG", pnginfo=info, optimize=False, compress_level=6)
    return Encoded(
        data=buffer.getvalue(),
        mime_type=FORMATS[fmt],
        width=image.width,
        height=image.height,
        thumbnail=make_thumbnail(image),
    )


def make_thumbnail(image: PILImage.Image) -> bytes:
    """A WebP of at most THUMB_SIZE on the long side.

    The shrink goes by whole factors first (box averaging, `reducing_gap=1.0`) and resamples
    only what is left, and WebP's method 2: together ~6x faster than a full Lanczos and
    method 4, for a thumbnail the eye can't tell apart (it is ~4% larger).
    """
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    scale = min(1.0, THUMB_SIZE / max(image.width, image.height))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    thumb = image.resize(size, PILImage.Resampling.LANCZOS, reducing_gap=1.0)
    buffer = io.BytesIO()
    thumb.save(buffer, "WEBP", quality=80, method=0)
    return buffer.getvalue()


def judge_output(data: bytes, *, text: dict[str, str] | None = None) -> Encoded:
    """A model's answer: judged like any image, then kept as it came when a PNG.

    A PNG's pixel stream is not re-encoded (that was most of a generation's storing time):
    its chunks are rewritten instead — only those that draw the picture are kept (metadata
    and anything after IEND are dropped) and `text` goes in as iTXt chunks. Other formats
    are re-encoded as uploads are.

    A PNG of 8-bit rows (grey, RGB, with or without alpha; not interlaced), what image models
    answer, is judged without being unfiltered (`_png_rows_sound`): that arithmetic cannot fail,
    and it was half of the time a generation spent after its model. Its thumbnail is made when
    first asked for, not here. Any other PNG is decoded to its pixels.
    """
    fmt, width, height = _verified(data)
    thumbnail = None
    if fmt != "PNG" or not _png_rows_sound(data, width, height):
        image = _loaded(data)
        if fmt != "PNG":
            return encode(image, fmt, text=text)
        thumbnail = make_thumbnail(image)  # decoded anyway: made at once
    return Encoded(_png_rewritten(data, text or {}), "image/png", width, height, thumbnail)


# Bytes per pixel of 8-bit PNG colour types: grey, RGB, grey + alpha, RGBA (not palette).
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _png_rows_sound(data: bytes, width: int, height: int) -> bool:
    """Whether a verified PNG (`_verified`) of 8-bit rows, not interlaced, inflates to exactly
    its rows, each starting with a known filter type: all that decoding it could find wrong,
    short of unfiltering. False for any other PNG (decoding judges it then) or a damaged one."""
    if data[12:16] != b"IHDR" or not width or not height:
        return False
    depth, colour, compression, filtering, interlace = data[24:29]
    channels = _PNG_CHANNELS.get(colour)
    if depth != 8 or channels is None or compression or filtering or interlace:
        return False
    row = 1 + width * channels  # the filter type, then the row's bytes
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(_png_stream(data), height * row + 1)
    except zlib.error:
        return False
    return inflater.eof and len(rows) == height * row and max(rows[::row]) <= 4


def _png_stream(data: bytes) -> bytes:
    """The compressed pixels: the first run of consecutive IDAT chunks, as a decoder reads."""
    parts: list[bytes] = []
    for kind, start, end in _png_chunks(data):
        if kind == b"IDAT":
            parts.append(data[start + 8 : end - 4])
        elif parts:
            break
    return b"".join(parts)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DRAWING_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of a judged PNG (its structure sound) up to IEND: its type, and where it
    starts (its length field) and ends (after its CRC) in `data`."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, end = data[pos + 4 : pos + 8], pos + 12 + length
        yield kind, pos, end
        if kind == b"IEND":
            return
        pos = end


def _png_rewritten(data: bytes, text: dict[str, str]) -> bytes:
    """The PNG's drawing chunks with `text` as iTXt chunks before the first IDAT."""
    out = [_PNG_SIGNATURE]
    text_written = False
    for kind, start, end in _png_chunks(data):
        if kind == b"IDAT" and not text_written:
            out.extend(_png_chunk(b"iTXt", _itxt(key, value)) for key, value in text.items())
            text_written = True
        if kind in _PNG_DRAWING_CHUNKS:
            out.append(data[start:end])
    return b"".join(out)


def _itxt(key: str, value: str) -> bytes:
    # keyword, NUL, uncompressed, method 0, empty language tag and translated keyword, UTF-8.
    return key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def store(
    project_id: str,
    encoded: Encoded,
    *,
    source: str,
    flow_id: str | None = None,
    generation_id: str | None = None,
    meta: dict[str, Any] | None = None,
    image_id: str | None = None,
) -> Image:
    image_id = image_id or new_id()
    ext = EXTENSIONS[encoded.mime_type]
    key = f"{project_id}/{image_id}/original.{ext}"
    thumb_key = f"{project_id}/{image_id}/thumb.webp"
    storage = get_storage()
    storage.put(key, encoded.data, encoded.mime_type)
    if encoded.thumbnail is not None:
        try:
            storage.put(thumb_key, encoded.thumbnail, "image/webp")
        except Exception:
            storage.delete(key)
            raise
    image = Image(
        id=image_id,
        project_id=project_id,
        flow_id=flows.touch(flow_id),  # None when it was deleted meanwhile
        source=source,
        generation_id=generation_id,
        storage_key=key,
        thumbnail_key=thumb_key,
        mime_type=encoded.mime_type,
        width=encoded.width,
        height=encoded.height,
        file_size=len(encoded.data),
        sha256=hashlib.sha256(encoded.data).hexdigest(),
        meta=meta or {},
    )
    db.session.add(image)
    db.session.flush()
    return image


def store_thumbnail(original_key: str, thumbnail_key: str) -> None:
    """Make a thumbnail from a stored original and store it: a generated PNG's is made when
    first asked for. FileNotFoundError when the original is gone."""
    storage = get_storage()
    thumbnail = make_thumbnail(decode(storage.get(original_key)))
    storage.put(thumbnail_key, thumbnail, "image/webp")


def remove_files(image: Image) -> None:
    storage = get_storage()
    for key in (image.storage_key, image.thumbnail_key):
        if key:
            storage.delete(key)
