"""Live images (API.md §7): cache HITs, signed public URLs, origins, expiry, daily limit, /sign.

The MISS path (a generation started, single-flight) is in test_live_miss.py.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from app.extensions import db
from app.models import Generation, LiveCacheEntry, utcnow
from app.services import images, live, projects
from app.storage import get_storage
from tests import factories


def _error(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def cache(project, prompt="a red fox", ratio="1:1", hits=0):
    """A cached live image for (prompt, ratio), as a finished MISS leaves it."""
    image = factories.make_image(project)
    entry = LiveCacheEntry(
        project_id=project.id,
        cache_key=live.cache_key(prompt, ratio),
        prompt=live.normalise_prompt(prompt),
        aspect_ratio=ratio,
        image_id=image.id,
        hit_count=hits,
    )
    db.session.add(entry)
    db.session.commit()
    return image


def public_url(project, prompt="a red fox", ratio="1:1", *, exp=None, sig=None, secret=None):
    exp_text = None if exp is None else str(exp)
    signature = sig or live.signature(
        secret or project.live_secret, project.id, ratio, prompt, exp_text
    )
    params = {"prompt": prompt}
    if ratio:
        params["aspectRatio"] = ratio
    if exp_text is not None:
        params["exp"] = exp_text
    params["sig"] = signature
    return f"/live/{project.id}?{urlencode(params)}"


def nothing_was_started(user) -> bool:
    db.session.expire_all()
    return db.session.query(Generation).count() == 0 and user.credits_balance == 50


# --- HIT -----------------------------------------------------------------------------------


def test_public_hit_answers_the_stored_bytes_with_cache_headers(client, project):
    image = cache(project)
    response = client.get(public_url(project))
    assert response.status_code == 200
    assert response.data == get_storage().get(image.storage_key)
    headers = response.headers
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Cache-Status"] == "HIT"
    assert headers["X-Image-Id"] == image.id
    assert headers["X-Cache-Hit-Count"] == "1"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["ETag"] == f'"{image.sha256}"'
    assert "X-Generation-Id" not in headers
    assert client.get(public_url(project)).headers["X-Cache-Hit-Count"] == "2"


def test_hits_are_free_and_start_nothing(client, project, user):
    cache(project)
    for _ in range(3):
        assert client.get(public_url(project)).status_code == 200
    assert nothing_was_started(user)
    db.session.expire_all()
    assert db.session.query(LiveCacheEntry).one().hit_count == 3


def test_api_form_hit_with_the_key_in_a_header(api, project):
    image = cache(project, "a red fox", "16:9")
    response = api.get("/api/v1/live?" + urlencode({"prompt": "a red fox", "aspectRatio": "16:9"}))
    assert response.status_code == 200
    assert response.headers["X-Cache-Status"] == "HIT"
    assert response.headers["X-Image-Id"] == image.id
    assert response.headers["X-RateLimit-Limit"] == "1000"


def test_prompt_is_normalised_for_the_cache_key(api, project):
    image = cache(project, "a red fox", "1:1")
    messy = api.get(
        "/api/v1/live?" + urlencode({"prompt": "  a \t red\n\nfox  ", "aspectRatio": "1:1"})
    )
    assert messy.headers["X-Image-Id"] == image.id
    assert live.cache_key("a red fox", "1:1") != live.cache_key("a red fox", "16:9")
    assert live.cache_key("a red fox", "1:1") != live.cache_key("A red fox", "1:1")


def test_missing_ratio_uses_the_project_default(api, project):
    projects.update_settings(project, {"defaultAspectRatio": "3:2"})
    image = cache(project, "a red fox", "3:2")
    assert api.get("/api/v1/live?prompt=a+red+fox").headers["X-Image-Id"] == image.id


def test_a_deleted_image_is_never_served_from_the_cache(client, project, user):
    image = cache(project)
    project.live_daily_limit = 0  # a MISS would be refused: proves the HIT was not served
    db.session.commit()
    images.delete_image(image)
    response = client.get(public_url(project))
    assert response.status_code == 429
    assert nothing_was_started(user)


def test_api_form_validation(api):
    assert _error(api.get("/api/v1/live"))["message"] == "Prompt is required"
    assert _error(api.get("/api/v1/live?prompt=%20%20"))["code"] == "PROMPT_REQUIRED"
    bad_ratio = api.get("/api/v1/live?prompt=fox&aspectRatio=2:1")
    assert bad_ratio.status_code == 400
    assert _error(bad_ratio) == {"code": "INVALID_ASPECT_RATIO", "message": "Invalid aspect ratio"}
    assert api.get("/api/v1/live?" + urlencode({"prompt": "x" * 4001})).status_code == 400
    # PostgreSQL cannot store a NUL: a MISS with one was a 500 there
    assert _error(api.get("/api/v1/live?prompt=a%00b"))["details"] == {"prompt": "NUL"}


def test_api_form_needs_a_key(client):
    assert client.get("/api/v1/live?prompt=fox").status_code == 401


# --- signatures ----------------------------------------------------------------------------


def _tampered(project):
    good = public_url(project, "a red fox", "1:1")
    query = parse_qs(urlsplit(good).query)
    sig = query["sig"][0]
    exp = int(time.time()) + 3600
    signed_exp = public_url(project, "a red fox", "1:1", exp=exp)
    exp_sig = parse_qs(urlsplit(signed_exp).query)["sig"][0]
    base = f"/live/{project.id}?"
    return {
        "prompt changed": base
        + urlencode({"prompt": "a red cat", "aspectRatio": "1:1", "sig": sig}),
        "ratio changed": base
        + urlencode({"prompt": "a red fox", "aspectRatio": "16:9", "sig": sig}),
        "ratio dropped": base + urlencode({"prompt": "a red fox", "sig": sig}),
        "exp added": base
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "exp": exp, "sig": sig}),
        "exp changed": base
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "exp": exp + 60, "sig": exp_sig}),
        "exp removed": base
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": exp_sig}),
        "sig missing": base + urlencode({"prompt": "a red fox", "aspectRatio": "1:1"}),
        "sig garbage": base + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": "xx"}),
        "sig not ascii": base
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": "é" * 43}),
        "sig with padding": good + "=",
        "another project's sig": f"/live/{factories.first_project(factories.make_user()).id}?"
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": sig}),
        "unknown project": "/live/6f1c3a52-0a43-4b7e-9d57-9a1f2c3b4d5e?"
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": sig}),
        "malformed project": "/live/nope?"
        + urlencode({"prompt": "a red fox", "aspectRatio": "1:1", "sig": sig}),
    }


def test_tampered_or_missing_signatures_are_403_and_start_nothing(client, project, user):
    for case, url in _tampered(project).items():
        response = client.get(url)
        assert response.status_code == 403, case
        assert _error(response)["code"] == "FORBIDDEN", case
    assert nothing_was_started(user)
    db.session.expire_all()
    assert db.session.query(LiveCacheEntry).count() == 0


def test_a_valid_signature_on_an_uncached_prompt_would_generate(client, project):
    project.live_daily_limit = 0
    db.session.commit()
    # Passing the signature check is what lets the request reach the MISS path (here: refused
    # by the daily limit of 0, which is only consulted for a MISS).
    assert client.get(public_url(project, "never seen")).status_code == 429


def test_signature_is_base64url_without_padding_of_hmac_sha256(project):
    import base64
    import hashlib
    import hmac

    message = f"{project.id}\n16:9\na fox"
    expected = base64.urlsafe_b64encode(
        hmac.new(project.live_secret.encode(), message.encode(), hashlib.sha256).digest()
    ).rstrip(b"=")
    assert live.sign(project, "a fox", "16:9") == expected.decode()
    assert "=" not in live.sign(project, "a fox", "16:9", "1900000000")


def test_expired_url_is_410_and_a_future_one_works(client, project):
    cache(project)
    past = client.get(public_url(project, exp=int(time.time()) - 5))
    assert past.status_code == 410
    assert _error(past)["code"] == "LINK_EXPIRED"
    assert client.get(public_url(project, exp=int(time.time()) + 60)).status_code == 200


def test_a_rotated_secret_works_at_once_although_settings_are_cached(client, project):
    cache(project)
    assert client.get(public_url(project)).status_code == 200  # settings now cached
    projects.rotate_live_secret(project)
    assert client.get(public_url(project)).status_code == 200


def test_previous_secret_keeps_working_for_24_hours_after_rotation(client, project, monkeypatch):
    monkeypatch.setattr(live, "SETTINGS_TTL", 0)  # every request reads the project afresh
    cache(project)
    old_secret = project.live_secret
    projects.rotate_live_secret(project)
    assert client.get(public_url(project, secret=old_secret)).status_code == 200
    assert client.get(public_url(project)).status_code == 200
    project.live_secret_rotated_at = utcnow() - timedelta(hours=24, minutes=1)
    db.session.commit()
    assert client.get(public_url(project, secret=old_secret)).status_code == 403
    assert client.get(public_url(project)).status_code == 200


def test_only_the_last_previous_secret_is_kept(client, project):
    cache(project)
    first = project.live_secret
    projects.rotate_live_secret(project)
    projects.rotate_live_secret(project)
    assert client.get(public_url(project, secret=first)).status_code == 403


# --- origins and the daily limit -----------------------------------------------------------


def test_allowed_origins_check_origin_then_referer(client, project):
    cache(project)
    projects.update_settings(
        project, {"liveAllowedOrigins": ["https://shop.example", "cdn.io:8443"]}
    )
    url = public_url(project)
    ok = [
        {"Referer": "https://shop.example/products/1"},
        {"Origin": "https://shop.example"},
        {"Referer": "http://shop.example:8080/page"},
        {"Referer": "https://cdn.io:8443/x"},
    ]
    for headers in ok:
        assert client.get(url, headers=headers).status_code == 200, headers
    refused = [
        {},
        {"Referer": "https://evil.example/"},
        {"Referer": "https://shop.example.evil.io/"},
        {"Origin": "null"},
        {"Referer": "https://cdn.io:9999/x"},
        {"Origin": "https://evil.example", "Referer": "https://shop.example/"},
    ]
    for headers in refused:
        response = client.get(url, headers=headers)
        assert response.status_code == 403, headers
        assert _error(response)["code"] == "FORBIDDEN"


def test_no_allowed_origins_means_any_origin(client, project):
    cache(project)
    assert client.get(public_url(project), headers={"Referer": "https://x.io/"}).status_code == 200


def test_daily_limit_refuses_misses_not_hits(client, project, user):
    cache(project, "cached")
    project.live_daily_limit = 0
    db.session.commit()
    miss = client.get(public_url(project, "not cached"))
    assert miss.status_code == 429
    assert _error(miss)["code"] == "RATE_LIMITED"
    assert int(miss.headers["Retry-After"]) > 0
    assert client.get(public_url(project, "cached")).status_code == 200
    assert nothing_was_started(user)


# --- /live/sign ----------------------------------------------------------------------------


def test_sign_returns_an_absolute_public_url_that_works(api, client, project):
    image = cache(project, "a red fox", "16:9")
    response = api.get(
        "/api/v1/live/sign?" + urlencode({"prompt": "a red fox", "aspectRatio": "16:9"})
    )
    assert response.status_code == 200
    url = response.get_json()["data"]["url"]
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost", f"/live/{project.id}")
    served = client.get(parts.path + "?" + parts.query)
    assert served.status_code == 200
    assert served.headers["X-Image-Id"] == image.id


def test_sign_with_exp_and_without_ratio(api, client, project):
    image = cache(project, "fox", project.default_aspect_ratio)
    exp = int(time.time()) + 600
    url = api.get(f"/api/v1/live/sign?prompt=fox&exp={exp}").get_json()["data"]["url"]
    query = parse_qs(urlsplit(url).query)
    assert "aspectRatio" not in query and query["exp"] == [str(exp)]
    served = client.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert served.headers["X-Image-Id"] == image.id


class TestPublicBaseUrl:
    @pytest.fixture
    def app_config(self):
        return {"PUBLIC_BASE_URL": "https://img.example.com"}

    def test_sign_uses_public_base_url(self, api, project):
        url = api.get("/api/v1/live/sign?prompt=fox").get_json()["data"]["url"]
        assert url.startswith(f"https://img.example.com/live/{project.id}?")


def test_sign_validation(api):
    assert _error(api.get("/api/v1/live/sign"))["code"] == "PROMPT_REQUIRED"
    assert _error(api.get("/api/v1/live/sign?prompt=x&aspectRatio=1:3"))["code"] == (
        "INVALID_ASPECT_RATIO"
    )
    assert api.get("/api/v1/live/sign?prompt=x&exp=soon").status_code == 400
    for exp in ("-1", "\u0663", "1_000", " 5"):  # negative, an Arabic-Indic 3, not plain digits
        response = api.get("/api/v1/live/sign?" + urlencode({"prompt": "x", "exp": exp}))
        assert response.status_code == 400, exp
        assert _error(response)["details"] == {"exp": "must be an integer"}


def test_sign_takes_exp_as_json_schema_integers_and_writes_plain_digits(api, client, project):
    image = cache(project, "fox", "1:1")
    exp = int(time.time()) + 600
    url = api.get(f"/api/v1/live/sign?prompt=fox&aspectRatio=1:1&exp={exp}.0").get_json()
    parts = urlsplit(url["data"]["url"])
    assert parse_qs(parts.query)["exp"] == [str(exp)]
    assert client.get(parts.path + "?" + parts.query).headers["X-Image-Id"] == image.id


def test_a_signed_exp_that_is_not_ascii_digits_is_403_not_a_crash(client, project):
    cache(project)
    assert client.get(public_url(project, exp="\u00b2")).status_code == 403  # "²".isdigit()


def test_prompt_length_is_counted_after_trimming_like_generations(api):
    longest = " " + "x" * 4000 + "\n"
    assert api.get("/api/v1/live/sign?" + urlencode({"prompt": longest})).status_code == 200
    # 4001 characters once trimmed, although collapsing the spaces would make it 3
    spaced = "x" + " " * 3999 + "y"
    response = api.get("/api/v1/live/sign?" + urlencode({"prompt": spaced}))
    assert response.status_code == 400
