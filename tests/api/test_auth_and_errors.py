"""API keys authenticate /api/v1; errors always come back in the contract's envelope."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import ApiKey
from app.services import api_keys
from tests import factories


def _error(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_key_in_x_api_key_header_reads_the_project(api, project):
    response = api.get("/api/v1/project")
    assert response.status_code == 200
    assert response.get_json()["data"]["id"] == project.id


def test_key_as_bearer_token_works(client, user, project):
    key = factories.make_key(user, project).plaintext
    response = client.get("/api/v1/project", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_key_format_is_pk_plus_40_url_safe_characters_and_only_a_hash_is_stored(user, project):
    created = factories.make_key(user, project)
    assert re.fullmatch(r"pk_[A-Za-z0-9_-]{40}", created.plaintext)
    assert created.key.key_hash == api_keys.hash_key(created.plaintext)
    assert created.plaintext not in (created.key.key_hash, created.key.prefix)


def test_missing_key_is_401_in_the_envelope(client):
    response = client.get("/api/v1/project")
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHORIZED"


def test_key_in_the_query_string_is_ignored(client, user, project):
    key = factories.make_key(user, project).plaintext
    assert client.get(f"/api/v1/project?api_key={key}&key={key}").status_code == 401


def test_revoked_key_gets_401_at_once(api, user):
    assert api.get("/api/v1/project").status_code == 200
    key = api_keys.list_keys(user)[0]
    api_keys.revoke_key(user, key.id)
    response = api.get("/api/v1/project")
    assert response.status_code == 401
    assert "revoked" in _error(response)["message"]


def _last_used(key_id: str):
    db.session.commit()  # a fresh read, not the test's earlier one
    return db.session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


def test_last_use_is_recorded_at_most_once_a_minute(api, user):
    (key,) = api_keys.list_keys(user)
    assert _last_used(key.id) is None
    assert api.get("/api/v1/project").status_code == 200
    first = _last_used(key.id)
    assert first is not None
    assert api.get("/api/v1/project").status_code == 200
    assert _last_used(key.id) == first

    a_while_ago = first - api_keys.TOUCH_EVERY - timedelta(seconds=1)
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=a_while_ago))
    db.session.commit()
    assert api.get("/api/v1/project").status_code == 200
    assert _last_used(key.id) >= first


def test_unknown_route_is_a_json_404(api):
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_a_json_405(api):
    response = api.delete("/api/v1/project")
    assert response.status_code == 405
    assert _error(response)["code"] == "METHOD_NOT_ALLOWED"


def test_body_that_is_not_a_json_object_is_invalid_json(api):
    response = api.client.patch(
        "/api/v1/project",
        data="[1, 2]",
        headers={"X-API-Key": api.key, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "INVALID_JSON"


def test_internal_error_is_a_json_500_without_a_stack_trace(app, api, monkeypatch):
    from app.services import projects

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(projects, "update_settings", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = api.patch("/api/v1/project", json={"name": "x"})
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "INTERNAL_ERROR"
    assert "secret internals" not in response.get_data(as_text=True)


def test_project_settings_patch_and_validation(api):
    response = api.patch("/api/v1/project", json={"defaultAspectRatio": "16:9", "name": "Shop"})
    assert response.status_code == 200
    assert response.get_json()["data"]["defaultAspectRatio"] == "16:9"
    bad = api.patch("/api/v1/project", json={"defaultAspectRatio": "7:3"})
    assert bad.status_code == 400
    assert _error(bad) == {"code": "INVALID_ASPECT_RATIO", "message": "Invalid aspect ratio"}


def test_live_secret_rotation_changes_the_secret(api):
    before = api.get("/api/v1/project").get_json()["data"]["liveSecret"]
    after = api.post("/api/v1/project/live-secret").get_json()["data"]["liveSecret"]
    assert before != after


def test_account_reports_both_buckets(api, user):
    data = api.get("/api/v1/account").get_json()["data"]
    assert data["email"] == user.email
    assert data["credits"]["balance"] == 50
    assert data["credits"]["monthlyAllowance"] == 50
    assert data["credits"]["resetsAt"].endswith("Z")


def test_transactions_paginate_and_reject_bad_limits(api):
    response = api.get("/api/v1/credits/transactions?limit=500")
    assert response.status_code == 200
    assert response.get_json()["pagination"] == {
        "total": 1,
        "limit": 100,
        "offset": 0,
        "hasMore": False,
    }
    assert api.get("/api/v1/credits/transactions?limit=-1").status_code == 400
    assert api.get("/api/v1/credits/transactions?offset=abc").status_code == 400
    assert api.get("/api/v1/credits/transactions?type=bogus").status_code == 400


def test_session_caller_needs_csrf_on_writes(client, auth, user):
    auth.login(user.email)
    assert client.get("/api/v1/project").status_code == 200
    response = client.patch("/api/v1/project", json={"name": "no token"})
    assert response.status_code == 400
    assert _error(response)["code"] == "CSRF_FAILED"
    token = factories.csrf_token(client, "/projects")
    ok = client.patch(
        "/api/v1/project", json={"name": "with token"}, headers={"X-CSRFToken": token}
    )
    assert ok.status_code == 200
