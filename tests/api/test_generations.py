"""POST/GET /generations and friends (API.md §4), on the embedded queue and worker thread."""

from __future__ import annotations

import io
import json
import socket
import time

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, Generation, User, utcnow
from app.services import credits, generations
from tests import factories
from tests.fakes.gemini import FakeGemini

URL = "/api/v1/generations"


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def _finish(api, generation_id: str, timeout: float = 60) -> dict:
    """Poll until the generation ends (the embedded worker thread runs it)."""
    deadline = time.monotonic() + timeout
    while True:
        data = api.get(f"{URL}/{generation_id}").get_json()["data"]
        if data["status"] in ("success", "failed", "cancelled"):
            return data
        assert time.monotonic() < deadline, f"generation still {data['status']}"
        time.sleep(0.05)


def _balance(user) -> int:
    return credits.balance(user.id)


def _generation_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Generation))


def test_accepted_generation_is_202_with_location_then_succeeds(api, user):
    response = api.post(URL, json={"prompt": "a lighthouse at dusk", "aspectRatio": "16:9"})
    assert response.status_code == 202
    data = response.get_json()["data"]
    assert response.headers["Location"] == f"/api/v1/generations/{data['id']}"
    assert data["status"] == "pending" and data["stage"] == "queued"
    assert data["creditsCharged"] == 1 and _balance(user) == 49

    done = _finish(api, data["id"])
    assert done["status"] == "success" and done["stage"] == "done"
    assert done["startedAt"] and done["completedAt"] and done["processingMs"] >= 0
    image = done["outputImage"]
    assert (image["width"], image["height"]) == (1792, 1008)
    assert image["source"] == "generated" and image["generationId"] == data["id"]
    assert image["url"].endswith(f"/i/{image['id']}.png") and image["url"].startswith("http")
    assert done["flowId"] and image["flowId"] == done["flowId"]  # a flow was made for it
    assert _balance(user) == 49


def test_the_202_answer_is_made_without_reading_the_generation_back(api, app):
    """The accepted generation is answered from what its INSERT wrote: one round trip less
    to the database per request than reading the committed row again."""
    with app.app_context():
        engine = db.engine
    with factories.statements_sent(engine) as statements:
        response = api.post(URL, json={"prompt": "a lighthouse at dusk", "meta": {"n": 7}})

    assert response.status_code == 202
    data = response.get_json()["data"]
    assert (data["prompt"], data["meta"], data["status"]) == (
        "a lighthouse at dusk",
        {"n": 7},
        "pending",
    )
    assert data["createdAt"] and data["flowId"]
    inserted = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO generations"))
    assert not [s for s in statements[inserted:] if s.startswith("SELECT") and "generations" in s]


def test_prefer_wait_answers_201_with_the_finished_generation(api):
    response = api.post(URL, json={"prompt": "a teapot"}, headers={"Prefer": "wait=30"})
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=30"
    data = response.get_json()["data"]
    assert data["status"] == "success" and data["outputImage"]["mimeType"] == "image/png"


@pytest.mark.parametrize("app_config", [{"EMBEDDED_WORKER": False}])
def test_prefer_wait_answers_202_when_not_finished_in_time(api, app_config):
    started = time.monotonic()
    response = api.post(URL, json={"prompt": "slow"}, headers={"Prefer": "wait=1"})
    assert response.status_code == 202
    assert 0.9 <= time.monotonic() - started < 5
    assert response.get_json()["data"]["status"] == "pending"


def test_output_png_says_how_it_was_made(api, app):
    response = api.post(
        URL, json={"prompt": "a red fox", "seed": 42}, headers={"Prefer": "wait=30"}
    )
    data = response.get_json()["data"]
    path = app.config["STORAGE_DIR"] + f"/{data['projectId']}/{data['outputImageId']}/original.png"
    with PILImage.open(path) as png:
        png.load()
        assert png.text["prompt"] == "a red fox"
        assert png.text["seed"] == "42"
        assert png.text["model"] == data["model"] == "local-pillow"
        assert png.text["generation_id"] == data["id"]


