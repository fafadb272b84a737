"""Security headers on every kind of response: JSON errors, HTML error pages, image bytes,
static files, redirects, health."""

from __future__ import annotations

import pytest

from tests import factories
from tests.fakes.gemini import tiny_png
from tests.web.test_pages import assert_security_headers


@pytest.fixture
def urls(app, project, api):
    from app.extensions import db

    stored = factories.ingest(project.id, tiny_png(size=(64, 48)), source="uploaded")
    db.session.commit()
    return {"image": f"/i/{stored.id}.png", "thumb": f"/i/{stored.id}/thumb.webp"}


CASES = [
    ("get", "/api/v1/project", False, 401, "application/json"),
    ("get", "/api/v1/no-such-route", True, 404, "application/json"),
    ("get", "/api/v1/generations/not-a-generation", True, 404, "application/json"),
    ("post", "/api/v1/generations", True, 400, "application/json"),
    ("delete", "/api/v1/models", True, 405, "application/json"),
    ("get", "/health", False, 200, "application/json"),
    ("get", "/no-such-page", False, 404, "text/html"),
    ("post", "/projects", False, 400, "text/html"),
    ("get", "/", False, 302, None),
    ("get", "/projects", False, 303, None),
    ("get", "image", False, 200, "image/png"),
    ("get", "thumb", False, 200, "image/webp"),
    ("get", "/i/00000000-0000-0000-0000-000000000000.png", False, 404, None),
    ("get", "/static/js/app.js", False, 200, "text/javascript"),
    ("get", "/static/no-such-file.css", False, 404, None),
]


@pytest.mark.parametrize(("method", "path", "with_key", "status", "content_type"), CASES)
def test_every_kind_of_response_carries_the_security_headers(
    client, api, urls, method, path, with_key, status, content_type
):
    target = urls.get(path, path)
    headers = {"X-API-Key": api.key} if with_key else {}
    kwargs = {"data": "{not json", "content_type": "application/json"} if method == "post" else {}
    response = getattr(client, method)(target, headers=headers, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if content_type:
        assert response.mimetype == content_type
    assert_security_headers(response)
    assert response.headers["X-Frame-Options"] == "DENY"
