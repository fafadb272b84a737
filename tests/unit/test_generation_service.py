"""The generation service: exactly-once endings and refunds, the sweeper, concurrency."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from rq.job import JobStatus
from sqlalchemy import delete, func, select

from app import queue
from app.errors import InsufficientCredits, NotFound
from app.extensions import db
from app.models import CreditTransaction, Flow, Generation, Image, Project, User, utcnow
from app.services import credits, flows, generations, images
from tests import factories


@pytest.fixture
def app_config():
    return {"EMBEDDED_WORKER": False}


def _create(project, user, **params) -> Generation:
    generation, created = generations.create(project, user, {"prompt": "a fox", **params})
    assert created
    return generation


def _reload(generation_id: str) -> Generation:
    db.session.expire_all()
    return db.session.get(Generation, generation_id)


def _refunds(generation_id: str) -> int:
    return db.session.scalar(
        select(func.count()).where(
            CreditTransaction.type == "refund", CreditTransaction.generation_id == generation_id
        )
    )


def _set(generation_id: str, **values) -> None:
    generations.note_changed(generation_id)  # as every bulk statement on generations must
    db.session.execute(db.update(Generation).where(Generation.id == generation_id).values(values))
    db.session.commit()


def test_run_takes_a_generation_through_the_stages_to_success(project, user):
    generation = _create(project, user, alias="@fox", flowAlias="@first-fox")
    generations.run(generation.id)
    done = _reload(generation.id)
    assert (done.status, done.stage) == ("success", "done")
    assert done.attempts == 1 and done.provider_ms is not None
    output = db.session.get(Image, done.output_image_id)
    assert output.alias == "@fox" and output.generation_id == done.id
    from app.services import flows

    assert flows.alias_map(done.flow_id) == {"@first-fox": output.id}
    # A second run of the same job (an RQ retry) does nothing.
    generations.run(generation.id)
    assert db.session.scalar(select(func.count()).select_from(Image)) == 1


def test_a_run_starts_at_the_first_stage_it_has_work_for(project, user):
    plain = _create(project, user)
    source = _create(project, user, alias="@source")
    generations.run(source.id)
    with_reference = _create(project, user, referenceImages=["@source"])
    enhanced = _create(project, user, autoEnhance=True)

    for generation, first in (
        (plain, "generating"),  # nothing to enhance or load: no empty stage before it
        (with_reference, "resolving"),
        (enhanced, "enhancing"),
    ):
        claimed, started = generations._claim(generation.id)
        assert (started, claimed.status, claimed.stage) == (True, "processing", first)
        assert _reload(generation.id).stage == first


def test_a_row_committed_between_the_claim_and_its_read_back_is_still_run(app, project, user):
    """The claim misses a row that is not pending yet; by the read-back, its request's commit
    has landed: the claim is tried again rather than the job dropped."""
    from sqlalchemy import event, update

    generation = _create(project, user)
    _set(generation.id, status="processing")  # not claimable for the claim's UPDATE
    landed = []

    def commit_lands(conn, cursor, statement, parameters, context, executemany) -> None:
        # The read-back (a SELECT through the session) follows only a claim that missed.
        if statement.startswith("SELECT generations.") and not landed:
            landed.append(statement)
            with db.engine.begin() as other:
                other.execute(
                    update(Generation)
                    .where(Generation.id == generation.id)
                    .values(status="pending")
                )

    event.listen(db.engine, "before_cursor_execute", commit_lands)
    try:
        generations.run(generation.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", commit_lands)

    assert len(landed) == 1  # the first claim did miss it
    assert _reload(generation.id).status == "success"


def test_fail_ends_once_and_refunds_once(project, user):
    generation = _create(project, user)
    assert credits.balance(user.id) == 49
    assert generations.fail(generation.id, "WORKER_LOST", "gone") is True
    assert generations.fail(generation.id, "TIMEOUT", "again") is False
    failed = _reload(generation.id)
    assert (failed.status, failed.error_code) == ("failed", "WORKER_LOST")
    assert _refunds(generation.id) == 1 and credits.balance(user.id) == 50
    # The worker picking the job up afterwards does not run it.
    generations.run(generation.id)
    assert _reload(generation.id).status == "failed"


def test_fail_never_touches_a_successful_generation(project, user):
    generation = _create(project, user)
    generations.run(generation.id)
    assert generations.fail(generation.id, "WORKER_LOST", "late hook") is False
    assert _reload(generation.id).status == "success"
    assert _refunds(generation.id) == 0 and credits.balance(user.id) == 49


def test_concurrent_endings_refund_exactly_once(app, backend, project, user):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    generation_id = _create(project, user).id
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def end() -> None:
        with app.app_context():
            barrier.wait(timeout=60)
            results.append(generations.fail(generation_id, "WORKER_LOST", "race"))

    threads = [threading.Thread(target=end) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert _refunds(generation_id) == 1 and credits.ledger_consistent(user.id)


def test_storage_failure_fails_and_refunds(app, project, user, tmp_path):
    generation = _create(project, user)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app.extensions["pictor.storage"].root = blocker  # the disk refuses every write
    generations.run(generation.id)
    failed = _reload(generation.id)
    assert (failed.status, failed.error_code) == ("failed", "STORAGE_ERROR")
    assert _refunds(generation.id) == 1 and credits.balance(user.id) == 50
    assert db.session.scalar(select(func.count()).select_from(Image)) == 0


def test_reference_deleted_before_the_run_fails_and_refunds(project, user):
    base = _create(project, user)
    generations.run(base.id)
    output_id = _reload(base.id).output_image_id
    generation = _create(project, user, referenceImages=[output_id])
    images.delete_image(db.session.get(Image, output_id), hard=True)
    generations.run(generation.id)
    failed = _reload(generation.id)
    assert (failed.status, failed.error_code) == ("failed", "IMAGE_NOT_FOUND")
    assert _refunds(generation.id) == 1


def test_wait_returns_as_it_stands_after_the_timeout(project, user):
    generation = _create(project, user)
    assert generations.wait(generation.id, 0.2).status == "pending"


def test_sweeper_fails_processing_past_its_deadline(project, user):
    generation = _create(project, user)
    past = utcnow() - timedelta(minutes=10)
    _set(generation.id, status="processing", started_at=past, deadline_at=past)
    assert generations.sweep_stuck() == 1
    swept = _reload(generation.id)
    assert (swept.status, swept.error_code) == ("failed", "WORKER_LOST")
    assert _refunds(generation.id) == 1
    assert generations.sweep_stuck() == 0


def test_sweeper_fails_pending_whose_job_is_gone_and_keeps_queued_ones(project, user):
    lost, queued = _create(project, user), _create(project, user)
    queue.fetch_job(lost.id).delete()
    old = utcnow() - timedelta(minutes=5)
    _set(lost.id, created_at=old)
    _set(queued.id, created_at=old)
    assert generations.sweep_stuck() == 1
    assert _reload(lost.id).status == "failed"
    assert _reload(queued.id).status == "pending"  # its job is still waiting for a worker
    assert _refunds(queued.id) == 0


def test_sweeper_fails_processing_whose_worker_went_silent(project, user):
    generation = _create(project, user)
    job = queue.fetch_job(generation.id)
    job.worker_name = "worker-that-died"
    job.save()
    job.set_status(JobStatus.STARTED)
    started = utcnow() - timedelta(minutes=1)
    _set(
        generation.id,
        status="processing",
        started_at=started,
        deadline_at=utcnow() + timedelta(minutes=3),
    )
    assert generations.sweep_stuck() == 1
    assert _reload(generation.id).error_code == "WORKER_LOST"


def test_sweeper_leaves_a_running_generation_alone(project, user):
    generation = _create(project, user)
    job = queue.fetch_job(generation.id)
    job.worker_name = "busy-worker"
    job.save()
    job.set_status(JobStatus.STARTED)
    redis = queue.get_redis()
    redis.hset("rq:worker:busy-worker", "last_heartbeat", _rq_now())
    started = utcnow() - timedelta(minutes=1)
    _set(
        generation.id,
        status="processing",
        started_at=started,
        deadline_at=utcnow() + timedelta(minutes=3),
    )
    assert generations.sweep_stuck() == 0
    assert _reload(generation.id).status == "processing"


def _rq_now() -> str:
    from rq.utils import now, utcformat

    return utcformat(now())


def test_fifty_concurrent_submissions_against_ten_credits_accept_exactly_ten(app, backend):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    owner = factories.make_user()
    credits.add(owner.id, -40, "adjustment", bucket="monthly", note="leave 10")
    user_id, project_id = owner.id, factories.first_project(owner).id
    accepted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def submit(i: int) -> None:
        with app.app_context():
            user = db.session.get(User, user_id)
            project = db.session.get(Project, project_id)
            db.session.commit()  # hand the connection back: 50 threads share a smaller pool
            barrier.wait(timeout=60)
            try:
                generation, _ = generations.create(project, user, {"prompt": f"race {i}"})
            except InsufficientCredits:
                with lock:
                    refused.append(str(i))
                return
            with lock:
                accepted.append(generation.id)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 10 and len(refused) == 40
    assert credits.balance(user_id) == 0 and credits.ledger_consistent(user_id)
    rows = db.session.scalar(select(func.count()).where(Generation.user_id == user_id))
    assert rows == 10
    lowest = db.session.scalar(
        select(func.min(CreditTransaction.balance_after)).where(
            CreditTransaction.user_id == user_id
        )
    )
    assert lowest == 0


def test_idempotent_retries_racing_charge_once(app, backend, project, user):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    user_id, project_id = user.id, project.id
    ids: list[str] = []
    barrier = threading.Barrier(10)

    def submit() -> None:
        with app.app_context():
            owner = db.session.get(User, user_id)
            proj = db.session.get(Project, project_id)
            db.session.commit()
            barrier.wait(timeout=60)
            generation, _ = generations.create(
                proj, owner, {"prompt": "once"}, idempotency_key="retry-me"
            )
            ids.append(generation.id)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 10 and len(set(ids)) == 1
    assert credits.balance(user_id) == 49
    usage = db.session.scalar(select(func.count()).where(CreditTransaction.type == "usage"))
    assert usage == 1


def test_a_flow_deleted_while_a_generation_joins_it_is_404_not_a_500(app, backend, project, user):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    flow_id = factories.make_flow(project).id
    db.session.commit()
    balance = credits.balance(user.id)
    # Another request is deleting the flow and has not committed yet.
    other = db.engine.connect()
    deleting = other.begin()
    other.execute(delete(Flow).where(Flow.id == flow_id))
    outcome: list[str] = []

    def join_the_flow() -> None:
        with app.app_context():
            try:
                _create(project, user, flowId=flow_id)
                outcome.append("created")
            except NotFound as exc:
                outcome.append(exc.message)
            except Exception as exc:  # noqa: BLE001  (the bug: an IntegrityError, a 500)
                outcome.append(type(exc).__name__)

    joiner = threading.Thread(target=join_the_flow)
    joiner.start()
    joiner.join(timeout=1.0)
    assert joiner.is_alive(), f"the request did not wait for the delete: {outcome}"
    deleting.commit()
    other.close()
    joiner.join(timeout=30)
    assert outcome == ["Flow not found"]
    assert credits.balance(user.id) == balance


def test_generations_joining_one_flow_at_once_do_not_wait_for_each_other(
    app, backend, project, user
):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    flow_id = factories.make_flow(project).id
    db.session.commit()
    holding, release = threading.Event(), threading.Event()

    def another_request_joining() -> None:  # holds its hold on the flow until released
        with app.app_context():
            flows.get_flow(project.id, flow_id, to_add_to=True)
            holding.set()
            release.wait(30)
            db.session.rollback()

    other = threading.Thread(target=another_request_joining)
    other.start()
    try:
        assert holding.wait(10)
        done: list[str] = []

        def join_the_flow() -> None:
            with app.app_context():
                done.append(_create(project, user, flowId=flow_id).flow_id)

        joiner = threading.Thread(target=join_the_flow)
        joiner.start()
        joiner.join(timeout=10)
        assert done == [flow_id], "the second request waited for the first"
    finally:
        release.set()
        other.join(30)


def test_a_generation_deleted_while_it_runs_leaves_its_output_deleted_and_its_alias_free(
    app, project, user
):
    app.config["LOCAL_PROVIDER_DELAY_MS"] = 800  # time to delete it while the model works

    def work(generation_id: str) -> None:
        with app.app_context():
            generations.run(generation_id)

    generation = _create(project, user, alias="@doomed")
    worker = threading.Thread(target=work, args=(generation.id,))
    worker.start()
    deadline = utcnow() + timedelta(seconds=10)
    while _reload(generation.id).stage != "generating":
        assert utcnow() < deadline, "the run never reached the model"
        db.session.commit()
        time.sleep(0.01)
    generations.delete(project.id, generation.id)
    worker.join(timeout=30)

    done = _reload(generation.id)
    assert (done.status, done.deleted_at is not None) == ("success", True)
    output = db.session.get(Image, done.output_image_id)
    assert output.deleted_at is not None
    assert (output.alias, output.deleted_alias) == (None, "@doomed")
    app.config["LOCAL_PROVIDER_DELAY_MS"] = 0
    again = _create(project, user, alias="@doomed")  # the name is free again
    generations.run(again.id)
    assert db.session.get(Image, _reload(again.id).output_image_id).alias == "@doomed"
