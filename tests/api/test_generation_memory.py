"""With a shared Redis, a process remembers the generations it has answered a poll of
(`GET /api/v1/generations/{id}`) and reads them again only when the generation's epoch moves:
every change to the generation or its output image, made here or in any other process, is
seen on the very next poll. Without Redis every poll reads the database (the rest of the suite).
"""

from __future__ import annotations

import time
import warnings

import pytest
from sqlalchemy import create_engine, update

from app import epochs
from app.extensions import db
from app.models import Generation, Image, User
from app.services import flows, generations, images
from tests import factories, servers


@pytest.fixture
def app_config(redis_url):
    return {"RATELIMIT_STORAGE_URI": redis_url}


def _poll(api, generation_id: str, **params) -> dict:
    response = api.get(f"/api/v1/generations/{generation_id}", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def _status(api, generation_id: str) -> int:
    return api.get(f"/api/v1/generations/{generation_id}").status_code


def _behind_our_back(app, generation_id: str, **values) -> None:
    """Change the row as no process of ours would: on a connection of its own, announcing
    nothing. A poll that still shows the old values was answered from memory."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as conn:
        conn.execute(update(Generation).where(Generation.id == generation_id).values(**values))
    engine.dispose()


def test_a_remembered_poll_reads_no_row_until_the_epoch_moves(api, app, project, user, shared):
    gen = factories.make_generation(project, user, meta={"n": 1})
    assert _poll(api, gen.id)["meta"] == {"n": 1}

    _behind_our_back(app, gen.id, meta={"n": 2})
    assert _poll(api, gen.id)["meta"] == {"n": 1}  # from memory: no statement was run

    shared.set(generations.READS_EPOCH.key_for(gen.id), "moved by another process")
    assert _poll(api, gen.id)["meta"] == {"n": 2}


def test_every_stage_of_a_running_generation_is_seen_on_the_next_poll(api, project, user):
    gen = factories.make_generation(project, user, run=False)
    assert _poll(api, gen.id)["status"] == "pending"

    assert generations._claim(gen.id)[1]
    assert (_poll(api, gen.id)["status"], _poll(api, gen.id)["stage"]) == (
        "processing",
        "generating",
    )
    generations._stage(gen.id, "storing")
    assert _poll(api, gen.id)["stage"] == "storing"

    generations.fail(gen.id, "PROVIDER_ERROR", "The model did not answer")
    seen = _poll(api, gen.id)
    assert seen["status"] == "failed"
    assert seen["error"] == {"code": "PROVIDER_ERROR", "message": "The model did not answer"}


def test_a_run_to_success_shows_its_output(api, project, user):
    gen = factories.make_generation(project, user, run=False)
    assert _poll(api, gen.id)["outputImage"] is None

    generations.run(gen.id)

    seen = _poll(api, gen.id)
    assert seen["status"] == "success"
    assert seen["outputImage"]["id"] == seen["outputImageId"]


def test_the_success_commit_itself_is_seen(api, project, user, monkeypatch):
    gen = factories.make_generation(project, user, run=False)
    # First poll outside the run: it records the key's use (a write, which SQLite could not
    # take while the run below holds its transaction open).
    assert _poll(api, gen.id)["status"] == "pending"
    seen = []
    succeed = generations._mark_success

    def poll_just_before(*args, **kwargs):
        seen.append(_poll(api, gen.id)["stage"])  # remembered as it stands before success
        return succeed(*args, **kwargs)

    monkeypatch.setattr(generations, "_mark_success", poll_just_before)
    generations.run(gen.id)

    assert seen == ["storing"]
    assert _poll(api, gen.id)["status"] == "success"


def test_a_retry_back_to_the_queue_is_seen(api, project, user):
    gen = factories.make_generation(project, user, run=False)
    generations._claim(gen.id)
    assert _poll(api, gen.id)["status"] == "processing"

    generations.requeue(gen.id)

    assert (_poll(api, gen.id)["status"], _poll(api, gen.id)["stage"]) == ("pending", "queued")


def test_a_cancel_is_seen(api, project, user):
    gen = factories.make_generation(project, user, run=False)
    assert _poll(api, gen.id)["status"] == "pending"

    assert api.post(f"/api/v1/generations/{gen.id}/cancel").status_code == 200

    assert _poll(api, gen.id)["status"] == "cancelled"


def test_a_soft_deleted_generation_is_gone_on_the_next_poll(api, project, user):
    gen = factories.make_generation(project, user)
    assert _status(api, gen.id) == 200

    assert api.delete(f"/api/v1/generations/{gen.id}").status_code == 204

    assert _status(api, gen.id) == 404
    assert _poll(api, gen.id, includeDeleted="true")["deletedAt"] is not None


def test_changes_to_the_output_image_are_seen(api, project, user):
    gen = factories.make_generation(project, user)
    output = db.session.get(Image, gen.output_image_id)
    assert _poll(api, gen.id)["outputImage"]["alias"] is None

    images.update_image(output, {"alias": "@hero", "focalPoint": {"x": 0.25, "y": 0.75}})
    seen = _poll(api, gen.id)["outputImage"]
    assert (seen["alias"], seen["focalPoint"]) == ("@hero", {"x": 0.25, "y": 0.75})

    images.delete_image(output)
    assert _poll(api, gen.id)["outputImage"]["deletedAt"] is not None

    images.delete_image(output, hard=True)  # a bulk statement: the flush does not see it
    assert _poll(api, gen.id)["outputImage"] is None


def test_deleting_the_flow_is_seen(api, project, user):
    done = factories.make_generation(project, user)
    flow_id = done.flow_id
    waiting = factories.make_generation(project, user, "a quiet lake", run=False, flowId=flow_id)
    assert _poll(api, waiting.id)["flowId"] == flow_id
    assert _poll(api, done.id)["outputImage"]["flowId"] == flow_id

    flows.delete_flow(flows.get_flow(project.id, flow_id))  # bulk statements too

    assert _poll(api, waiting.id)["flowId"] is None
    seen = _poll(api, done.id)
    assert (seen["flowId"], seen["outputImage"]["flowId"]) == (None, None)


def test_a_change_to_one_generation_leaves_the_others_remembered(api, app, project, user):
    busy = factories.make_generation(project, user, run=False)
    done = factories.make_generation(project, user, "a quiet lake", meta={"n": 1})
    assert _poll(api, done.id)["meta"] == {"n": 1}
    _behind_our_back(app, done.id, meta={"n": 2})

    generations._claim(busy.id)  # the busy one moves on

    assert _poll(api, busy.id)["status"] == "processing"
    assert _poll(api, done.id)["meta"] == {"n": 1}  # still remembered: its epoch did not move


def test_a_generation_remembered_for_its_project_stays_404_to_another(api, app, user, project):
    owner = factories.make_user("other@example.com")
    other_project = factories.first_project(owner)
    theirs = factories.make_generation(other_project, owner)
    their_api = factories.ApiClient(
        app.test_client(), factories.make_key(owner, other_project).plaintext
    )
    assert _poll(their_api, theirs.id)["id"] == theirs.id  # remembered in this process

    for _ in range(2):
        assert _status(api, theirs.id) == 404
    assert _status(their_api, theirs.id) == 200


def test_redis_losing_its_data_does_not_revive_what_another_process_changed(
    api, app, project, user, shared
):
    gen = factories.make_generation(project, user, meta={"n": 1})
    assert _poll(api, gen.id)["meta"] == {"n": 1}
    # Another process changes it (its commit replaces the epoch), then Redis restarts
    # without its data before this process answers another poll.
    _behind_our_back(app, gen.id, meta={"n": 2})
    shared.set(generations.READS_EPOCH.key_for(gen.id), "replaced by the other process")
    shared.flushdb()

    assert _poll(api, gen.id)["meta"] == {"n": 2}
    assert shared.ttl(generations.READS_EPOCH.key_for(gen.id)) > 0  # recreated, and it expires


def test_memory_forgets_after_its_time_and_when_full():
    memory = epochs.Memory(remember_for=0.05, at_most=2)
    memory.remember("a", "k", "value", "stamp")
    assert memory.peek("a", "k") == ("value", "stamp")  # for a caller that checks the stamp
    assert memory.recall("a", "k", "stamp") == "value"
    assert memory.recall("a", "k", "another stamp") is None
    assert memory.recall("a", "k", "stamp") is None  # a stale stamp forgets the scope

    memory.remember("a", "k", "value", "stamp")
    time.sleep(0.06)
    assert memory.recall("a", "k", "stamp") is None

    memory.remember("a", "k", "value", "stamp")
    memory.remember("b", "k", "value", "stamp")
    memory.remember("c", "k", "value", "stamp")  # full: starts over
    assert [memory.recall(s, "k", "stamp") for s in "abc"] == [None, None, "value"]
    memory.remember("d", "k", "value", "")  # never stamped empty
    assert memory.recall("d", "k", "") is None


@pytest.mark.slow
@pytest.mark.redis
def test_a_worker_that_remembers_a_generation_sees_another_process_delete_it(
    app, user, project, redis_url, tmp_path
):
    created = factories.make_key(user, project)
    gen = factories.make_generation(project, user)
    path = f"/api/v1/generations/{gen.id}"
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    with servers.two_gunicorn_workers(database, redis_url, tmp_path) as gunicorn:
        url = gunicorn.url(path)
        with gunicorn.hold_one_worker(path) as held:
            before = [servers.get_status(url, created.plaintext) for _ in range(3)]
            generations.delete(project.id, gen.id)  # here, not in either worker
            after = [servers.get_status(url, created.plaintext) for _ in range(2)]
            held_reply = held.finish(created.plaintext)
        assert len(gunicorn.worker_pids()) == 2

    assert before == [200] * 3  # one worker: the second and third from its memory
    assert after == [404] * 2
    assert held_reply.startswith(b"HTTP/1.1 404")


def test_a_bulk_statement_that_names_no_generation_is_flagged(app, project, user, shared):
    gen = factories.make_generation(project, user)
    db.session.execute(update(Generation).where(Generation.id == gen.id).values(meta={"n": 2}))
    with pytest.warns(epochs.UnnotedChange, match="generation-epoch"):
        db.session.commit()

    generations.note_changed(gen.id)
    db.session.execute(update(Generation).where(Generation.id == gen.id).values(meta={"n": 3}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", epochs.UnnotedChange)
        db.session.commit()  # named: no warning


def test_a_bulk_statement_on_the_auth_epoch_replaces_it_unasked(app, user, shared):
    from app.services import api_keys

    db.session.execute(update(User).where(User.id == user.id).values(credits_monthly=7))
    db.session.commit()  # no watched column: nothing to replace
    before = api_keys.AUTH_EPOCH.read(shared)

    db.session.execute(update(User).where(User.id == user.id).values(disabled=True))
    db.session.commit()

    assert api_keys.AUTH_EPOCH.read(shared) != before
