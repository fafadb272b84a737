"""Public capability URLs for image bytes (API.md §6): /i/<id>.<ext> and /i/<id>/thumb.webp.

No credentials: the unguessable id is the capability. Bytes are streamed from storage with
their content type, `nosniff`, the sha256 as ETag (If-None-Match → 304) and a year of immutable
caching. A soft-deleted or unknown image — or the wrong extension — is a plain-text 404.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from app.extensions import db
from app.models import Image, is_uuid
from app.services import imaging
from app.storage import get_storage

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

bp = Blueprint("media", __name__)

CACHE_FOREVER = "public, max-age=31536000, immutable"


def _missing() -> Response:
    response = Response("Not found\n", status=404, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _live_image(image_id: str) -> Image | None:
    image = db.session.get(Image, image_id) if is_uuid(image_id) else None
    return image if image is not None and image.deleted_at is None else None


def stored_file(key: str, mime_type: str, size: int | None = None) -> Response:
    """A stored file as the response body, handed to the server as a file (gunicorn sends a
    local one with sendfile(2), without copying it through Python). FileNotFoundError when the
    file is missing."""
    body, size = open_stored(request.environ, key, size)
    response = Response(body, mimetype=mime_type, direct_passthrough=True)
    if size is not None:
        response.content_length = size
    return response


def open_stored(
    environ: WSGIEnvironment, key: str, size: int | None = None
) -> tuple[Iterable[bytes], int | None]:
    """A stored file wrapped for the WSGI server, and its size when known."""
    handle = get_storage().open(key)
    if size is None:
        with suppress(OSError, AttributeError):  # not a local file
            size = os.fstat(handle.fileno()).st_size
    return wrap_file(environ, handle), size


def _send(
    key: str,
    mime_type: str,
    etag: str,
    size: int | None,
    make: Callable[[], None] | None = None,
) -> Response:
    """The stored file `key`, or 304; `make` makes it when it is missing (else 404)."""
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        try:
            response = _stored_or_made(key, mime_type, size, make)
        except FileNotFoundError:
            return _missing()
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_FOREVER
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _stored_or_made(
    key: str, mime_type: str, size: int | None, make: Callable[[], None] | None
) -> Response:
    try:
        return stored_file(key, mime_type, size)
    except FileNotFoundError:
        if make is None:
            raise
    make()
    return stored_file(key, mime_type, size)


@bp.get("/i/<image_id>.<ext>")
def image_file(image_id: str, ext: str):
    image = _live_image(image_id)
    if image is None or ext != image.extension:
        return _missing()
    return _send(image.storage_key, image.mime_type, image.sha256, image.file_size)


@bp.get("/i/<image_id>/thumb.webp")
def image_thumbnail(image_id: str):
    image = _live_image(image_id)
    if image is None or not image.thumbnail_key:
        return _missing()
    return _send(
        image.thumbnail_key,
        "image/webp",
        f"{image.sha256}-thumb",
        None,
        # A generated PNG's thumbnail is made on its first request.
        make=partial(imaging.store_thumbnail, image.storage_key, image.thumbnail_key),
    )
