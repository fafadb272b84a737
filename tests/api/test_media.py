"""Public image URLs /i/<id>.<ext> and /i/<id>/thumb.webp (API.md §6)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from PIL import Image as PILImage

from app.extensions import db
from app.models import Image
from app.services import imaging, projects
from app.storage import get_storage
from tests import factories
from tests.fakes.gemini import tiny_png


@pytest.fixture
def image(app, project):
    picture = PILImage.new("RGB", (900, 600), (30, 120, 200))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    stored = factories.ingest(project.id, buffer.getvalue(), source="uploaded")
    db.session.commit()
    return stored


def test_original_is_served_without_credentials_with_cache_headers(client, image):
    response = client.get(f"/i/{image.id}.png")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["ETag"] == f'"{image.sha256}"'
    assert int(response.headers["Content-Length"]) == image.file_size
    assert hashlib.sha256(response.data).hexdigest() == image.sha256


def test_matching_etag_is_304_without_a_body(client, image):
    response = client.get(f"/i/{image.id}.png", headers={"If-None-Match": f'"{image.sha256}"'})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == f'"{image.sha256}"'
    other = client.get(f"/i/{image.id}.png", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_thumbnail_is_a_small_webp(client, image):
    response = client.get(f"/i/{image.id}/thumb.webp")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    with PILImage.open(io.BytesIO(response.data)) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= 512
    assert response.headers["ETag"] != f'"{image.sha256}"'


@pytest.fixture
def generated(app, project):
    """A model's PNG as a generation stores it: judged, its thumbnail not made yet."""
    picture = PILImage.new("RGB", (1200, 800), (200, 80, 40))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    encoded = imaging.judge_output(buffer.getvalue())
    stored = imaging.store(project.id, encoded, source="generated")
    db.session.commit()
    return stored


def test_a_generated_images_thumbnail_is_made_on_its_first_request(client, generated):
    storage = get_storage()
    assert not storage.exists(generated.thumbnail_key)
    first = client.get(f"/i/{generated.id}/thumb.webp")
    assert first.status_code == 200 and first.mimetype == "image/webp"
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    with PILImage.open(io.BytesIO(first.data)) as thumb:
        assert thumb.size == (512, 341)
        assert thumb.convert("RGB").getpixel((200, 100)) == pytest.approx((200, 80, 40), abs=3)
    assert storage.exists(generated.thumbnail_key)
    assert client.get(f"/i/{generated.id}/thumb.webp").data == first.data


def test_a_thumbnail_whose_original_is_gone_is_404(client, generated):
    get_storage().delete(generated.storage_key)
    assert client.get(f"/i/{generated.id}/thumb.webp").status_code == 404


def test_head_request_has_the_headers(client, image):
    response = client.head(f"/i/{image.id}.png")
    assert response.status_code == 200 and response.data == b""
    assert response.headers["ETag"] == f'"{image.sha256}"'


@pytest.mark.parametrize(
    "path",
    [
        "/i/{id}.jpg",
        "/i/{id}.webp",
        "/i/2b1e0f3c-3f1a-4c55-9d1c-0a0a0a0a0a0a.png",
        "/i/not-an-id.png",
        "/i/2b1e0f3c-3f1a-4c55-9d1c-0a0a0a0a0a0a/thumb.webp",
    ],
)
def test_wrong_extension_or_unknown_image_is_a_plain_404(client, image, path):
    response = client.get(path.format(id=image.id))
    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert b"<html" not in response.data.lower()


def test_soft_deleted_image_urls_are_404(client, image):
    from app.extensions import db
    from app.models import utcnow

    image.deleted_at = utcnow()
    db.session.commit()
    assert client.get(f"/i/{image.id}.png").status_code == 404
    assert client.get(f"/i/{image.id}/thumb.webp").status_code == 404


def test_jpeg_is_served_as_jpg(client, project):
    from app.extensions import db

    buffer = io.BytesIO()
    PILImage.open(io.BytesIO(tiny_png())).save(buffer, "JPEG")
    stored = factories.ingest(project.id, buffer.getvalue(), source="uploaded")
    db.session.commit()
    response = client.get(f"/i/{stored.id}.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"


def test_the_images_of_a_deleted_project_are_gone_with_their_urls_and_files(client, user, project):
    image = factories.make_image(project)
    image_id, key = image.id, image.storage_key
    assert client.get(f"/i/{image_id}.png").status_code == 200
    kept = factories.make_image(projects.create_project(user, "Another"))

    projects.delete_project(project)

    assert client.get(f"/i/{image_id}.png").status_code == 404
    assert client.get(f"/i/{image_id}/thumb.webp").status_code == 404
    assert db.session.query(Image).count() == 1
    # A maintenance job (the embedded queue's worker thread here) removes its files.
    deadline = time.monotonic() + 30
    while get_storage().exists(key):
        assert time.monotonic() < deadline, "the deleted project's files are still stored"
        time.sleep(0.05)
    assert get_storage().exists(kept.storage_key)
    assert client.get(f"/i/{kept.id}.png").status_code == 200


def test_removing_files_spares_a_project_that_exists(project):
    image = factories.make_image(project)
    projects.remove_project_files(project.id)
    assert get_storage().exists(image.storage_key)
