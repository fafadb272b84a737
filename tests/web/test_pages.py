"""What every page shares: security headers, error pages, CSRF refusals, page-or-fragment."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Project
from tests import factories


def assert_security_headers(response) -> None:
    csp = response.headers["Content-Security-Policy"]
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";") if part.strip()
    )
    assert "'unsafe-eval'" not in directives["script-src"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize("path", ["/login", "/signup", "/no-such-page", "/static/css/app.css"])
def test_security_headers_on_pages_errors_and_static_files(client, path):
    assert_security_headers(client.get(path))


def test_security_headers_on_signed_in_pages(client, auth, user):
    auth.login(user.email)
    for path in ("/projects", "/keys"):
        assert_security_headers(client.get(path))


def test_hsts_only_in_production(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers


class TestProduction:
    @pytest.fixture
    def app_config(self):
        return {"PRODUCTION": True}

    def test_hsts_is_sent(self, client):
        assert "max-age=" in client.get("/login").headers["Strict-Transport-Security"]


def test_unknown_page_is_the_404_error_page(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert 'class="error-page"' in page
    assert "Error 404" in page
    assert response.mimetype == "text/html"


def test_unexpected_failure_is_the_500_error_page_without_details(client, auth, user, monkeypatch):
    from app.services import projects

    auth.login(user.email)

    def broken(owner):
        raise RuntimeError("database exploded: secret detail")

    monkeypatch.setattr(projects, "summaries", broken)
    response = client.get("/projects")

    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert 'class="error-page"' in page and "Error 500" in page
    assert "secret detail" not in page and "Traceback" not in page


def csrf_cases(user_email: str):
    return [
        ("/login", {"email": user_email, "password": factories.PASSWORD}),
        (
            "/signup",
            {"email": "x@example.com", "password": "long enough", "confirm": "long enough"},
        ),
        ("/logout", {}),
        ("/projects", {"name": "Sneaky"}),
    ]


@pytest.mark.parametrize("case", range(4), ids=["login", "signup", "logout", "create-project"])
@pytest.mark.parametrize("token", [None, "forged-token"], ids=["missing", "forged"])
def test_forms_without_a_valid_csrf_token_are_refused(client, auth, user, case, token):
    auth.login(user.email)  # signed in, so logout and create-project would otherwise succeed
    path, data = csrf_cases(user.email)[case]
    if token:
        data = {**data, "csrf_token": token}

    response = client.post(path, data=data)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'class="error-page"' in page and "security token" in page
    assert client.get("/projects").status_code == 200  # still signed in
    assert db.session.scalar(db.select(db.func.count()).select_from(Project)) == 1


def test_csrf_is_refused_for_anonymous_sign_in_too(client, user):
    response = client.post("/login", data={"email": user.email, "password": factories.PASSWORD})

    assert response.status_code == 400
    assert client.get("/projects").status_code == 303


def test_htmx_requests_send_the_token_in_a_header(client, auth, user, project):
    auth.login(user.email)
    token = factories.csrf_token(client, "/projects")
    url = f"/projects/{project.id}/rename"

    refused = client.post(url, data={"name": "A"}, headers={"HX-Request": "true"})
    accepted = client.post(
        url, data={"name": "B"}, headers={"HX-Request": "true", "X-CSRFToken": token}
    )

    assert refused.status_code == 400
    assert accepted.status_code == 200


def test_a_refused_htmx_request_explains_itself_in_a_toast(client, auth, user, project):
    auth.login(user.email)

    response = client.post(
        f"/projects/{project.id}/rename", data={"name": "A"}, headers={"HX-Request": "true"}
    )

    assert "toast" in response.headers["HX-Trigger"]


def test_same_url_answers_the_full_page_or_the_fragment_and_varies_on_hx_request(
    client, auth, user
):
    auth.login(user.email)

    full = client.get("/projects")
    fragment = client.get("/projects", headers={"HX-Request": "true"})
    boosted = client.get("/projects", headers={"HX-Request": "true", "HX-Boosted": "true"})

    assert "HX-Request" in full.headers["Vary"]
    assert "HX-Request" in fragment.headers["Vary"]
    assert full.get_data(as_text=True).startswith("<!doctype html>")
    fragment_html = fragment.get_data(as_text=True)
    assert fragment_html.lstrip().startswith('<div id="projects">')
    assert "<html" not in fragment_html and "site-header" not in fragment_html
    assert boosted.get_data(as_text=True).startswith("<!doctype html>")


def test_home_sends_you_to_sign_in_or_to_your_projects(client, auth, user):
    assert client.get("/").location == "/login"
    auth.login(user.email)
    assert client.get("/").location == "/projects"
