"""Sign-up, sign-in and sign-out through the real forms, and what the session cookie allows."""

from __future__ import annotations

import re

import pytest

from app.config import load_config
from app.extensions import db
from app.models import User
from app.services import accounts, projects
from tests import factories


def signup(client, email="new@example.com", password="long enough pw", confirm=None):
    return client.post(
        "/signup",
        data={
            "email": email,
            "password": password,
            "confirm": password if confirm is None else confirm,
            "csrf_token": factories.csrf_token(client, "/signup"),
        },
    )


def field_errors(response, field: str) -> list[str]:
    """The messages shown under one field (the ui.field markup: <ul id="<field>-error">)."""
    page = response.get_data(as_text=True)
    block = re.search(rf'<ul class="field__errors" id="{field}-error">(.*?)</ul>', page, re.S)
    return re.findall(r"<span>(.*?)</span>", block.group(1)) if block else []


def sent_to_sign_in(response) -> bool:
    return response.status_code == 303 and response.location.startswith("/login?next=")


def test_login_and_signup_pages_have_the_contract_landmarks(client):
    login = client.get("/login").get_data(as_text=True)
    assert re.search(r'<label class="field__label" for="email">Email</label>', login)
    assert re.search(r'<label class="field__label" for="password">Password</label>', login)
    assert 'name="email"' in login and 'name="password"' in login and 'name="csrf_token"' in login
    assert re.search(r'<button type="submit"[^>]*>Sign in</button>', login)

    signup_page = client.get("/signup").get_data(as_text=True)
    assert re.search(r"for=\"confirm\">Confirm password</label>", signup_page)
    assert re.search(r'<button type="submit"[^>]*>Create account</button>', signup_page)


def test_signup_creates_the_account_with_a_default_project_and_lands_on_projects(client):
    response = signup(client, email="Fresh@Example.com")

    assert response.status_code == 303
    assert response.location == "/projects"
    user = accounts.get_by_email("fresh@example.com")
    assert [p.name for p in projects.list_projects(user)] == ["My first project"]
    page = client.get("/projects").get_data(as_text=True)
    assert "My first project" in page
    assert "Welcome to Pictor" in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"password": "short"}, "password", "Password must be at least 8 characters"),
        ({"confirm": "something else"}, "confirm", "Passwords do not match"),
        ({"email": "not-an-email"}, "email", "Enter a valid email address"),
    ],
)
def test_signup_shows_what_is_wrong_next_to_the_field(client, data, field, message):
    response = signup(client, **data)

    assert response.status_code == 422
    assert field_errors(response, field) == [message]
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 0


def test_signup_with_a_taken_email_says_so(client, user):
    response = signup(client, email=user.email.upper())

    assert response.status_code == 422
    assert field_errors(response, "email") == ["An account with this email already exists"]


def test_sign_in_lands_on_projects(client, auth, user):
    response = auth.login(user.email)

    assert response.status_code == 303
    assert response.location == "/projects"
    assert client.get("/projects").status_code == 200


def test_wrong_password_shows_incorrect_email_or_password_next_to_the_field(client, auth, user):
    response = auth.login(user.email, "wrong password")

    assert response.status_code == 422
    assert field_errors(response, "password") == ["Incorrect email or password"]
    assert f'value="{user.email}"' in response.get_data(as_text=True)  # email kept
    assert sent_to_sign_in(client.get("/projects"))


def test_unknown_email_gets_the_same_message(auth):
    response = auth.login("nobody@example.com")

    assert field_errors(response, "password") == ["Incorrect email or password"]


def test_sign_in_rotates_the_session(client, auth, user):
    with client.session_transaction() as session:
        session["planted"] = "fixation attempt"
    token_before = factories.csrf_token(client, "/login")

    auth.login(user.email)

    with client.session_transaction() as session:
        assert "planted" not in session
    assert factories.csrf_token(client, "/projects") != token_before


@pytest.mark.parametrize(
    ("next_url", "landing"),
    [
        ("/keys", "/keys"),
        ("/projects?x=1", "/projects?x=1"),
        ("https://evil.example/steal", "/projects"),
        ("//evil.example/steal", "/projects"),
        ("/\\evil.example", "/projects"),
        ("/\t/evil.example", "/projects"),
        ("javascript:alert(1)", "/projects"),
    ],
)
def test_sign_in_follows_next_only_to_paths_on_this_site(client, user, next_url, landing):
    response = client.post(
        "/login",
        query_string={"next": next_url},
        data={
            "email": user.email,
            "password": factories.PASSWORD,
            "csrf_token": factories.csrf_token(client),
        },
    )
    assert response.location == landing


def test_a_page_that_needs_sign_in_sends_you_there_and_back(client, user):
    response = client.get("/keys")
    assert response.status_code == 303
    assert response.location == "/login?next=%2Fkeys"

    signed_in = client.post(
        response.location,
        data={
            "email": user.email,
            "password": factories.PASSWORD,
            "csrf_token": factories.csrf_token(client),
        },
    )
    assert signed_in.location == "/keys"


def test_an_htmx_request_without_a_session_redirects_the_whole_page(client):
    response = client.get(
        "/projects",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/keys?x=1"},
    )
    assert response.headers["HX-Redirect"] == "/login?next=%2Fkeys%3Fx%3D1"


def test_signed_in_user_opening_login_or_signup_goes_to_projects(client, auth, user):
    auth.login(user.email)
    assert client.get("/login").location == "/projects"
    assert client.get("/signup").location == "/projects"


def test_sign_out_ends_the_session(client, auth, user):
    auth.login(user.email)

    response = auth.logout()

    assert response.status_code == 303
    assert response.location == "/login"
    assert sent_to_sign_in(client.get("/projects"))
    assert "You have been signed out" in client.get("/login").get_data(as_text=True)


def test_a_session_cookie_replayed_after_sign_out_is_refused(client, auth, user):
    auth.login(user.email)
    stolen = client.get_cookie("session").value

    auth.logout()
    client.set_cookie("session", stolen)
    assert sent_to_sign_in(client.get("/projects"))


def test_sign_out_ends_the_users_other_sessions_too(app, auth, user):
    other_device = app.test_client()
    factories.AuthActions(other_device).login(user.email)

    auth.login(user.email)
    auth.logout()

    assert sent_to_sign_in(other_device.get("/projects"))


def test_sign_out_is_post_only(client, auth, user):
    auth.login(user.email)

    assert client.get("/logout").status_code == 405
    assert client.get("/projects").status_code == 200


def test_a_disabled_accounts_cookie_is_refused(client, auth, user):
    auth.login(user.email)
    db.session.execute(db.update(User).where(User.id == user.id).values(disabled=True))
    db.session.commit()

    assert sent_to_sign_in(client.get("/projects"))


def test_a_disabled_account_cannot_sign_in(auth, user):
    accounts.set_disabled(user, True)

    response = auth.login(user.email)

    assert response.status_code == 422
    assert field_errors(response, "password") == ["Incorrect email or password"]


def test_session_cookie_is_httponly_and_samesite_lax(client, auth, user):
    response = auth.login(user.email)

    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_cookies_are_secure_in_production():
    config = load_config({"PICTOR_ENV": "production", "SECRET_KEY": "x" * 32})
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["REMEMBER_COOKIE_SECURE"] is True
