"""Canvas state (API.md §8): versioned with ETag / If-Match, 412 on a stale version, ≤ 1 MB."""

from __future__ import annotations

import threading

import pytest

from app.extensions import db
from app.services import canvas
from tests import factories


def _error(response):
    return response.get_json()["error"]


def _put(api, state, etag=None):
    headers = {"If-Match": etag} if etag is not None else {}
    return api.put("/api/v1/canvas", json={"state": state}, headers=headers)


def test_a_new_canvas_is_empty_at_version_0(api):
    response = api.get("/api/v1/canvas")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"0"'
    assert response.get_json()["data"] == {"state": {}, "version": 0, "updatedAt": None}


def test_put_with_the_current_etag_stores_and_bumps_the_version(api):
    response = _put(api, {"items": [{"id": 1, "x": 10}]}, '"0"')
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    data = response.get_json()["data"]
    assert (data["version"], data["state"]) == (1, {"items": [{"id": 1, "x": 10}]})
    assert data["updatedAt"].endswith("Z")
    again = api.get("/api/v1/canvas")
    assert again.headers["ETag"] == '"1"'
    assert again.get_json()["data"]["state"] == {"items": [{"id": 1, "x": 10}]}


def test_a_stale_version_is_412_and_changes_nothing(api):
    _put(api, {"v": "first"}, '"0"')
    stale = _put(api, {"v": "lost update"}, '"0"')
    assert stale.status_code == 412
    assert _error(stale)["code"] == "PRECONDITION_FAILED"
    assert _error(stale)["details"] == {"currentVersion": 1}
    assert stale.headers["ETag"] == '"1"'
    assert api.get("/api/v1/canvas").get_json()["data"]["state"] == {"v": "first"}


def test_missing_if_match_is_428(api):
    response = _put(api, {"v": 1})
    assert response.status_code == 428
    assert _error(response)["code"] == "PRECONDITION_REQUIRED"
    assert api.get("/api/v1/canvas").get_json()["data"]["version"] == 0


def test_weak_unquoted_and_star_etags(api):
    assert _put(api, {"n": 1}, 'W/"0"').status_code == 200
    assert _put(api, {"n": 2}, '"9", "1"').status_code == 200
    assert _put(api, {"n": 3}, "*").get_json()["data"]["version"] == 3
    for malformed in ('"abc"', "3", '"3', '*, "3"'):
        response = _put(api, {"n": 4}, malformed)
        assert response.status_code == 400, malformed
    assert api.get("/api/v1/canvas").get_json()["data"]["version"] == 3


@pytest.mark.parametrize("state", [None, [], "text", 3])
def test_state_must_be_an_object(api, state):
    response = _put(api, state, '"0"')
    assert response.status_code == 400
    assert _error(response)["details"] == {"state": "must be an object"}


def test_state_over_1_mb_is_413(api):
    big = {"blob": "x" * (1024 * 1024)}
    response = _put(api, big, '"0"')
    assert response.status_code == 413
    assert _error(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert _put(api, {"blob": "x" * (1024 * 1024 - 20)}, '"0"').status_code == 200


def test_each_project_has_its_own_canvas(api, project):
    _put(api, {"mine": True}, '"0"')
    other = factories.first_project(factories.make_user())
    assert canvas.get_canvas(other.id).state == {}


def test_concurrent_writers_on_one_version_exactly_one_wins(app, project, backend):
    if backend == "sqlite":
        pytest.skip("real concurrent writers need PostgreSQL")
    results: list[str] = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                canvas.save_canvas(project.id, {"writer": n}, {0})
                results.append("ok")
            except Exception as exc:  # noqa: BLE001
                results.append(type(exc).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["PreconditionFailed"] * 3 + ["ok"]
    assert canvas.get_canvas(project.id).version == 1
