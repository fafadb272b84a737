"""Project settings and secrets (API.md §8), as the live and webhook features rely on them."""

from __future__ import annotations

import pytest


def _error(response):
    return response.get_json()["error"]


def test_project_has_every_field_of_the_contract(api, project):
    data = api.get("/api/v1/project").get_json()["data"]
    assert set(data) >= {
        "id",
        "name",
        "defaultAspectRatio",
        "defaultModel",
        "liveSecret",
        "liveAllowedOrigins",
        "liveDailyLimit",
        "webhookSecret",
        "createdAt",
    }
    assert data["id"] == project.id
    assert data["webhookSecret"].startswith("whsec_")


def test_patch_live_settings(api):
    response = api.patch(
        "/api/v1/project",
        json={
            "liveAllowedOrigins": ["https://Shop.Example/path", "cdn.io:8443"],
            "liveDailyLimit": 25,
            "defaultModel": None,
            "id": "ignored",
            "liveSecret": "ignored",
        },
    )
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["liveAllowedOrigins"] == ["shop.example", "cdn.io:8443"]
    assert data["liveDailyLimit"] == 25
    assert data["liveSecret"] != "ignored" and data["id"] != "ignored"
    assert (
        api.patch("/api/v1/project", json={"liveDailyLimit": None}).get_json()["data"][
            "liveDailyLimit"
        ]
        is None
    )


@pytest.mark.parametrize(
    "body",
    [
        {"liveDailyLimit": -1},
        {"liveDailyLimit": "10"},
        {"liveDailyLimit": 2**40},
        {"liveAllowedOrigins": "shop.example"},
        {"liveAllowedOrigins": [""]},
        {"name": ""},
        {"name": 42},
        {"defaultModel": "  "},
        {"defaultModel": "m" * 121},  # wider than the column
        {"defaultModel": "m\x00"},  # PostgreSQL cannot store a NUL
        {"name": "a\x00b"},
    ],
)
def test_patch_validation(api, body):
    response = api.patch("/api/v1/project", json=body)
    assert response.status_code == 400
    assert _error(response)["code"] == "VALIDATION_ERROR"


def test_rotating_the_webhook_secret(api):
    before = api.get("/api/v1/project").get_json()["data"]["webhookSecret"]
    response = api.post("/api/v1/project/webhook-secret")
    assert response.status_code == 200
    assert response.get_json()["data"]["webhookSecret"] != before


def test_unauthenticated_writes_are_401_not_a_csrf_error(client):
    for response in (
        client.patch("/api/v1/project", json={"name": "x"}),
        client.post("/api/v1/project/live-secret"),
        client.put("/api/v1/canvas", json={"state": {}}, headers={"If-Match": '"0"'}),
    ):
        assert response.status_code == 401
        assert _error(response)["code"] == "UNAUTHORIZED"
