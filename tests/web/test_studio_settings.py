"""Project settings: defaults, the live endpoint (secret, origins, daily limit, URL builder) and
the webhook secret."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from app.extensions import db
from app.services import live
from tests import factories

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def test_settings_page_shows_the_secrets_and_defaults(signed_in, project):
    response = signed_in.get(f"/projects/{project.id}/settings")

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert project.live_secret in html and project.webhook_secret in html
    assert '<option selected value="1:1">1:1</option>' in html
    assert "Signed URL builder" in html


def test_save_defaults_without_scripts_redirects_with_a_message(signed_in, project):
    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/settings/defaults",
        {"default_aspect_ratio": "16:9", "default_model": ""},
    )

    assert response.status_code == 303
    assert "Defaults saved" in signed_in.get(response.headers["Location"]).get_data(as_text=True)
    db.session.refresh(project)
    assert project.default_aspect_ratio == "16:9" and project.default_model is None


def test_save_defaults_with_htmx_answers_the_card_and_a_toast(signed_in, project):
    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/settings/defaults",
        {"default_aspect_ratio": "4:5", "default_model": ""},
        HX,
    )

    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section class="card" id="settings-defaults"')
    assert '<option selected value="4:5">' in html
    assert json.loads(response.headers["HX-Trigger"])["toast"]["message"] == "Defaults saved"


def test_a_bad_aspect_ratio_is_shown_next_to_the_field(signed_in, project):
    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/settings/defaults",
        {"default_aspect_ratio": "7:3", "default_model": ""},
        HX,
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'id="default_aspect_ratio-error".*?Invalid aspect ratio', html, re.S)
    db.session.refresh(project)
    assert project.default_aspect_ratio == "1:1"


def test_live_settings_keep_hosts_and_the_daily_limit(signed_in, project):
    factories.post_form(
        signed_in,
        f"/projects/{project.id}/settings/live",
        {
            "live_allowed_origins": "https://Example.com/page\n\n  shop.example.org ",
            "live_daily_limit": "25",
        },
        HX,
    )

    db.session.refresh(project)
    assert project.live_allowed_origins == ["example.com", "shop.example.org"]
    assert project.live_daily_limit == 25


def test_a_negative_daily_limit_is_shown_next_to_the_field(signed_in, project):
    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/settings/live",
        {"live_allowed_origins": "", "live_daily_limit": "-3"},
        HX,
    )

    assert response.status_code == 422
    assert re.search(
        r'id="live_daily_limit-error".*?Must be 0 or more', response.get_data(as_text=True), re.S
    )


def test_rotating_the_live_secret_shows_the_new_one(signed_in, project):
    old = project.live_secret

    response = factories.post_form(
        signed_in, f"/projects/{project.id}/settings/live-secret", headers=HX
    )

    db.session.refresh(project)
    html = response.get_data(as_text=True)
    assert project.live_secret != old and project.live_secret_previous == old
    assert project.live_secret in html and old not in html
    assert "previous one keeps working for 24 hours" in response.headers["HX-Trigger"]


def test_rotating_the_webhook_secret_without_scripts(signed_in, project):
    old = project.webhook_secret

    response = factories.post_form(signed_in, f"/projects/{project.id}/settings/webhook-secret")

    assert response.status_code == 303
    db.session.refresh(project)
    assert project.webhook_secret != old and project.webhook_secret.startswith("whsec_")


def test_url_builder_signs_a_public_live_url(signed_in, project):
    response = signed_in.get(
        f"/projects/{project.id}/settings/live-url?prompt=a+red+fox&aspect_ratio=16:9", headers=HX
    )

    html = response.get_data(as_text=True)
    url = re.search(r'data-live-preview="([^"]+)"', html).group(1).replace("&amp;", "&")
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.path == f"/live/{project.id}"
    assert query["prompt"] == ["a red fox"] and query["aspectRatio"] == ["16:9"]
    assert query["sig"] == [
        live.signature(project.live_secret, project.id, "16:9", "a red fox", None)
    ]


def test_url_builder_without_scripts_renders_the_settings_page_with_the_url(signed_in, project):
    html = signed_in.get(f"/projects/{project.id}/settings/live-url?prompt=owl").get_data(
        as_text=True
    )

    assert "<html" in html and f"/live/{project.id}?prompt=owl" in html


def test_url_builder_needs_a_prompt(signed_in, project):
    response = signed_in.get(f"/projects/{project.id}/settings/live-url?prompt=+", headers=HX)

    assert response.status_code == 422
    assert "Prompt is required" in response.get_data(as_text=True)


class TestAnotherUsersProject:
    @pytest.fixture
    def theirs(self, app):
        return factories.first_project(factories.make_user("someone-else@example.com"))

    def test_their_settings_are_404(self, signed_in, theirs):
        assert signed_in.get(f"/projects/{theirs.id}/settings").status_code == 404
        assert (
            signed_in.get(
                f"/projects/{theirs.id}/settings/live-url?prompt=x", headers=HX
            ).status_code
            == 404
        )

    def test_their_secret_cannot_be_rotated(self, signed_in, theirs):
        old = theirs.live_secret

        response = factories.post_form(
            signed_in, f"/projects/{theirs.id}/settings/live-secret", headers=HX
        )

        assert response.status_code == 404
        db.session.refresh(theirs)
        assert theirs.live_secret == old