def test_a_whole_number_seed_may_be_written_with_a_fraction(api):
    response = api.post(URL, json={"prompt": "a kite", "seed": 42.0})
    assert response.status_code == 202 and response.get_json()["data"]["seed"] == 42


def test_same_seed_and_prompt_give_identical_bytes(api):
    first = api.post(URL, json={"prompt": "twin", "seed": 7}, headers={"Prefer": "wait=30"})
    second = api.post(URL, json={"prompt": "twin", "seed": 7}, headers={"Prefer": "wait=30"})
    a, b = first.get_json()["data"], second.get_json()["data"]
    assert a["outputImage"]["id"] != b["outputImage"]["id"]
    # Only the generation id in the PNG text differs; the picture is the same.
    assert a["outputImage"]["width"] == b["outputImage"]["width"]
    pixels = [api.client.get(d["outputImage"]["url"]).data for d in (a, b)]
    images = [PILImage.open(io.BytesIO(p)).convert("RGB").tobytes() for p in pixels]
    assert images[0] == images[1]


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({}, 400, "PROMPT_REQUIRED", "Prompt is required"),
        ({"prompt": "   "}, 400, "PROMPT_REQUIRED", "Prompt is required"),
        ({"prompt": "x" * 4001}, 400, "VALIDATION_ERROR", None),
        (
            {"prompt": "x", "aspectRatio": "7:3"},
            400,
            "INVALID_ASPECT_RATIO",
            "Invalid aspect ratio",
        ),
        ({"prompt": "x", "template": "baroque"}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "alias": "hero"}, 400, "INVALID_ALIAS", None),
        ({"prompt": "x", "alias": "@last"}, 400, "RESERVED_ALIAS", None),
        ({"prompt": "x", "assignFlowAlias": "@-x"}, 400, "INVALID_ALIAS", None),
        ({"prompt": "x", "seed": "42"}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "meta": {"blob": "y" * 17000}}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "referenceImages": "@a"}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "referenceImages": ["@a"] * 5}, 400, "TOO_MANY_REFERENCES", None),
        ({"prompt": "x", "webhookUrl": "ftp://example.com/h"}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "x", "webhookUrl": ""}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "x", "webhookUrl": False}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "x", "webhookUrl": "http://[nope/h"}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "x", "webhookUrl": " http://a.io/h"}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "x", "webhookUrl": "http://a\x00b.io/h"}, 400, "INVALID_WEBHOOK_URL", None),
        ({"prompt": "a\x00b"}, 400, "VALIDATION_ERROR", None),  # PostgreSQL cannot store it
        ({"prompt": "x", "negativePrompt": "\x00"}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "alias": "@ok", "assignAlias": "nope"}, 400, "INVALID_ALIAS", None),
        ({"prompt": "x", "seed": -1}, 400, "VALIDATION_ERROR", None),
        ({"prompt": " " + "x" * 4001}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "model": "dall-e"}, 400, "VALIDATION_ERROR", None),
        ({"prompt": "x", "referenceImages": ["@nope"]}, 404, "IMAGE_NOT_FOUND", "Image not found"),
        (
            {"prompt": "x", "flowId": "2b1e0f3c-3f1a-4c55-9d1c-0a0a0a0a0a0a"},
            404,
            "FLOW_NOT_FOUND",
            "Flow not found",
        ),
    ],
)
def test_invalid_requests_are_refused_with_the_contract_codes_and_charge_nothing(
    api, user, body, status, code, message
):
    response = api.post(URL, json=body)
    assert response.status_code == status, response.get_json()
    error = _error(response)
    assert error["code"] == code
    if message:
        assert error["message"] == message
    assert _balance(user) == 50 and _generation_count() == 0


