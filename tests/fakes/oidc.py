"""A small OpenID Connect provider on a loopback port, standing in for Google in tests.

It serves what Authlib's Flask client uses: discovery, authorize (redirects straight back with
a code and the state, as if the user had consented), token (an RS256 id_token with `kid`, `iss`,
`aud`, `sub`, `iat`, `exp`, `nonce` and the email claims; PKCE S256 and client credentials
checked), JWKS and userinfo. Use the `fake_oidc` fixture and script it::

    def test_something(fake_oidc: FakeOIDC) -> None:
        fake_oidc.identity = Identity(sub="g-42", email="ada@example.com", email_verified=False)
        fake_oidc.tamper_nonce = True        # the next id_tokens carry a nonce nobody asked for
        app.config.update(fake_oidc.config())

Every authorize request's query is recorded in `authorize_requests`; token requests' forms in
`token_requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CLIENT_ID = "pictor-test-client.apps.example"
CLIENT_SECRET = "pictor-test-secret"  # noqa: S105


@dataclass
class Identity:
    """Who "signs in at Google" next."""

    sub: str = "google-user-1"
    email: str = "someone@example.com"
    email_verified: bool = True
    name: str | None = "Someone Example"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class FakeOIDC:
    def __init__(self) -> None:
        self.identity = Identity()
        self.tamper_nonce = False
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.kid = "fake-key-" + secrets.token_hex(4)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._codes: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, Identity] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def issuer(self) -> str:
        return self.url

    def config(self) -> dict[str, str]:
        """App settings that point Google sign-in at this provider."""
        return {
            "GOOGLE_CLIENT_ID": CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "GOOGLE_DISCOVERY_URL": self.url + "/.well-known/openid-configuration",
        }

    # --- protocol pieces -----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks",
            "userinfo_endpoint": self.url + "/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url(_int_bytes(numbers.n)),
            "e": _b64url(_int_bytes(numbers.e)),
        }
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        """An RS256 JWT of `claims`, with this provider's `kid` in the header."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def claims(self, identity: Identity, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": identity.sub,
            "iat": now,
            "exp": now + 300,
            "email": identity.email,
            "email_verified": identity.email_verified,
        }
        if identity.name:
            claims["name"] = identity.name
        if nonce is not None:
            claims["nonce"] = "tampered-" + nonce if self.tamper_nonce else nonce
        return claims

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """Consent at once: a 302 back to redirect_uri with a fresh code and the state."""
        with self._lock:
            self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("response_type") != "code"
            or not redirect_uri
        ):
            return 400, {}
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = {
                "redirect_uri": redirect_uri,
                "nonce": query.get("nonce"),
                "code_challenge": query.get("code_challenge"),
                "code_challenge_method": query.get("code_challenge_method"),
                "identity": self.identity,
            }
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return 302, {"Location": redirect_uri + separator + urlencode(params)}

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests.append(form)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization.split(" ", 1)[1]).decode()
            client_id, _, client_secret = (unquote(part) for part in decoded.partition(":"))
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or grant["redirect_uri"] != form.get("redirect_uri")
        ):
            return 400, {"error": "invalid_grant"}
        if grant["code_challenge"] is not None:
            verifier = form.get("code_verifier", "")
            expected = _b64url(hashlib.sha256(verifier.encode()).digest())
            if grant["code_challenge_method"] != "S256" or expected != grant["code_challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = grant["identity"]
        return 200, {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "openid email profile",
            "id_token": self.sign(self.claims(grant["identity"], grant["nonce"])),
        }

    def userinfo(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        token = (authorization or "").removeprefix("Bearer ").strip()
        with self._lock:
            identity = self._access_tokens.get(token)
        if identity is None:
            return 401, {"error": "invalid_token"}
        claims = self.claims(identity, None)
        return 200, {
            k: claims[k] for k in ("sub", "email", "email_verified", "name") if k in claims
        }

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeOIDC:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOIDC:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _handler_for(fake: FakeOIDC) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query))
            if parts.path == "/.well-known/openid-configuration":
                self._json(200, fake.discovery())
            elif parts.path == "/jwks":
                self._json(200, fake.jwks())
            elif parts.path == "/authorize":
                status, headers = fake.authorize(query)
                self._send(status, b"", headers)
            elif parts.path == "/userinfo":
                self._json(*fake.userinfo(self.headers.get("Authorization")))
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if urlsplit(self.path).path == "/token":
                form = dict(parse_qsl(raw))
                self._json(*fake.token(form, self.headers.get("Authorization")))
            else:
                self._json(404, {"error": "not_found"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: tests read `authorize_requests` / `token_requests` instead."""

    return Handler


@pytest.fixture
def fake_oidc() -> Iterator[FakeOIDC]:
    with FakeOIDC() as provider:
        yield provider
