"""Alias resolution (API.md §6): technical, then flow, then project; deleted ones never resolve."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.models import utcnow
from app.services import aliases, images
from tests import factories


@pytest.fixture
def world(project):
    """Two flows and images with known ages, aliases and sources."""
    start = utcnow() - timedelta(hours=1)
    f1, f2 = factories.make_flow(project), factories.make_flow(project)

    def image(name, minute, **kwargs):
        return name, factories.make_image(
            project, created_at=start + timedelta(minutes=minute), **kwargs
        )

    made = dict(
        [
            image("g1", 1, flow=f1),
            image("g2", 2, flow=f1),
            image("u1", 3, flow=f1, source="uploaded"),
            image("g3", 4, flow=f2),
            image("u2", 5, source="uploaded", alias="@hero"),
            image("g4", 6, flow=f1, alias="@logo-project"),
        ]
    )
    # g4 is the newest generated image overall and in f1; it is deleted below in some tests.
    aliases.set_flow_alias(f1.id, "@hero", made["g1"].id)
    aliases.set_flow_alias(f1.id, "@logo", made["g2"].id)
    from app.extensions import db

    db.session.commit()
    return {"f1": f1, "f2": f2, **made}


def _resolve(api, ref, flow=None):
    query = f"?flowId={flow.id}" if flow else ""
    return api.get(f"/api/v1/images/resolve/{ref}{query}")


TABLE = [
    # ref, flow context, expected image, scope
    ("@last", None, "g4", "technical"),
    ("@last", "f1", "g4", "technical"),
    ("@last", "f2", "g3", "technical"),
    ("@first", None, "g1", "technical"),
    ("@first", "f2", "g3", "technical"),
    ("@upload", None, "u2", "technical"),
    ("@upload", "f1", "u1", "technical"),
    ("@upload", "f2", None, None),
    ("@hero", None, "u2", "project"),
    ("@hero", "f1", "g1", "flow"),
    ("@hero", "f2", "u2", "project"),
    ("@logo", None, None, None),
    ("@logo", "f1", "g2", "flow"),
    ("@logo-project", "f2", "g4", "project"),
]


@pytest.mark.parametrize(("ref", "flow", "expected", "scope"), TABLE)
def test_precedence_table(api, world, ref, flow, expected, scope):
    response = _resolve(api, ref, world[flow] if flow else None)
    if expected is None:
        assert response.status_code == 404
        assert response.get_json()["error"]["message"] == "Image not found"
        return
    data = response.get_json()["data"]
    assert (data["image"]["id"], data["scope"]) == (world[expected].id, scope)
    assert data["flowId"] == (world[flow].id if flow else None)


def test_deleted_images_never_resolve_and_the_next_tier_answers(api, world):
    images.delete_image(world["g4"])
    assert _resolve(api, "@last").get_json()["data"]["image"]["id"] == world["g3"].id
    assert _resolve(api, "@last", world["f1"]).get_json()["data"]["image"]["id"] == world["g2"].id
    assert _resolve(api, "@logo-project").status_code == 404

    images.delete_image(world["g1"])  # the flow alias @hero in f1 points here
    fallback = _resolve(api, "@hero", world["f1"]).get_json()["data"]
    assert (fallback["image"]["id"], fallback["scope"]) == (world["u2"].id, "project")
    assert _resolve(api, "@first").get_json()["data"]["image"]["id"] == world["g2"].id

    images.delete_image(world["u2"])
    assert _resolve(api, "@hero").status_code == 404
    assert _resolve(api, "@upload").get_json()["data"]["image"]["id"] == world["u1"].id


def test_reserved_names_cannot_become_flow_or_project_aliases(api, world):
    response = api.put(
        f"/api/v1/flows/{world['f1'].id}/aliases", json={"aliases": {"@last": world["g1"].id}}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "RESERVED_ALIAS"
    response = api.put(f"/api/v1/images/{world['g1'].id}/alias", json={"alias": "@Upload"})
    assert response.get_json()["error"]["code"] == "RESERVED_ALIAS"


def test_project_alias_is_unique_in_the_project_only(api, world):
    other = factories.first_project(factories.make_user())
    theirs = factories.make_image(other, alias="@hero")
    assert theirs.alias == "@hero"
    assert _resolve(api, "@hero").get_json()["data"]["image"]["id"] == world["u2"].id
