"""The API keys page: create (the plaintext shown once), list, revoke, with and without htmx."""

from __future__ import annotations

import json
import re

import pytest
import redis

from app.extensions import db
from app.models import ApiKey
from app.services import api_keys, projects
from tests import factories

KEY_RE = re.compile(
    r'<code class="key-box__value" id="new-key-value"[^>]*>(pk_[A-Za-z0-9_-]{40})</code>'
)


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def create_key(client, name: str, project_id: str):
    token = factories.csrf_token(client, "/keys")
    return client.post("/keys", data={"name": name, "project": project_id, "csrf_token": token})


def revoke(client, key_id: str, headers: dict | None = None):
    token = factories.csrf_token(client, "/keys")
    return client.post(f"/keys/{key_id}/revoke", data={"csrf_token": token}, headers=headers)


def row(page: str, key_id: str) -> str:
    match = re.search(rf'<tr id="key-{key_id}">.*?</tr>', page, re.S)
    assert match, f"no row for key {key_id}"
    return match.group(0)


def test_key_lifecycle_create_use_revoke(signed_in, user, project):
    response = create_key(signed_in, "Production", project.id)
    assert response.status_code == 303
    assert response.location == "/keys"

    page = signed_in.get("/keys").get_data(as_text=True)
    plaintext = KEY_RE.search(page).group(1)
    assert 'data-copy="#new-key-value"' in page
    assert "only time the key is shown" in page

    used = signed_in.application.test_client().get(
        "/api/v1/project", headers={"X-API-Key": plaintext}
    )
    assert used.status_code == 200
    assert used.get_json()["data"]["id"] == project.id

    (key,) = api_keys.list_keys(user)
    assert revoke(signed_in, key.id).status_code == 303
    refused = signed_in.application.test_client().get(
        "/api/v1/project", headers={"X-API-Key": plaintext}
    )
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "UNAUTHORIZED"


def test_plaintext_is_shown_once_and_never_kept(signed_in, user, project):
    create_key(signed_in, "Once", project.id)
    plaintext = KEY_RE.search(signed_in.get("/keys").get_data(as_text=True)).group(1)

    again = signed_in.get("/keys").get_data(as_text=True)

    assert plaintext not in again
    assert KEY_RE.search(again) is None
    with signed_in.session_transaction() as session:
        assert plaintext not in json.dumps(dict(session))
    (key,) = api_keys.list_keys(user)
    assert key.key_hash == api_keys.hash_key(plaintext)


def _created_and_shown(app, client, project) -> tuple[str, str]:
    """Create a key through the form: the session cookie right after, and the plaintext."""
    assert create_key(client, "Cookie check", project.id).status_code == 303
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    page = client.get("/keys").get_data(as_text=True)
    return cookie, KEY_RE.search(page).group(1)


def test_the_new_keys_plaintext_never_travels_in_the_session_cookie(app, signed_in, project):
    cookie, plaintext = _created_and_shown(app, signed_in, project)
    session = app.session_interface.get_signing_serializer(app).loads(cookie)
    assert plaintext not in json.dumps(session)
    assert plaintext[3:] not in cookie
    assert plaintext not in signed_in.get("/keys").get_data(as_text=True)  # shown once


class TestWithRedis:
    @pytest.fixture
    def app_config(self, redis_url):
        return {"REDIS_URL": redis_url}

    def test_the_plaintext_waits_in_redis_only_until_it_is_shown(
        self, app, signed_in, project, redis_url
    ):
        shared = redis.Redis.from_url(redis_url)
        assert create_key(signed_in, "Held", project.id).status_code == 303
        (held,) = shared.keys("pictor:new-api-key:*")
        assert 0 < shared.ttl(held) <= 300

        page = signed_in.get("/keys").get_data(as_text=True)
        assert KEY_RE.search(page)
        assert shared.keys("pictor:new-api-key:*") == []


def test_list_shows_name_project_prefix_created_last_used_and_status(signed_in, user, project):
    other = projects.create_project(user, "Side project")
    created = factories.make_key(user, other, "Staging")

    html = row(signed_in.get("/keys").get_data(as_text=True), created.key.id)
    assert "Staging" in html and "Side project" in html
    assert created.key.prefix + "…" in html
    assert created.key.created_at.strftime("%-d %b %Y") in html
    assert "Never" in html
    assert "Active" in html

    api_keys.authenticate(created.plaintext)
    html = row(signed_in.get("/keys").get_data(as_text=True), created.key.id)
    assert "Never" not in html and " UTC" in html


def test_key_can_be_created_for_a_chosen_project_preselected_from_the_link(signed_in, user):
    other = projects.create_project(user, "Campaign")

    page = signed_in.get(f"/keys?project={other.id}").get_data(as_text=True)
    assert f'<option selected value="{other.id}">Campaign</option>' in page

    create_key(signed_in, "Campaign key", other.id)
    (key,) = api_keys.list_keys(user)
    assert key.project_id == other.id


def test_a_key_without_a_name_gets_a_default_name(signed_in, user, project):
    create_key(signed_in, "", project.id)
    assert [k.name for k in api_keys.list_keys(user)] == ["API key"]


def test_another_users_project_cannot_be_chosen(signed_in, user):
    theirs = factories.first_project(factories.make_user("other@example.com"))

    response = create_key(signed_in, "Sneaky", theirs.id)

    assert response.status_code == 422
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(ApiKey)) == 0


def test_revoke_with_htmx_swaps_the_row_and_shows_a_toast(signed_in, user, project):
    created = factories.make_key(user, project, "CI")
    page = signed_in.get("/keys").get_data(as_text=True)
    assert 'data-confirm="Revoke “CI”?' in row(page, created.key.id)

    response = revoke(signed_in, created.key.id, headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="key-{created.key.id}">')
    assert "Revoked" in html and "Revoke<" not in html
    assert "Revoked “CI”" in json.loads(response.headers["HX-Trigger"])["toast"]["message"]


def test_revoke_without_scripts_redirects_back_with_a_message(signed_in, user, project):
    created = factories.make_key(user, project, "Old")

    response = revoke(signed_in, created.key.id)

    assert response.status_code == 303
    page = signed_in.get("/keys").get_data(as_text=True)
    assert "Revoked “Old”" in page
    assert "Revoked</span>" in row(page, created.key.id)


def test_another_users_key_cannot_be_revoked(signed_in):
    other = factories.make_user("owner@example.com")
    theirs = factories.make_key(other, factories.first_project(other))

    assert revoke(signed_in, theirs.key.id).status_code == 404
    assert api_keys.authenticate(theirs.plaintext).key_id == theirs.key.id


def test_empty_state_before_the_first_key(signed_in):
    assert "No API keys yet" in signed_in.get("/keys").get_data(as_text=True)


def test_keys_page_is_not_cached(signed_in):
    assert "no-store" in signed_in.get("/keys").headers["Cache-Control"]
