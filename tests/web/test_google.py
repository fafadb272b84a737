"""Google sign-in end to end against the loopback OIDC provider (tests/fakes/oidc.py).

The test client plays the browser: it starts at /auth/google, follows the redirect to the fake
provider's authorize endpoint over real HTTP, and comes back to /auth/google/callback with the
code and state the provider gave it.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from app.services import accounts
from tests import factories
from tests.fakes.oidc import FakeOIDC, Identity


@pytest.fixture
def app_config(fake_oidc: FakeOIDC) -> dict[str, str]:
    return fake_oidc.config()


def start(client, path: str = "/auth/google") -> str:
    """The provider's authorize URL the app redirects to."""
    response = client.get(path)
    assert response.status_code == 302
    return response.location


def consent(authorize_url: str) -> str:
    """What the browser does at the provider: the callback path + query it is sent back to."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    return f"{back.path}?{back.query}"


def google_sign_in(client, path: str = "/auth/google"):
    return client.get(consent(start(client, path)))


def signed_in_email(client) -> str | None:
    """The email the account menu shows, or None when /projects sends us to sign in."""
    page = client.get("/projects")
    if page.status_code != 200:
        return None
    text = page.get_data(as_text=True)
    return text.split('class="menu__email">', 1)[1].split("<", 1)[0]


def test_google_button_shows_when_configured(client):
    for path in ("/login", "/signup"):
        page = client.get(path).get_data(as_text=True)
        assert "Continue with Google" in page
        assert 'href="/auth/google"' in page


def test_new_google_user_is_created_with_a_project_and_signed_in(client, fake_oidc):
    fake_oidc.identity = Identity(sub="g-new", email="New.Person@Example.com", name="New Person")

    response = google_sign_in(client)

    assert response.status_code == 303
    assert response.location == "/projects"
    assert signed_in_email(client) == "new.person@example.com"
    user = accounts.get_by_email("new.person@example.com")
    assert user.google_sub == "g-new"
    assert user.password_hash is None
    assert "My first project" in client.get("/projects").get_data(as_text=True)


def test_authorize_request_uses_pkce_s256_a_nonce_and_our_callback(client, fake_oidc):
    google_sign_in(client)

    query = fake_oidc.authorize_requests[-1]
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] and query["nonce"] and query["state"]
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["redirect_uri"] == "http://localhost/auth/google/callback"
    assert fake_oidc.token_requests[-1]["code_verifier"]


def test_existing_account_with_a_verified_email_is_linked(client, fake_oidc):
    user = factories.make_user("ada@example.com")
    fake_oidc.identity = Identity(sub="g-ada", email="ada@example.com", email_verified=True)

    response = google_sign_in(client)

    assert response.location == "/projects"
    assert signed_in_email(client) == "ada@example.com"
    assert accounts.get_by_email("ada@example.com").google_sub == "g-ada"
    assert accounts.authenticate("ada@example.com", factories.PASSWORD).id == user.id


def test_linked_google_account_signs_in_again_after_its_email_changed(client, fake_oidc):
    fake_oidc.identity = Identity(sub="g-same", email="first@example.com")
    google_sign_in(client)
    client.post("/logout", data={"csrf_token": factories.csrf_token(client, "/projects")})

    fake_oidc.identity = Identity(sub="g-same", email="renamed@example.com")
    google_sign_in(client)

    assert signed_in_email(client) == "first@example.com"


def test_unverified_email_does_not_take_over_an_existing_account(client, fake_oidc):
    factories.make_user("victim@example.com")
    fake_oidc.identity = Identity(
        sub="g-attacker", email="victim@example.com", email_verified=False
    )

    response = google_sign_in(client)

    assert response.location == "/login"
    assert signed_in_email(client) is None
    assert accounts.get_by_email("victim@example.com").google_sub is None
    page = client.get("/login").get_data(as_text=True)
    assert "email is not verified" in page


def test_unverified_email_does_not_create_an_account(client, fake_oidc):
    fake_oidc.identity = Identity(
        sub="g-unverified", email="nobody@example.com", email_verified=False
    )

    assert google_sign_in(client).location == "/login"
    assert accounts.get_by_email("nobody@example.com") is None


def test_email_linked_to_another_google_account_is_refused(client, fake_oidc):
    fake_oidc.identity = Identity(sub="g-original", email="shared@example.com")
    google_sign_in(client)
    client.post("/logout", data={"csrf_token": factories.csrf_token(client, "/projects")})

    fake_oidc.identity = Identity(sub="g-reassigned", email="shared@example.com")
    response = google_sign_in(client)

    assert response.location == "/login"
    assert signed_in_email(client) is None
    assert accounts.get_by_email("shared@example.com").google_sub == "g-original"


def test_forged_state_is_refused(client, fake_oidc):
    callback = consent(start(client))
    code = parse_qs(urlsplit(callback).query)["code"][0]

    response = client.get(f"/auth/google/callback?code={code}&state=forged-state")

    assert response.status_code == 303
    assert response.location == "/login"
    assert signed_in_email(client) is None
    assert "Google sign-in did not complete" in client.get("/login").get_data(as_text=True)


def test_callback_cannot_be_replayed(client, fake_oidc):
    callback = consent(start(client))
    assert client.get(callback).location == "/projects"
    client.post("/logout", data={"csrf_token": factories.csrf_token(client, "/projects")})

    assert client.get(callback).location == "/login"
    assert signed_in_email(client) is None


def test_callback_in_another_browser_session_is_refused(app, client, fake_oidc):
    callback = consent(start(client))
    other_browser = app.test_client()

    assert other_browser.get(callback).location == "/login"
    assert signed_in_email(other_browser) is None


def test_id_token_with_the_wrong_nonce_is_refused(client, fake_oidc):
    fake_oidc.tamper_nonce = True

    response = google_sign_in(client)

    assert response.location == "/login"
    assert signed_in_email(client) is None
    assert accounts.get_by_email(fake_oidc.identity.email) is None


def test_provider_error_such_as_a_denied_consent_is_refused(client, fake_oidc):
    state = parse_qs(urlsplit(start(client)).query)["state"][0]

    response = client.get(f"/auth/google/callback?error=access_denied&state={state}")

    assert response.location == "/login"
    assert signed_in_email(client) is None


def test_next_survives_the_round_trip_through_google(client, fake_oidc):
    assert google_sign_in(client, "/auth/google?next=/keys").location == "/keys"


def test_next_pointing_off_site_is_dropped(client, fake_oidc):
    response = google_sign_in(client, "/auth/google?next=https://evil.example/")
    assert response.location == "/projects"


def test_session_is_rotated_at_google_sign_in(client, fake_oidc):
    with client.session_transaction() as session:
        session["planted"] = "by someone else"

    google_sign_in(client)

    with client.session_transaction() as session:
        assert "planted" not in session


class TestWithoutGoogle:
    @pytest.fixture
    def app_config(self) -> dict[str, None]:
        return {"GOOGLE_CLIENT_ID": None, "GOOGLE_CLIENT_SECRET": None}

    def test_button_is_hidden_and_the_routes_send_you_to_sign_in(self, client):
        assert "Continue with Google" not in client.get("/login").get_data(as_text=True)
        assert "Continue with Google" not in client.get("/signup").get_data(as_text=True)
        assert client.get("/auth/google").location == "/login"
        assert client.get("/auth/google/callback?code=x&state=y").location == "/login"


class TestProviderDown:
    @pytest.fixture
    def app_config(self, fake_oidc: FakeOIDC) -> dict[str, str]:
        return {**fake_oidc.config(), "GOOGLE_DISCOVERY_URL": "http://127.0.0.1:1/.well-known/x"}

    def test_starting_says_google_is_unavailable(self, client):
        response = client.get("/auth/google")

        assert response.status_code == 303
        assert response.location == "/login"
        assert "Google sign-in is unavailable" in client.get("/login").get_data(as_text=True)


class TestPublicBaseUrl:
    @pytest.fixture
    def app_config(self, fake_oidc: FakeOIDC) -> dict[str, str]:
        return {**fake_oidc.config(), "PUBLIC_BASE_URL": "https://pictor.example"}

    def test_callback_address_uses_the_public_base_url(self, client):
        query = parse_qs(urlsplit(start(client)).query)
        assert query["redirect_uri"] == ["https://pictor.example/auth/google/callback"]
