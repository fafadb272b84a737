"""With a shared Redis, live HITs are counted in Redis and written to the database by the
maintenance cron; a process remembers the entries it serves until a deletion (here or in any
other process) replaces the live epoch. Without Redis the counting is in test_live.py."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from sqlalchemy import create_engine, delete
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.models import LiveCacheEntry
from app.services import images, live, projects
from tests import servers
from tests.api.test_live import cache, nothing_was_started, public_url
from tests.servers import free_port


@pytest.fixture
def app_config(redis_url):
    return {"RATELIMIT_STORAGE_URI": redis_url}


def _count(client, project) -> str:
    response = client.get(public_url(project))
    assert response.status_code == 200
    assert response.headers["X-Cache-Status"] == "HIT"
    return response.headers["X-Cache-Hit-Count"]


def _stored_hits() -> int:
    db.session.expire_all()
    return db.session.query(LiveCacheEntry).one().hit_count


def test_every_hit_is_counted_and_the_cron_writes_the_counts_down(client, project):
    cache(project, hits=5)
    assert [_count(client, project) for _ in range(4)] == ["6", "7", "8", "9"]

    assert live.flush_hit_counts() == 4
    assert _stored_hits() == 9
    assert db.session.query(LiveCacheEntry).one().last_hit_at is not None
    assert live.flush_hit_counts() == 0  # nothing is written twice

    assert _count(client, project) == "10"
    assert live.flush_hit_counts() == 1
    assert _stored_hits() == 10


def test_hits_a_failed_flush_could_not_write_are_written_by_the_next(client, project, monkeypatch):
    cache(project)
    for _ in range(3):
        _count(client, project)

    def database_down(*args, **kwargs):
        raise OperationalError("UPDATE live_cache", {}, ConnectionError("server closed"))

    monkeypatch.setattr(db.session, "commit", database_down)  # fault injection
    with pytest.raises(OperationalError):
        live.flush_hit_counts()
    monkeypatch.undo()
    assert _stored_hits() == 0

    assert live.flush_hit_counts() == 3
    assert _stored_hits() == 3


def test_counts_go_on_from_the_last_flush_when_redis_loses_its_data(client, project, shared):
    cache(project)
    for _ in range(3):
        _count(client, project)
    live.flush_hit_counts()
    shared.flushdb()  # a restart without persistence

    assert _count(client, project) == "4"


def test_a_process_that_never_served_an_entry_goes_on_with_the_shared_count(client, project):
    cache(project)
    assert _count(client, project) == "1"  # not yet in the database: counted in Redis only
    live.LIVE_EPOCH.forget(None)  # what a process that never served it remembers: nothing
    assert _count(client, project) == "2"  # read from the database, counted on from Redis
    assert _count(client, project) == "3"


def test_a_remembered_image_is_not_served_once_deleted(client, project, user):
    image = cache(project)
    _count(client, project)  # remembered by this process
    project.live_daily_limit = 0  # a MISS would be refused: proves the HIT was not served
    db.session.commit()

    images.delete_image(image)

    assert client.get(public_url(project)).status_code == 429
    assert nothing_was_started(user)


def test_a_remembered_image_is_not_served_once_purged(client, project, user):
    image = cache(project)
    _count(client, project)
    project.live_daily_limit = 0
    db.session.commit()

    images.delete_image(image, hard=True)  # bulk statements the session's flush does not see

    assert client.get(public_url(project)).status_code == 429
    assert nothing_was_started(user)


def test_a_remembered_entry_of_a_deleted_project_is_not_served(client, project, user):
    cache(project)
    public = public_url(project)
    _count(client, project)
    projects.create_project(user, "Another")

    projects.delete_project(project)

    assert client.get(public).status_code == 403


def test_a_deletion_committed_by_another_process_is_seen(client, project, user, shared):
    cache(project)
    _count(client, project)
    project.live_daily_limit = 0
    db.session.commit()
    # Another process deletes the entry (its commit replaces the epoch, not this process's
    # memory).
    other_process = create_engine(db.engine.url)
    with other_process.begin() as conn:
        conn.execute(delete(LiveCacheEntry))
    other_process.dispose()
    shared.set(live.LIVE_EPOCH.key_for(project.id), "replaced by the other process")

    assert client.get(public_url(project)).status_code == 429


def test_a_deletion_replaces_the_epoch_of_its_own_project_only(client, user, project, shared):
    cache(project)
    other = projects.create_project(user, "Another")
    other_image = cache(other)
    _count(client, project)
    _count(client, other)
    mine, theirs = live.LIVE_EPOCH.key_for(project.id), live.LIVE_EPOCH.key_for(other.id)
    before = shared.get(mine), shared.get(theirs)

    images.delete_image(other_image)

    assert shared.get(mine) == before[0]  # this project's remembered entries stay trusted
    assert shared.get(theirs) not in (None, before[1])
    assert _count(client, project) == "2"


class TestRedisUnreachable:
    @pytest.fixture
    def app_config(self):
        return {"RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"}

    def test_hits_are_served_and_counted_in_the_database(self, client, project):
        image = cache(project)
        response = client.get(public_url(project))
        assert response.status_code == 200
        assert response.headers["X-Image-Id"] == image.id
        assert response.headers["X-Cache-Hit-Count"] == "1"
        assert _count(client, project) == "2"
        assert _stored_hits() == 2


def _fetch(url: str) -> tuple[int, str | None]:
    """A GET on a connection of its own: the status and X-Cache-Hit-Count."""
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["X-Cache-Hit-Count"]
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None


@pytest.mark.slow
@pytest.mark.redis
def test_a_worker_that_remembers_an_image_stops_serving_it_once_another_process_deletes_it(
    app, user, project, redis_url, tmp_path
):
    image = cache(project)
    project.live_daily_limit = 0  # a MISS would be refused: a 429 proves no HIT was served
    db.session.commit()
    path = public_url(project)
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    with servers.two_gunicorn_workers(database, redis_url, tmp_path) as gunicorn:
        with gunicorn.hold_one_worker(path) as held:
            before = [_fetch(gunicorn.url(path)) for _ in range(3)]  # one worker, remembered
            images.delete_image(image)  # here, not in either worker
            after = [_fetch(gunicorn.url(path)) for _ in range(2)]
            held_reply = held.finish("")
        assert len(gunicorn.worker_pids()) == 2

    assert before == [(200, "1"), (200, "2"), (200, "3")]
    assert after == [(429, None)] * 2
    assert held_reply.startswith(b"HTTP/1.1 429")
    assert nothing_was_started(user)
