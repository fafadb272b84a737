"""Factories for users, projects and keys, and small clients for the web and the API."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.models import Project, User
from app.services import accounts, api_keys, projects

_counter = itertools.count(1)
PASSWORD = "correct horse battery"  # noqa: S105


def make_user(email: str | None = None, password: str = PASSWORD, **kwargs: Any) -> User:
    email = email or f"user{next(_counter)}@example.com"
    return accounts.create_user(email, password, **kwargs)


def first_project(user: User) -> Project:
    return projects.list_projects(user)[0]


def make_key(user: User, project: Project, name: str = "test key") -> api_keys.CreatedKey:
    return api_keys.create_key(user, project, name)


CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(page) or re.compile(r'name="csrf_token"[^>]*value="([^"]+)"').search(
        page
    )
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class AuthActions:
    def __init__(self, client) -> None:
        self.client = client

    def login(self, email: str, password: str = PASSWORD, follow: bool = False):
        token = csrf_token(self.client, "/login")
        return self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token},
            follow_redirects=follow,
        )

    def logout(self):
        token = csrf_token(self.client, "/projects")
        return self.client.post("/logout", data={"csrf_token": token})


class ApiClient:
    """Test client that sends the API key on every request and JSON bodies."""

    def __init__(self, client, key: str) -> None:
        self.client = client
        self.key = key

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        return {"X-API-Key": self.key, **(headers or {})}

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.client.delete(
            path, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )

    def post(self, path: str, json: Any = None, **kwargs: Any):
        return self.client.post(
            path, json=json, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )

    def put(self, path: str, json: Any = None, **kwargs: Any):
        return self.client.put(
            path, json=json, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )

    def patch(self, path: str, json: Any = None, **kwargs: Any):
        return self.client.patch(
            path, json=json, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )


def png_bytes(width: int = 64, height: int = 48, color: str = "#3366cc") -> bytes:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk written by hand, its CRC right."""
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(
    width: int,
    height: int,
    stream: bytes,
    *,
    colour: int = 2,
    interlaced: bool = False,
    idats_apart: bool = False,
) -> bytes:
    """A PNG of 8-bit samples written by hand around `stream` (its rows compressed, or any
    bytes at all), every CRC right; `idats_apart` splits the stream into two IDATs with
    another chunk between them."""
    import struct

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, int(interlaced))
    if idats_apart:
        half = len(stream) // 2
        pixels = (
            png_chunk(b"IDAT", stream[:half])
            + png_chunk(b"tEXt", b"note\0between")
            + png_chunk(b"IDAT", stream[half:])
        )
    else:
        pixels = png_chunk(b"IDAT", stream)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + pixels + png_chunk(b"IEND", b"")


def ingest(project_id: str, data: bytes, **fields: Any):
    """Store bytes as an upload is stored (decoded, re-encoded, thumbnailed); not committed."""
    from app.services import imaging

    decoded = imaging.decode(data)
    return imaging.store(project_id, imaging.encode(decoded, decoded.format), **fields)


def make_image(
    project: Project,
    *,
    source: str = "generated",
    flow=None,  # noqa: ANN001
    alias: str | None = None,
    color: str = "#3366cc",
    created_at=None,  # noqa: ANN001
):
    """An image stored through the real ingest path (bytes decoded, re-encoded, thumbnailed)."""
    from app.extensions import db

    image = ingest(
        project.id, png_bytes(color=color), source=source, flow_id=flow.id if flow else None
    )
    image.alias = alias
    if created_at is not None:
        image.created_at = created_at
    db.session.commit()
    return image


def make_flow(project: Project, meta: dict | None = None):
    from app.services import flows

    return flows.create_flow(project.id, meta)


def make_generation(
    project: Project,
    user: User,
    prompt: str = "a red fox in the snow",
    *,
    run: bool = True,
    fail: tuple[str, str] | None = None,
    **params: Any,
):
    """A generation accepted (and charged) by the real service, then run in this process
    (success), ended with `fail=(code, message)`, or left pending with `run=False`."""
    from app.services import generations

    generation, _ = generations.create(project, user, {"prompt": prompt, **params}, enqueue=False)
    if fail is not None:
        generations.fail(generation.id, *fail)
    elif run:
        generations.run(generation.id)
    return generations.get_generation(project.id, generation.id)


def post_form(client, path: str, data: dict | None = None, headers: dict | None = None):
    """POST a form the way a page does: with the CSRF token from a signed-in page."""
    token = csrf_token(client, "/projects")
    return client.post(path, data={**(data or {}), "csrf_token": token}, headers=headers)


def upload_image(api: ApiClient, data: bytes | None, filename: str = "photo.png", **fields: Any):
    """POST /api/v1/images/upload as multipart, the way an API client sends a file."""
    import io

    form: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    return api.client.post(
        "/api/v1/images/upload",
        data=form,
        headers={"X-API-Key": api.key},
        content_type="multipart/form-data",
    )


@contextmanager
def statements_sent(engine) -> Iterator[list[str]]:  # noqa: ANN001
    """The SQL statements `engine` sends to the database inside the block, whitespace folded."""
    from sqlalchemy import event

    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def redis_sends(connection) -> Iterator[list[object]]:  # noqa: ANN001
    """What `connection`'s pool sends to Redis inside the block, one entry per send: a
    pipeline is one, so the list's length is the block's round trips."""
    import pytest

    sent: list[object] = []
    connection_class = connection.connection_pool.connection_class
    real_send = connection_class.send_packed_command

    def counting(self, command, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        sent.append(command)
        return real_send(self, command, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection_class, "send_packed_command", counting)
        yield sent
