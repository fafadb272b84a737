"""Hostile uploads: judged by decoding, never by name; what is stored is re-encoded pixels only."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage

from app.extensions import db
from app.models import Image
from app.storage import get_storage
from tests import factories


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny file whose IHDR claims width×height RGB pixels (a pixel flood)."""
    return factories.handmade_png(width, height, zlib.compress(b"\0" * 1024))


def _jpeg(size: int = 256, **save_args) -> bytes:
    image = PILImage.effect_noise((size, size), 80).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **save_args)
    return buffer.getvalue()


def _refused(response) -> None:
    assert response.status_code == 415, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert db.session.query(Image).count() == 0


def _stored_bytes(response) -> bytes:
    assert response.status_code == 201, response.get_data(as_text=True)
    image = db.session.get(Image, response.get_json()["data"]["id"])
    return get_storage().get(image.storage_key)


def test_html_renamed_to_png_is_refused(api):
    html = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
    _refused(factories.upload_image(api, html, filename="cat.png"))


def test_truncated_jpeg_is_refused(api):
    whole = _jpeg()
    _refused(factories.upload_image(api, whole[: len(whole) // 2], filename="cut.jpg"))


def test_gif_is_refused_even_though_pillow_reads_it(api):
    buffer = io.BytesIO()
    PILImage.new("P", (10, 10)).save(buffer, "GIF")
    _refused(factories.upload_image(api, buffer.getvalue(), filename="anim.gif"))


def test_svg_is_refused(api):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    _refused(factories.upload_image(api, svg, filename="logo.svg"))


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (8000, 8000)])
def test_pixel_flood_is_refused_without_allocating_the_pixels(api, width, height):
    flood = png_with_header_size(width, height)
    assert len(flood) < 200
    tracemalloc.start()
    try:
        response = factories.upload_image(api, flood, filename="flood.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _refused(response)
    assert peak < 32 * 1024 * 1024  # decoding 30000×30000 RGB would need 2.7 GB


def test_polyglot_png_with_trailing_zip_is_stored_without_the_trailer(api):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.py", "print('owned')")
    polyglot = factories.png_bytes(40, 40) + archive.getvalue()
    stored = _stored_bytes(factories.upload_image(api, polyglot, filename="poly.png"))
    assert b"PK\x03\x04" not in stored
    assert b"payload.py" not in stored
    assert stored.endswith(factories.png_chunk(b"IEND", b""))
    assert PILImage.open(io.BytesIO(stored)).size == (40, 40)


def test_metadata_is_dropped_on_re_encoding(api):
    exif = PILImage.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x9286] = "secret comment"  # UserComment
    stored = _stored_bytes(
        factories.upload_image(api, _jpeg(exif=exif.tobytes()), filename="gps.jpg")
    )
    assert b"SpyCam" not in stored and b"secret comment" not in stored
    assert PILImage.open(io.BytesIO(stored)).format == "JPEG"


def test_a_path_in_the_filename_never_reaches_the_filesystem(api, app, tmp_path):
    response = factories.upload_image(api, factories.png_bytes(), filename="../../x.py")
    assert response.status_code == 201
    image = db.session.get(Image, response.get_json()["data"]["id"])
    assert image.storage_key == f"{image.project_id}/{image.id}/original.png"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if p.name == "x.py" or p.suffix == ".py"]
    assert not (Path(app.config["STORAGE_DIR"]).parent.parent / "x.py").exists()
