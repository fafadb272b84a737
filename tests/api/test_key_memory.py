"""With Redis, a process remembers the API keys it has authenticated; whatever refuses a key
(revoked, expired, account disabled, project deleted) refuses it on the very next request, in
this process and in every other one."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from app.extensions import db
from app.models import ApiKey, utcnow
from app.services import accounts, api_keys, projects
from tests import factories, servers


@pytest.fixture(params=["memory", "redis"])
def app_config(request):
    storage = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    return {"RATELIMIT_STORAGE_URI": storage}


def _revoke(user, project, key):
    api_keys.revoke_key(user, key.id)


def _expire(user, project, key):
    key.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def _disable_account(user, project, key):
    accounts.set_disabled(user, True)


def _delete_project(user, project, key):
    projects.create_project(user, "Another")
    projects.delete_project(project)


REFUSALS = {
    "revoked": (_revoke, "revoked"),
    "expired": (_expire, "expired"),
    "account disabled": (_disable_account, "disabled"),
    "project deleted": (_delete_project, "invalid"),
}


@pytest.mark.parametrize("change", REFUSALS)
def test_a_key_in_use_is_refused_on_the_next_request(change, api, user, project):
    for _ in range(3):
        assert api.get("/api/v1/project").status_code == 200
    (key,) = api_keys.list_keys(user)
    refuse, reason = REFUSALS[change]

    refuse(user, project, key)

    response = api.get("/api/v1/project")
    assert response.status_code == 401
    assert reason in response.get_json()["error"]["message"]


def test_an_unrelated_change_leaves_keys_working(api, user, project):
    assert api.get("/api/v1/project").status_code == 200
    projects.update_settings(project, {"name": "Renamed"})
    accounts.touch(user)
    other = factories.make_key(user, project, "second")
    api_keys.revoke_key(user, other.key.id)

    response = api.get("/api/v1/project")
    assert response.status_code == 200
    assert response.get_json()["data"]["name"] == "Renamed"


class TestAcrossProcesses:
    @pytest.fixture
    def app_config(self, redis_url):
        return {"RATELIMIT_STORAGE_URI": redis_url}

    def test_a_redis_that_lost_its_data_does_not_revive_a_revoked_key(self, api, user, app):
        assert api.get("/api/v1/project").status_code == 200
        redis.Redis.from_url(app.config["RATELIMIT_STORAGE_URI"]).flushdb()  # a restart, no disk
        assert api.get("/api/v1/project").status_code == 200

        api_keys.revoke_key(user, api_keys.list_keys(user)[0].id)

        assert api.get("/api/v1/project").status_code == 401

    def test_a_key_revoked_elsewhere_stays_refused_when_redis_then_loses_its_data(
        self, api, user, app
    ):
        shared = redis.Redis.from_url(app.config["RATELIMIT_STORAGE_URI"])
        assert api.get("/api/v1/project").status_code == 200  # remembered here
        (key,) = api_keys.list_keys(user)
        # Another process revokes it (its commit replaces the epoch), then Redis restarts
        # without its data before this process serves another request.
        db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=utcnow()))
        db.session.commit()
        shared.set(api_keys.EPOCH_KEY, "replaced by the other process")
        shared.flushdb()

        assert api.get("/api/v1/project").status_code == 401

    @pytest.mark.slow
    @pytest.mark.redis
    def test_a_worker_that_remembers_a_key_refuses_it_once_another_process_revokes_it(
        self, app, user, project, redis_url, tmp_path
    ):
        created = factories.make_key(user, project)
        database = app.config["SQLALCHEMY_DATABASE_URI"]
        with servers.two_gunicorn_workers(database, redis_url, tmp_path) as gunicorn:
            url = gunicorn.url("/api/v1/project")
            with gunicorn.hold_one_worker("/api/v1/project") as held:
                before = [servers.get_status(url, created.plaintext) for _ in range(3)]
                api_keys.revoke_key(user, created.key.id)  # here, not in either worker
                after = [servers.get_status(url, created.plaintext) for _ in range(3)]
                held_reply = held.finish(created.plaintext)

            assert before == [200] * 3
            assert after == [401] * 3  # the worker that served (and remembered) it
            assert held_reply.startswith(b"HTTP/1.1 401")  # the other one
            assert len(gunicorn.worker_pids()) == 2
