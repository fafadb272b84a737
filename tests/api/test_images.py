"""Images (API.md §6): upload, list, resolve, read, update, alias, delete, restore, purge."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.extensions import db
from app.models import Image, utcnow
from app.services import images
from tests import factories


def _error(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.fixture
def other_project(app):
    owner = factories.make_user()
    return factories.first_project(owner)


# --- upload ------------------------------------------------------------------------------


def test_upload_creates_an_image_in_a_new_flow(api, project):
    response = factories.upload_image(api, factories.png_bytes(80, 60))
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["source"] == "uploaded"
    assert data["projectId"] == project.id
    assert data["flowId"]
    assert (data["width"], data["height"], data["mimeType"]) == (80, 60, "image/png")
    assert data["url"].startswith("http://localhost/i/") and data["url"].endswith(".png")
    assert data["focalPoint"] == {"x": 0.5, "y": 0.5}
    assert data["deletedAt"] is None
    flow = api.get(f"/api/v1/flows/{data['flowId']}").get_json()["data"]
    assert flow["imageCount"] == 1


def test_upload_into_an_existing_flow_with_aliases_and_meta(api, project):
    flow = factories.make_flow(project)
    response = factories.upload_image(
        api,
        factories.png_bytes(),
        alias="@hero",
        flowId=flow.id,
        flowAlias="@bg",
        meta='{"campaign": "spring"}',
    )
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["flowId"] == flow.id
    assert data["alias"] == "@hero"
    assert data["meta"] == {"campaign": "spring"}
    aliases = api.get(f"/api/v1/flows/{flow.id}").get_json()["data"]["aliases"]
    assert aliases == {"@bg": data["id"]}


def test_upload_without_a_file_is_400(api):
    response = factories.upload_image(api, None, alias="@x")
    assert response.status_code == 400
    assert _error(response)["message"] == "File is required"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"alias": "hero"}, "INVALID_ALIAS"),
        ({"alias": "@last"}, "RESERVED_ALIAS"),
        ({"flowAlias": "@-bad"}, "INVALID_ALIAS"),
        ({"meta": "{not json"}, "VALIDATION_ERROR"),
        ({"meta": "[1, 2]"}, "VALIDATION_ERROR"),
        ({"meta": '{"a": "' + "x" * 17000 + '"}'}, "VALIDATION_ERROR"),
    ],
)
def test_upload_field_validation(api, fields, code):
    response = factories.upload_image(api, factories.png_bytes(), **fields)
    assert response.status_code == 400
    assert _error(response)["code"] == code


def test_upload_with_a_taken_alias_is_409_and_stores_nothing(api, project, app):
    factories.make_image(project, alias="@hero")
    response = factories.upload_image(api, factories.png_bytes(), alias="@hero")
    assert response.status_code == 409
    assert _error(response) == {
        "code": "ALIAS_EXISTS",
        "message": "Alias already exists",
        "details": {"alias": "@hero"},
    }
    assert db.session.query(Image).count() == 1


def test_upload_into_an_unknown_or_foreign_flow_is_404(api, other_project):
    foreign = factories.make_flow(other_project)
    for flow_id in ("not-a-uuid", "6f1c3a52-0a43-4b7e-9d57-9a1f2c3b4d5e", foreign.id):
        response = factories.upload_image(api, factories.png_bytes(), flowId=flow_id)
        assert response.status_code == 404
        assert _error(response) == {"code": "FLOW_NOT_FOUND", "message": "Flow not found"}


class TestSizeLimit:
    @pytest.fixture
    def app_config(self):
        return {"MAX_UPLOAD_BYTES": 2000, "MAX_CONTENT_LENGTH": 200_000}

    def test_a_file_over_max_upload_bytes_is_413_file_too_large(self, api):
        big = factories.png_bytes(300, 300, "#123456") + b"\0" * 3000
        response = factories.upload_image(api, big)
        assert response.status_code == 413
        error = _error(response)
        assert (error["code"], error["message"]) == ("FILE_TOO_LARGE", "File too large")

    def test_a_body_over_the_request_limit_gets_the_json_envelope(self, api):
        response = factories.upload_image(api, b"\x89PNG" + b"\0" * 300_000)
        assert response.status_code == 413
        assert response.content_type == "application/json"
        assert _error(response)["message"] == "File too large"


def test_something_that_is_not_an_image_is_415(api):
    response = factories.upload_image(api, b"just some text, honestly", filename="notes.png")
    assert response.status_code == 415
    assert _error(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"


# --- list --------------------------------------------------------------------------------


def _ids(response):
    return [item["id"] for item in response.get_json()["data"]]


def test_list_is_newest_first_with_pagination(api, project):
    now = utcnow()
    made = [
        factories.make_image(project, created_at=now - timedelta(minutes=10 - i)) for i in range(5)
    ]
    response = api.get("/api/v1/images?limit=2")
    assert response.status_code == 200
    assert _ids(response) == [made[4].id, made[3].id]
    assert response.get_json()["pagination"] == {
        "total": 5,
        "limit": 2,
        "offset": 0,
        "hasMore": True,
    }
    last = api.get("/api/v1/images?limit=2&offset=4")
    assert _ids(last) == [made[0].id]
    assert last.get_json()["pagination"] == {"total": 5, "limit": 2, "offset": 4, "hasMore": False}
    beyond = api.get("/api/v1/images?offset=10")
    assert beyond.get_json()["pagination"]["total"] == 5
    assert _ids(beyond) == []


def test_list_filters(api, project):
    flow = factories.make_flow(project)
    generated = factories.make_image(project, flow=flow, alias="@a")
    uploaded = factories.make_image(project, source="uploaded")
    gone = factories.make_image(project)
    images.delete_image(gone)

    assert set(_ids(api.get("/api/v1/images"))) == {generated.id, uploaded.id}
    assert _ids(api.get(f"/api/v1/images?flowId={flow.id}")) == [generated.id]
    assert _ids(api.get("/api/v1/images?source=uploaded")) == [uploaded.id]
    assert _ids(api.get("/api/v1/images?alias=@a")) == [generated.id]
    with_deleted = api.get("/api/v1/images?includeDeleted=true")
    assert set(_ids(with_deleted)) == {generated.id, uploaded.id, gone.id}


@pytest.mark.parametrize(
    "query",
    [
        "source=painted",
        "limit=-1",
        "limit=abc",
        "limit=%D9%A3",  # an Arabic-Indic 3: int() would read it
        "limit=1_0",
        "offset=-5",
        "includeDeleted=maybe",
    ],
)
def test_list_rejects_bad_parameters(api, query):
    response = api.get(f"/api/v1/images?{query}")
    assert response.status_code == 400
    assert _error(response)["code"] == "VALIDATION_ERROR"


def test_list_takes_whole_numbers_written_as_json_schema_allows(api):
    assert api.get("/api/v1/images?limit=5.0").get_json()["pagination"]["limit"] == 5
    assert api.get("/api/v1/images?limit=5e0").get_json()["pagination"]["limit"] == 5
    assert api.get("/api/v1/images?limit=5.5").status_code == 400


@pytest.mark.parametrize(
    ("alias", "code"), [("hero", "INVALID_ALIAS"), ("@last", "RESERVED_ALIAS")]
)
def test_list_alias_filter_must_be_an_alias(api, alias, code):
    response = api.get(f"/api/v1/images?alias={alias}")
    assert response.status_code == 400
    assert _error(response)["code"] == code


def test_list_limit_is_clamped_to_100(api):
    assert api.get("/api/v1/images?limit=500").get_json()["pagination"]["limit"] == 100


def test_list_with_unknown_flow_is_404(api):
    response = api.get("/api/v1/images?flowId=6f1c3a52-0a43-4b7e-9d57-9a1f2c3b4d5e")
    assert response.status_code == 404
    assert _error(response)["message"] == "Flow not found"


def test_list_never_shows_another_projects_images(api, other_project):
    factories.make_image(other_project)
    assert api.get("/api/v1/images").get_json()["data"] == []


# --- get / resolve -------------------------------------------------------------------------


def test_get_one_image(api, project):
    image = factories.make_image(project, alias="@logo")
    data = api.get(f"/api/v1/images/{image.id}").get_json()["data"]
    assert data["id"] == image.id
    assert data["alias"] == "@logo"
    assert data["sha256"] == image.sha256
    assert data["thumbnailUrl"] == f"http://localhost/i/{image.id}/thumb.webp"


@pytest.mark.parametrize("image_id", ["nope", "6f1c3a52-0a43-4b7e-9d57-9a1f2c3b4d5e"])
def test_get_unknown_image_is_404(api, image_id):
    response = api.get(f"/api/v1/images/{image_id}")
    assert response.status_code == 404
    assert _error(response) == {"code": "IMAGE_NOT_FOUND", "message": "Image not found"}


def test_another_projects_image_is_404_on_every_route(api, other_project):
    image = factories.make_image(other_project, alias="@theirs")
    base = f"/api/v1/images/{image.id}"
    responses = [
        api.get(base),
        api.put(base, json={"alias": "@mine"}),
        api.put(f"{base}/alias", json={"alias": "@mine"}),
        api.delete(base),
        api.delete(f"{base}?hard=true"),
        api.post(f"{base}/restore"),
        api.get("/api/v1/images/resolve/@theirs"),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert all(_error(r)["message"] == "Image not found" for r in responses)
    assert db.session.get(Image, image.id).alias == "@theirs"


def test_resolve_answers_image_scope_and_flow(api, project):
    flow = factories.make_flow(project)
    image = factories.make_image(project, flow=flow, alias="@hero")
    response = api.get("/api/v1/images/resolve/@hero")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["image"]["id"], data["scope"], data["flowId"]) == (image.id, "project", None)
    in_flow = api.get(f"/api/v1/images/resolve/@last?flowId={flow.id}").get_json()["data"]
    assert (in_flow["image"]["id"], in_flow["scope"], in_flow["flowId"]) == (
        image.id,
        "technical",
        flow.id,
    )


def test_resolve_unknown_alias_is_404_and_bad_input_is_rejected(api):
    missing = api.get("/api/v1/images/resolve/@nobody")
    assert missing.status_code == 404
    assert _error(missing) == {"code": "IMAGE_NOT_FOUND", "message": "Image not found"}
    assert _error(api.get("/api/v1/images/resolve/no-at-sign"))["code"] == "INVALID_ALIAS"
    unknown_flow = api.get("/api/v1/images/resolve/@last?flowId=nope")
    assert _error(unknown_flow)["message"] == "Flow not found"


# --- update / alias --------------------------------------------------------------------------


def test_update_sets_alias_focal_point_and_replaces_meta(api, project):
    image = factories.make_image(project)
    image.meta = {"old": True}
    db.session.commit()
    response = api.put(
        f"/api/v1/images/{image.id}",
        json={"alias": "@new", "focalPoint": {"x": 0.25, "y": 1}, "meta": {"fresh": 1}},
    )
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["alias"] == "@new"
    assert data["focalPoint"] == {"x": 0.25, "y": 1.0}
    assert data["meta"] == {"fresh": 1}
    removed = api.put(f"/api/v1/images/{image.id}", json={"alias": None}).get_json()["data"]
    assert removed["alias"] is None
    assert removed["meta"] == {"fresh": 1}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"focalPoint": {"x": 1.5, "y": 0.5}}, "VALIDATION_ERROR"),
        ({"focalPoint": {"x": 0.5}}, "VALIDATION_ERROR"),
        ({"focalPoint": {"x": True, "y": 0.5}}, "VALIDATION_ERROR"),
        ({"focalPoint": [0.5, 0.5]}, "VALIDATION_ERROR"),
        ({"meta": "text"}, "VALIDATION_ERROR"),
        ({"alias": "@first"}, "RESERVED_ALIAS"),
        ({"alias": 7}, "INVALID_ALIAS"),
        ({"alias": "@" + "a" * 51}, "INVALID_ALIAS"),
    ],
)
def test_update_validation(api, project, body, code):
    image = factories.make_image(project)
    response = api.put(f"/api/v1/images/{image.id}", json=body)
    assert response.status_code == 400
    assert _error(response)["code"] == code


def test_update_body_must_be_a_json_object(api, project):
    image = factories.make_image(project)
    response = api.client.put(
        f"/api/v1/images/{image.id}",
        data="nope",
        headers={"X-API-Key": api.key, "Content-Type": "application/json"},
    )
    assert _error(response)["code"] == "INVALID_JSON"


def test_alias_taken_by_another_image_is_409_and_nothing_changes(api, project):
    factories.make_image(project, alias="@taken")
    image = factories.make_image(project)
    for path, body in (
        (f"/api/v1/images/{image.id}", {"alias": "@taken", "focalPoint": {"x": 0, "y": 0}}),
        (f"/api/v1/images/{image.id}/alias", {"alias": "@taken"}),
    ):
        response = api.put(path, json=body)
        assert response.status_code == 409
        assert _error(response)["message"] == "Alias already exists"
    fresh = api.get(f"/api/v1/images/{image.id}").get_json()["data"]
    assert fresh["alias"] is None
    assert fresh["focalPoint"] == {"x": 0.5, "y": 0.5}


def test_alias_route_sets_and_removes(api, project):
    image = factories.make_image(project)
    path = f"/api/v1/images/{image.id}/alias"
    assert api.put(path, json={"alias": "@x"}).get_json()["data"]["alias"] == "@x"
    assert api.put(path, json={"alias": "@x"}).status_code == 200  # same image, same alias
    assert api.put(path, json={"alias": None}).get_json()["data"]["alias"] is None
    missing = api.put(path, json={})
    assert missing.status_code == 400
    assert _error(missing)["details"] == {"alias": "required"}


# --- delete / restore / purge -----------------------------------------------------------------


def _storage_files(app) -> set[str]:
    root = Path(app.config["STORAGE_DIR"])
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_soft_delete_hides_the_image_and_frees_its_alias(api, project):
    image = factories.make_image(project, alias="@hero")
    assert api.delete(f"/api/v1/images/{image.id}").status_code == 204
    assert api.get(f"/api/v1/images/{image.id}").status_code == 404
    assert api.get("/api/v1/images").get_json()["data"] == []
    assert api.get("/api/v1/images/resolve/@hero").status_code == 404
    trashed = api.get(f"/api/v1/images/{image.id}?includeDeleted=true").get_json()["data"]
    assert trashed["deletedAt"] is not None and trashed["alias"] is None
    other = factories.make_image(project)
    assert api.put(f"/api/v1/images/{other.id}/alias", json={"alias": "@hero"}).status_code == 200
    assert api.delete(f"/api/v1/images/{image.id}").status_code == 404


def test_hard_delete_removes_record_and_files_now(api, project, app):
    image = factories.make_image(project)
    keys = {image.storage_key, image.thumbnail_key}
    assert keys <= _storage_files(app)
    assert api.delete(f"/api/v1/images/{image.id}?hard=true").status_code == 204
    assert not keys & _storage_files(app)
    assert api.get(f"/api/v1/images/{image.id}?includeDeleted=true").status_code == 404


def test_hard_delete_also_empties_the_trash(api, project, app):
    image_id = factories.make_image(project).id
    api.delete(f"/api/v1/images/{image_id}")
    assert api.delete(f"/api/v1/images/{image_id}?hard=true").status_code == 204
    db.session.expire_all()
    assert db.session.get(Image, image_id) is None


def test_restore_brings_the_image_and_its_alias_back(api, project):
    image = factories.make_image(project, alias="@hero")
    api.delete(f"/api/v1/images/{image.id}")
    response = api.post(f"/api/v1/images/{image.id}/restore")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["alias"], data["deletedAt"]) == ("@hero", None)
    assert api.get("/api/v1/images/resolve/@hero").get_json()["data"]["image"]["id"] == image.id


def test_restore_without_the_alias_when_someone_took_it(api, project):
    image = factories.make_image(project, alias="@hero")
    api.delete(f"/api/v1/images/{image.id}")
    factories.make_image(project, alias="@hero")
    data = api.post(f"/api/v1/images/{image.id}/restore").get_json()["data"]
    assert data["alias"] is None and data["deletedAt"] is None


def test_restore_of_an_image_that_is_not_deleted_is_409(api, project):
    image = factories.make_image(project)
    response = api.post(f"/api/v1/images/{image.id}/restore")
    assert response.status_code == 409
    assert _error(response)["code"] == "INVALID_STATE"


def test_restore_after_the_retention_window_is_404(api, project):
    image = factories.make_image(project)
    image.deleted_at = utcnow() - timedelta(days=31)
    db.session.commit()
    response = api.post(f"/api/v1/images/{image.id}/restore")
    assert response.status_code == 404


def test_purge_removes_records_and_files_past_retention_only(app, project):
    old = factories.make_image(project)
    recent = factories.make_image(project)
    alive = factories.make_image(project)
    old.deleted_at = utcnow() - timedelta(days=30, minutes=1)
    recent.deleted_at = utcnow() - timedelta(days=29)
    db.session.commit()
    old_keys = {old.storage_key, old.thumbnail_key}
    old_id, recent_id, alive_id = old.id, recent.id, alive.id

    assert images.purge_expired() == 1
    db.session.expire_all()
    assert db.session.get(Image, old_id) is None
    assert not old_keys & _storage_files(app)
    assert db.session.get(Image, recent_id) is not None
    assert db.session.get(Image, alive_id) is not None
    assert images.purge_expired(now=utcnow() + timedelta(days=2)) == 1
    assert images.purge_expired() == 0


def test_total_is_counted_up_to_a_cap_then_estimated(api, project, backend, monkeypatch):
    from app.services import listing

    monkeypatch.setattr(listing, "EXACT_COUNT_CAP", 3)
    for _ in range(5):
        factories.make_image(project)
    pagination = api.get("/api/v1/images?limit=2").get_json()["pagination"]
    assert pagination["hasMore"] is True
    if backend == "sqlite":
        assert pagination["total"] == 5  # exact: SQLite is the small embedded mode
    else:
        assert pagination["total"] >= 4  # the planner's estimate, never below what was seen
    assert api.get("/api/v1/images?limit=2&offset=4").get_json()["pagination"] == {
        "total": 5,
        "limit": 2,
        "offset": 4,
        "hasMore": False,
    }


def test_a_set_known_to_be_large_is_not_counted_again(app, project, backend, monkeypatch):
    if backend != "postgres":
        pytest.skip("estimates are PostgreSQL's")
    from app.services import listing

    monkeypatch.setattr(listing, "EXACT_COUNT_CAP", 2)
    monkeypatch.setattr(listing, "_known_large", {})
    for _ in range(4):
        factories.make_image(project)
    query = images.list_query(project.id)
    with factories.statements_sent(db.engine) as statements:
        assert listing.count(query, memo="set") >= 3
        assert len([s for s in statements if "count(" in s]) == 1
        assert listing.count(query, memo="set") >= 3
        assert len([s for s in statements if "count(" in s]) == 1  # then only the planner