def test_null_optional_fields_count_as_absent(api, user):
    nulls = [
        "negativePrompt",
        "aspectRatio",
        "referenceImages",
        "flowId",
        "alias",
        "flowAlias",
        "assignAlias",
        "assignFlowAlias",
        "autoEnhance",
        "template",
        "seed",
        "model",
        "meta",
        "webhookUrl",
        "requestId",
        "dryRun",
    ]
    response = api.post(URL, json={"prompt": "  a kite  ", **dict.fromkeys(nulls)})
    assert response.status_code == 202, response.get_json()
    data = response.get_json()["data"]
    assert data["prompt"] == "a kite" and data["aspectRatio"] == "1:1" and data["flowId"]
    assert data["model"] == "local-pillow" and data["requestId"] is None and data["meta"] == {}
    assert _balance(user) == 49


def test_unknown_reference_names_the_reference(api):
    error = _error(api.post(URL, json={"prompt": "x", "referenceImages": ["@ghost"]}))
    assert error["details"] == {"reference": "@ghost"}


def test_body_that_is_not_an_object_is_invalid_json(api):
    response = api.client.post(
        URL, data="[1, 2]", headers={"X-API-Key": api.key, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and _error(response)["code"] == "INVALID_JSON"


def test_not_enough_credits_is_402_and_nothing_is_queued(api, user):
    db.session.execute(db.update(User).where(User.id == user.id).values(credits_monthly=0))
    db.session.commit()
    response = api.post(URL, json={"prompt": "x"})
    assert response.status_code == 402 and _error(response)["code"] == "INSUFFICIENT_CREDITS"
    assert _generation_count() == 0


@pytest.mark.parametrize("app_config", [{"EMBEDDED_WORKER": False}])
def test_taken_project_alias_is_409_before_anything_is_charged(api, user, app_config):
    first = api.post(URL, json={"prompt": "hero shot", "alias": "@hero"})
    assert first.status_code == 202
    # Still running: the alias is claimed by the pending generation.
    second = api.post(URL, json={"prompt": "another", "alias": "@hero"})
    assert second.status_code == 409
    assert _error(second) == {
        "code": "ALIAS_EXISTS",
        "message": "Alias already exists",
        "details": {"alias": "@hero"},
    }
    assert _balance(user) == 49


def test_aliases_go_to_the_output_and_resolve_as_references(api):
    first = api.post(
        URL,
        json={"prompt": "hero", "alias": "@hero", "flowAlias": "@base"},
        headers={"Prefer": "wait=30"},
    ).get_json()["data"]
    assert first["outputImage"]["alias"] == "@hero"
    taken = api.post(URL, json={"prompt": "again", "alias": "@hero"})
    assert taken.status_code == 409

    second = api.post(
        URL,
        json={
            "prompt": "put @hero on a mug next to @base",
            "flowId": first["flowId"],
            "referenceImages": ["@last"],
        },
        headers={"Prefer": "wait=30"},
    ).get_json()["data"]
    assert second["status"] == "success"
    # @last (technical, in the flow) and @hero / @base are the same image: listed once.
    assert second["referenceImages"] == [
        {"imageId": first["outputImageId"], "ref": "@last", "scope": "technical"}
    ]
    assert second["flowId"] == first["flowId"]


def test_idempotency_key_replays_the_original_and_charges_once(api, user):
    headers = {"Idempotency-Key": "order-1234"}
    first = api.post(URL, json={"prompt": "once"}, headers=headers)
    again = api.post(URL, json={"prompt": "once"}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["data"]["id"] == first.get_json()["data"]["id"]
    assert _balance(user) == 49 and _generation_count() == 1

    conflict = api.post(URL, json={"prompt": "different"}, headers=headers)
    assert conflict.status_code == 409 and _error(conflict)["code"] == "IDEMPOTENCY_CONFLICT"
    assert _balance(user) == 49


def test_request_id_field_is_an_idempotency_key_too(api, user):
    body = {"prompt": "once", "requestId": "req-77"}
    first = api.post(URL, json=body).get_json()["data"]
    again = api.post(URL, json=body)
    assert again.status_code == 200 and again.get_json()["data"]["id"] == first["id"]
    assert first["requestId"] == "req-77" and _balance(user) == 49


def test_idempotency_key_expires_after_24_hours(api, user):
    from datetime import timedelta

    first = api.post(URL, json={"prompt": "old"}, headers={"Idempotency-Key": "k"})
    old_id = first.get_json()["data"]["id"]
    generations.note_changed(old_id)
    db.session.execute(
        db.update(Generation)
        .where(Generation.id == old_id)
        .values(created_at=utcnow() - timedelta(hours=25))
    )
    db.session.commit()
    fresh = api.post(URL, json={"prompt": "new body"}, headers={"Idempotency-Key": "k"})
    assert fresh.status_code == 202 and fresh.get_json()["data"]["id"] != old_id


def test_dry_run_prices_without_creating_or_charging(api, user):
    made = api.post(URL, json={"prompt": "base", "alias": "@base"}, headers={"Prefer": "wait=30"})
    image_id = made.get_json()["data"]["outputImageId"]
    response = api.post(URL, json={"prompt": "with @base", "dryRun": True})
    assert response.status_code == 200
    assert response.get_json()["data"] == {
        "valid": True,
        "creditsCharged": 1,
        "model": "local-pillow",
        "referenceImages": [{"imageId": image_id, "ref": "@base", "scope": "project"}],
    }
    assert _balance(user) == 49 and _generation_count() == 1


def test_dry_run_still_validates(api):
    response = api.post(URL, json={"prompt": "", "dryRun": True})
    assert response.status_code == 400 and _error(response)["code"] == "PROMPT_REQUIRED"
    keyed = api.post(URL, json={"prompt": "x", "dryRun": True}, headers={"Idempotency-Key": ""})
    assert keyed.status_code == 400 and _error(keyed)["details"] == {
        "idempotencyKey": "must be 1 to 255 characters"
    }


@pytest.fixture
def gemini_catalog():
    with FakeGemini() as fake:
        yield fake


def test_model_of_a_higher_tier_is_403(app, api, gemini_catalog):
    app.config.update(gemini_catalog.config())
    response = api.post(URL, json={"prompt": "x", "model": "gemini-3-pro-image-preview"})
    assert response.status_code == 403 and _error(response)["code"] == "TIER_RESTRICTED"
    models = api.get("/api/v1/models").get_json()["data"]
    assert [(m["id"], m["tiers"], m["default"]) for m in models] == [
        ("gemini-2.5-flash-image", ["free", "pro"], True),
        ("gemini-3-pro-image-preview", ["pro"], False),
    ]
    assert gemini_catalog.requests == []


def test_models_lists_the_local_model(api):
    response = api.get("/api/v1/models")
    assert response.status_code == 200
    (model,) = response.get_json()["data"]
    assert model == {
        "id": "local-pillow",
        "provider": "local",
        "kind": "image",
        "credits": 1,
        "tiers": ["free", "pro"],
        "aspectRatios": ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"],
        "default": True,
    }


@pytest.mark.parametrize("app_config", [{"EMBEDDED_WORKER": False}])
def test_list_filters_by_words_status_and_flow(api, app_config):
    ids = [
        api.post(URL, json={"prompt": p}).get_json()["data"]["id"]
        for p in ("A Red fox in snow", "red panda", "blue FOX")
    ]
    listing = api.get(URL).get_json()
    assert [g["id"] for g in listing["data"]] == ids[::-1]
    assert listing["pagination"] == {"total": 3, "limit": 20, "offset": 0, "hasMore": False}
    found = api.get(URL, query_string={"q": "fox RED"}).get_json()["data"]
    assert [g["id"] for g in found] == [ids[0]]
    assert api.get(URL, query_string={"q": "fox \x00"}).get_json()["data"] == []  # no 500
    assert api.get(URL, query_string={"status": "success"}).get_json()["data"] == []
    assert len(api.get(URL, query_string={"status": "pending"}).get_json()["data"]) == 3
    flow_id = api.get(f"{URL}/{ids[1]}").get_json()["data"]["flowId"]
    by_flow = api.get(URL, query_string={"flowId": flow_id}).get_json()["data"]
    assert [g["id"] for g in by_flow] == [ids[1]]
    bad = api.get(URL, query_string={"status": "done"})
    assert bad.status_code == 400 and _error(bad)["details"]["status"]
    page = api.get(URL, query_string={"limit": 1, "offset": 1}).get_json()
    assert [g["id"] for g in page["data"]] == [ids[1]] and page["pagination"]["hasMore"]


def test_another_projects_generation_is_404(api, app):
    other = factories.make_user()
    other_api = factories.ApiClient(
        app.test_client(), factories.make_key(other, factories.first_project(other)).plaintext
    )
    theirs = other_api.post(URL, json={"prompt": "private"}).get_json()["data"]["id"]
    for response in (
        api.get(f"{URL}/{theirs}"),
        api.post(f"{URL}/{theirs}/cancel"),
        api.post(f"{URL}/{theirs}/regenerate"),
        api.delete(f"{URL}/{theirs}"),
        api.get(f"{URL}/{theirs}/events"),
    ):
        assert response.status_code == 404
        assert _error(response) == {
            "code": "GENERATION_NOT_FOUND",
            "message": "Generation not found",
        }
    assert api.get(f"{URL}/not-a-uuid").status_code == 404


@pytest.mark.parametrize("app_config", [{"EMBEDDED_WORKER": False}])
def test_cancel_refunds_a_pending_generation_once(api, user, app_config):
    generation = api.post(URL, json={"prompt": "never mind"}).get_json()["data"]
    assert _balance(user) == 49
    response = api.post(f"{URL}/{generation['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "cancelled"
    assert _balance(user) == 50
    again = api.post(f"{URL}/{generation['id']}/cancel")
    assert again.status_code == 409 and _error(again)["code"] == "INVALID_STATE"
    refunds = db.session.scalar(select(func.count()).where(CreditTransaction.type == "refund"))
    assert refunds == 1 and credits.ledger_consistent(user.id)


def test_finished_generation_cannot_be_cancelled(api):
    done = api.post(URL, json={"prompt": "x"}, headers={"Prefer": "wait=30"}).get_json()["data"]
    response = api.post(f"{URL}/{done['id']}/cancel")
    assert response.status_code == 409
    assert _error(response)["details"] == {"status": "success"}


def test_delete_hides_the_generation_and_its_image(api):
    done = api.post(URL, json={"prompt": "x", "alias": "@gone"}, headers={"Prefer": "wait=30"})
    data = done.get_json()["data"]
    assert api.client.get(data["outputImage"]["url"]).status_code == 200
    assert api.delete(f"{URL}/{data['id']}").status_code == 204
    assert api.get(f"{URL}/{data['id']}").status_code == 404
    kept = api.get(f"{URL}/{data['id']}", query_string={"includeDeleted": "true"})
    assert kept.status_code == 200 and kept.get_json()["data"]["deletedAt"]
    assert api.client.get(data["outputImage"]["url"]).status_code == 404
    assert api.get(URL).get_json()["data"] == []
    # The alias is free again.
    assert api.post(URL, json={"prompt": "y", "alias": "@gone", "dryRun": True}).status_code == 200


def test_regenerate_runs_again_charges_again_and_moves_the_alias(api, user):
    first = api.post(
        URL, json={"prompt": "a castle", "alias": "@castle"}, headers={"Prefer": "wait=30"}
    ).get_json()["data"]
    response = api.post(f"{URL}/{first['id']}/regenerate", headers={"Prefer": "wait=30"})
    assert response.status_code == 201
    again = response.get_json()["data"]
    assert again["regeneratedFrom"] == first["id"] and again["id"] != first["id"]
    assert again["prompt"] == "a castle" and again["flowId"] == first["flowId"]
    assert again["outputImage"]["alias"] == "@castle"
    old = api.get(f"{URL}/{first['id']}").get_json()["data"]
    assert old["outputImage"]["alias"] is None
    assert _balance(user) == 48

    retried = api.post(f"{URL}/{again['id']}/retry")
    assert retried.status_code == 202
    assert retried.get_json()["data"]["regeneratedFrom"] == again["id"]


def test_upscale_makes_a_bigger_generated_image(api, user):
    source = api.post(
        URL, json={"prompt": "wide", "aspectRatio": "16:9"}, headers={"Prefer": "wait=30"}
    ).get_json()["data"]["outputImage"]
    too_big = api.post(f"/api/v1/images/{source['id']}/upscale", json={"scale": 4})
    assert too_big.status_code == 400  # 1792 × 4 is more than 4096 px
    assert "at most 4096 px a side" in _error(too_big)["message"]
    response = api.post(
        f"/api/v1/images/{source['id']}/upscale", json={"scale": 2}, headers={"Prefer": "wait=60"}
    )
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert data["kind"] == "upscale" and data["status"] == "success"
    output = data["outputImage"]
    assert (output["width"], output["height"]) == (3584, 2016)
    assert output["source"] == "generated" and output["id"] != source["id"]
    assert _balance(user) == 48
    bad = api.post(f"/api/v1/images/{source['id']}/upscale", json={"scale": 3})
    assert bad.status_code == 400 and _error(bad)["details"] == {"scale": "must be 2 or 4"}
    missing = api.post(
        "/api/v1/images/2b1e0f3c-3f1a-4c55-9d1c-0a0a0a0a0a0a/upscale", json={"scale": 2}
    )
    assert missing.status_code == 404 and _error(missing)["code"] == "IMAGE_NOT_FOUND"


def _events(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_events_stream_each_change_and_end_with_the_terminal_status(api):
    generation = api.post(URL, json={"prompt": "streamed"}).get_json()["data"]
    response = api.get(f"{URL}/{generation['id']}/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = _events(response.get_data(as_text=True))
    assert all(name == "status" for name, _ in events)
    states = [(data["status"], data["stage"]) for _, data in events]
    assert states[-1] == ("success", "done")
    assert len(states) == len(set(states))  # one event per change
    assert events[-1][1]["outputImage"]["id"]


def test_events_of_a_finished_generation_is_one_event(api):
    done = api.post(URL, json={"prompt": "x"}, headers={"Prefer": "wait=30"}).get_json()["data"]
    events = _events(api.get(f"{URL}/{done['id']}/events").get_data(as_text=True))
    assert [(e[1]["status"], e[1]["stage"]) for e in events] == [("success", "done")]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("app_config", [{"REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"}])
def test_queue_down_is_503_and_leaves_nothing_behind(api, user, app_config):
    response = api.post(URL, json={"prompt": "x"})
    assert response.status_code == 503
    assert _error(response)["code"] == "SERVICE_UNAVAILABLE"
    assert _generation_count() == 0
    assert _balance(user) == 50
    usage = db.session.scalar(select(func.count()).where(CreditTransaction.type == "usage"))
    assert usage == 0 and credits.ledger_consistent(user.id)


def test_model_png_is_stored_without_its_metadata_or_trailing_bytes(app, api, gemini_catalog):
    app.config.update(gemini_catalog.config())
    picture = PILImage.new("RGB", (64, 40), (30, 140, 90))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "camera serial 1234")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", pnginfo=info)
    gemini_catalog.enqueue_image(buffer.getvalue() + b"PK\x03\x04 a zip rides along")

    response = api.post(URL, json={"prompt": "a green field"}, headers={"Prefer": "wait=30"})
    data = response.get_json()["data"]
    assert data["status"] == "success", data
    stored = api.client.get(data["outputImage"]["url"]).data
    assert stored.endswith(b"IEND\xaeB`\x82")  # nothing after the last chunk
    with PILImage.open(io.BytesIO(stored)) as png:
        png.load()
        assert "Comment" not in png.text
        assert png.text["prompt"] == "a green field"
        assert png.text["generation_id"] == data["id"]
        assert png.convert("RGB").tobytes() == picture.tobytes()
    assert data["outputImage"]["width"] == 64 and data["outputImage"]["height"] == 40
    thumb = api.client.get(data["outputImage"]["thumbnailUrl"]).data
    assert PILImage.open(io.BytesIO(thumb)).format == "WEBP"
