"""Flows (API.md §5): list, create, read, generations, images, aliases, delete, ZIP download."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Generation, Image, utcnow
from app.services import images, imaging
from app.storage import get_storage
from tests import factories

UNKNOWN = "6f1c3a52-0a43-4b7e-9d57-9a1f2c3b4d5e"


def _error(response):
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def make_generation(project, flow, *, output=None, minutes_ago=0, deleted=False):
    gen = Generation(
        project_id=project.id,
        flow_id=flow.id if flow else None,
        user_id=project.owner_id,
        prompt="a red fox",
        aspect_ratio="1:1",
        model="local",
        status="success" if output else "pending",
        output_image_id=output.id if output else None,
        created_at=utcnow() - timedelta(minutes=minutes_ago),
        deleted_at=utcnow() if deleted else None,
    )
    db.session.add(gen)
    db.session.commit()
    return gen


@pytest.fixture
def other_project(app):
    return factories.first_project(factories.make_user())


def test_create_flow_with_meta_and_without_a_body(api, project):
    response = api.post("/api/v1/flows", json={"meta": {"name": "Spring"}})
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["meta"] == {"name": "Spring"}
    assert data["projectId"] == project.id
    assert (data["generationCount"], data["imageCount"], data["aliases"]) == (0, 0, {})
    assert data["createdAt"].endswith("Z") and data["updatedAt"].endswith("Z")
    bare = api.client.post("/api/v1/flows", headers={"X-API-Key": api.key})
    assert bare.status_code == 201
    assert bare.get_json()["data"]["meta"] == {}


def test_a_generation_into_a_flow_stamps_its_updated_at(api):
    flow = api.post("/api/v1/flows", json={}).get_json()["data"]
    done = api.post(
        "/api/v1/generations",
        json={"prompt": "the next step", "flowId": flow["id"]},
        headers={"Prefer": "wait=30"},
    ).get_json()["data"]
    assert done["status"] == "success" and done["flowId"] == flow["id"]
    now = api.get(f"/api/v1/flows/{flow['id']}").get_json()["data"]
    assert now["createdAt"] == flow["createdAt"]
    assert now["updatedAt"] > flow["updatedAt"]  # ISO 8601 in UTC: ordered as text
    assert now["generationCount"] == 1 and now["imageCount"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"meta": "text"}, "VALIDATION_ERROR"),
        ({"meta": {"big": "x" * 17000}}, "VALIDATION_ERROR"),
    ],
)
def test_create_flow_validation(api, body, code):
    response = api.post("/api/v1/flows", json=body)
    assert response.status_code == 400
    assert _error(response)["code"] == code


def test_create_flow_with_a_body_that_is_not_an_object(api):
    response = api.client.post(
        "/api/v1/flows",
        data="[]",
        headers={"X-API-Key": api.key, "Content-Type": "application/json"},
    )
    assert _error(response)["code"] == "INVALID_JSON"


def test_list_flows_newest_first_with_counts_and_aliases(api, project, other_project):
    older = factories.make_flow(project, {"n": 1})
    newer = factories.make_flow(project, {"n": 2})
    newer.created_at = older.created_at + timedelta(seconds=5)
    first = factories.make_image(project, flow=older)
    factories.make_image(project, flow=older, source="uploaded")
    gone = factories.make_image(project, flow=older)
    images.delete_image(gone)
    make_generation(project, older, output=first)
    make_generation(project, older, deleted=True)
    api.put(f"/api/v1/flows/{older.id}/aliases", json={"aliases": {"@hero": first.id}})
    factories.make_flow(other_project)

    response = api.get("/api/v1/flows")
    assert response.status_code == 200
    body = response.get_json()
    assert [f["id"] for f in body["data"]] == [newer.id, older.id]
    assert body["pagination"] == {"total": 2, "limit": 20, "offset": 0, "hasMore": False}
    listed = body["data"][1]
    assert (listed["generationCount"], listed["imageCount"]) == (1, 2)
    assert listed["aliases"] == {"@hero": first.id}
    assert listed["meta"] == {"n": 1}
    assert api.get("/api/v1/flows?limit=1").get_json()["pagination"]["hasMore"] is True


def test_get_flow_and_404s(api, project, other_project):
    flow = factories.make_flow(project)
    assert api.get(f"/api/v1/flows/{flow.id}").get_json()["data"]["id"] == flow.id
    foreign = factories.make_flow(other_project)
    for flow_id in (UNKNOWN, "garbage", foreign.id):
        response = api.get(f"/api/v1/flows/{flow_id}")
        assert response.status_code == 404
        assert _error(response) == {"code": "FLOW_NOT_FOUND", "message": "Flow not found"}


def test_another_projects_flow_is_404_on_every_route(api, other_project):
    foreign = factories.make_flow(other_project)
    image = factories.make_image(other_project, flow=foreign)
    base = f"/api/v1/flows/{foreign.id}"
    responses = [
        api.get(base),
        api.get(f"{base}/generations"),
        api.get(f"{base}/images"),
        api.put(f"{base}/aliases", json={"aliases": {"@x": image.id}}),
        api.delete(f"{base}/aliases/@x"),
        api.delete(base),
        api.get(f"{base}/download"),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert all(_error(r)["message"] == "Flow not found" for r in responses)


def test_flow_generations_oldest_first_with_their_output_images(api, project):
    flow = factories.make_flow(project)
    out = factories.make_image(project, flow=flow)
    old = make_generation(project, flow, output=out, minutes_ago=5)
    new = make_generation(project, flow, minutes_ago=1)
    make_generation(project, flow, deleted=True)
    make_generation(project, None)
    response = api.get(f"/api/v1/flows/{flow.id}/generations")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert [g["id"] for g in data] == [old.id, new.id]
    assert data[0]["outputImage"]["id"] == out.id
    assert data[0]["status"] == "success"
    assert data[1]["outputImage"] is None
    assert response.get_json()["pagination"]["total"] == 2


def test_flow_images_oldest_first_without_deleted_ones(api, project):
    flow = factories.make_flow(project)
    start = utcnow() - timedelta(minutes=10)
    a = factories.make_image(project, flow=flow, created_at=start)
    b = factories.make_image(
        project, flow=flow, source="uploaded", created_at=start + timedelta(seconds=1)
    )
    gone = factories.make_image(project, flow=flow)
    images.delete_image(gone)
    factories.make_image(project)
    data = api.get(f"/api/v1/flows/{flow.id}/images").get_json()["data"]
    assert [i["id"] for i in data] == [a.id, b.id]


def test_merge_aliases_adds_and_repoints(api, project):
    flow = factories.make_flow(project)
    a = factories.make_image(project, flow=flow)
    b = factories.make_image(project, flow=flow)
    path = f"/api/v1/flows/{flow.id}/aliases"
    first = api.put(path, json={"aliases": {"@hero": a.id, "@bg": b.id}})
    assert first.status_code == 200
    assert first.get_json()["data"]["aliases"] == {"@bg": b.id, "@hero": a.id}
    merged = api.put(path, json={"aliases": {"@hero": b.id}}).get_json()["data"]
    assert merged["aliases"] == {"@bg": b.id, "@hero": b.id}


def test_merge_aliases_validation(api, project, other_project):
    flow = factories.make_flow(project)
    mine = factories.make_image(project)
    theirs = factories.make_image(other_project)
    path = f"/api/v1/flows/{flow.id}/aliases"
    for aliases in ({"@x": theirs.id}, {"@x": UNKNOWN}, {"@x": 5}):
        response = api.put(path, json={"aliases": aliases})
        assert response.status_code == 404
        assert _error(response)["message"] == "Image not found"
    assert _error(api.put(path, json={"aliases": {"bad": mine.id}}))["code"] == "INVALID_ALIAS"
    assert api.put(path, json={"aliases": ["@x"]}).status_code == 400
    assert api.put(path, json={}).status_code == 400
    assert api.get(f"/api/v1/flows/{flow.id}").get_json()["data"]["aliases"] == {}


def test_delete_one_alias(api, project):
    flow = factories.make_flow(project)
    image = factories.make_image(project, flow=flow)
    api.put(f"/api/v1/flows/{flow.id}/aliases", json={"aliases": {"@a": image.id, "@b": image.id}})
    assert api.delete(f"/api/v1/flows/{flow.id}/aliases/@a").status_code == 204
    assert api.get(f"/api/v1/flows/{flow.id}").get_json()["data"]["aliases"] == {"@b": image.id}
    missing = api.delete(f"/api/v1/flows/{flow.id}/aliases/@a")
    assert missing.status_code == 404
    assert _error(missing)["message"] == "Alias not found"
    assert api.delete(f"/api/v1/flows/{flow.id}/aliases/@a%00").status_code == 404  # not a 500


def test_delete_flow_keeps_its_generations_and_images(api, project):
    flow = factories.make_flow(project)
    image = factories.make_image(project, flow=flow)
    gen = make_generation(project, flow, output=image)
    image_id, gen_id = image.id, gen.id
    assert api.delete(f"/api/v1/flows/{flow.id}").status_code == 204
    assert api.get(f"/api/v1/flows/{flow.id}").status_code == 404
    assert api.get(f"/api/v1/images/{image_id}").get_json()["data"]["flowId"] is None
    db.session.expire_all()
    assert db.session.get(Generation, gen_id).flow_id is None


def test_an_output_stored_after_its_flow_was_deleted_stays_without_a_flow(api, project):
    # A worker read the generation's flow before a DELETE /flows committed, and stores later.
    flow = factories.make_flow(project)
    flow_id = flow.id
    assert api.delete(f"/api/v1/flows/{flow_id}").status_code == 204
    picture = imaging.judge_output(factories.png_bytes())
    image = imaging.store(project.id, picture, source="generated", flow_id=flow_id)
    db.session.commit()
    assert image.flow_id is None
    assert api.get(f"/api/v1/images/{image.id}").get_json()["data"]["flowId"] is None


def test_download_is_a_streamed_zip_named_by_alias_or_id(api, project):
    flow = factories.make_flow(project)
    start = utcnow() - timedelta(minutes=5)
    first = factories.make_image(project, flow=flow, alias="@hero", created_at=start)
    second = factories.make_image(project, flow=flow, created_at=start + timedelta(seconds=1))
    third = factories.make_image(
        project, flow=flow, source="uploaded", created_at=start + timedelta(seconds=2)
    )
    gone = factories.make_image(project, flow=flow)
    images.delete_image(gone)
    api.put(f"/api/v1/flows/{flow.id}/aliases", json={"aliases": {"@bg": third.id}})

    response = api.get(f"/api/v1/flows/{flow.id}/download", buffered=False)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/zip"
    assert f'filename="flow-{flow.id}.zip"' in response.headers["Content-Disposition"]
    chunks = list(response.response)
    assert len([c for c in chunks if c]) > 3  # produced piece by piece
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.namelist() == ["001-hero.png", f"002-{second.id}.png", "003-bg.png"]
    assert archive.testzip() is None
    storage = get_storage()
    for name, image in zip(archive.namelist(), (first, second, third), strict=True):
        assert archive.read(name) == storage.get(image.storage_key)


def test_download_of_an_empty_flow_is_an_empty_zip(api, project):
    flow = factories.make_flow(project)
    response = api.get(f"/api/v1/flows/{flow.id}/download")
    assert zipfile.ZipFile(io.BytesIO(response.data)).namelist() == []


def test_flow_counts_need_no_query_per_flow(api, project, app):

    for _ in range(5):
        flow = factories.make_flow(project)
        factories.make_image(project, flow=flow)
    with factories.statements_sent(db.engine) as statements:
        assert len(api.get("/api/v1/flows").get_json()["data"]) == 5
    flow_queries = [s for s in statements if "flow" in s.lower()]
    assert len(flow_queries) <= 4, flow_queries
    assert db.session.query(Image).count() == 5
