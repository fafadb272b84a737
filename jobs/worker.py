"""Workers: `flask --app wsgi worker` (forking RQ worker) and the embedded worker thread.

Both run the same queues, RQ's scheduler (delayed jobs: retries, webhook backoff) and the same
periodic jobs (`Cron`). Generations that die with their work-horse are ended by
`horse_killed`; those whose whole worker died are ended by the periodic sweep.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.cron import CronScheduler
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus
from sqlalchemy.exc import SQLAlchemyError

from app.queue import CRON_LEADER_KEY, MAINTENANCE_QUEUE, QUEUES
from jobs import app_context, generate, maintenance

log = logging.getLogger(__name__)

CRON_TICK_SECONDS = 1.0
_LEADER_TTL = 15
# Take or keep the leader lease: one process enqueues the periodic jobs, whatever runs.
_LEAD_SCRIPT = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('expire', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""


class Cron:
    """The periodic jobs, enqueued by whichever process holds the leader lease."""

    def __init__(self, connection: Redis, config: Any) -> None:
        self.connection = connection
        self.name = uuid.uuid4().hex
        self._lead = connection.register_script(_LEAD_SCRIPT)
        self.scheduler = CronScheduler(connection, logging_level="WARNING", name=self.name)
        every = int(config.get("SWEEP_INTERVAL_SECONDS", 30))
        self.scheduler.register(maintenance.sweep_stuck, MAINTENANCE_QUEUE, interval=every)
        self.scheduler.register(maintenance.deliver_due_webhooks, MAINTENANCE_QUEUE, interval=every)
        self.scheduler.register(maintenance.flush_live_hits, MAINTENANCE_QUEUE, interval=every)
        self.scheduler.register(maintenance.reset_credits, MAINTENANCE_QUEUE, cron="7 0 * * *")
        self.scheduler.register(maintenance.purge_images, MAINTENANCE_QUEUE, cron="17 3 * * *")

    def tick(self) -> int:
        """Enqueue the periodic jobs that are due, if this process leads. Returns how many."""
        try:
            if not self._lead(keys=[CRON_LEADER_KEY], args=[self.name, _LEADER_TTL]):
                return 0
            return len(self.scheduler.enqueue_jobs())
        except RedisError as exc:
            log.warning("cron tick failed: %s", exc)
            return 0


def horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """RQ calls this (not on_failure) when a work-horse dies: OOM, SIGKILL."""
    if job.func_name != f"{generate.__name__}.run":
        return
    from app.services import generations

    with app_context(job):
        generations.fail(job.args[0], "WORKER_LOST", generations.WORKER_LOST_MESSAGE)


# This process's ends of the worker–horse pipes. Any child it forks (RQ's scheduler process)
# closes them, so that a pipe's far end closes exactly when the horse or the worker dies.
_PIPE_ENDS: set[int] = set()


def _close(fd: int) -> None:
    _PIPE_ENDS.discard(fd)
    with suppress(OSError):
        os.close(fd)


def _close_pipe_ends() -> None:
    for fd in list(_PIPE_ENDS):
        _close(fd)


os.register_at_fork(after_in_child=_close_pipe_ends)


class PictorJob(Job):
    """RQ's job, keeping the hash it was restored from: the worker hands it to its horse,
    which then has the job without reading it from Redis again (a forked horse of RQ's own
    has it in the memory it was forked with)."""

    raw: dict[bytes, bytes] | None = None

    def restore(self, raw_data: Any) -> Any:
        self.raw = raw_data
        return super().restore(raw_data)


def job_line(job: Job, queue_name: str, execution_id: str, created: float) -> bytes:
    """What the worker writes to its horse for a job: one line of JSON, the job's hash in it
    with every byte as the code point of the same value (JSON escapes a newline)."""
    raw = getattr(job, "raw", None)
    text = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw.items()} if raw else None
    fields = [job.id, queue_name, execution_id, created, text]
    return json.dumps(fields, ensure_ascii=False).encode() + b"\n"


def read_job_line(line: bytes) -> tuple[str, str, str, float, dict[bytes, bytes] | None]:
    job_id, queue_name, execution_id, created, text = json.loads(line)
    raw = {k.encode("latin-1"): v.encode("latin-1") for k, v in text.items()} if text else None
    return job_id, queue_name, execution_id, created, raw


@dataclass
class _Horse:
    pid: int
    jobs: int  # the worker writes one line per job
    reports: int  # the horse writes one byte per job done: "." when it succeeded, "!" if not
    done: int = 0
    spent: bool = False  # a job failed in it (a timeout, say): it may hold broken state


class PictorWorker(Worker):
    """RQ's forking worker, with a work-horse that serves many jobs instead of one.

    RQ forks a work-horse per job; the fork, the horse's new database connection (a new
    PostgreSQL backend with cold caches) and the pages it copies on write were half of a
    generation's queue overhead. Here the horse is forked once and takes its jobs over a pipe
    (each as the worker dequeued it, `job_line`: the horse does not read it from Redis again),
    answering each with a byte, and is replaced after `horse_jobs` jobs, or after a job that
    failed in it (a timeout interrupts a job anywhere, a database connection mid-exchange
    included: the next job should not inherit that).

    The worker watches it as RQ watches its own, through RQ's `monitor_work_horse`: heartbeats,
    the job timeout's kill, stop commands. A horse that dies mid-job (SIGKILL, OOM) closes its
    end of the pipe; the worker reaps it and RQ runs the work-horse-killed hook and fails the
    job, exactly as for a per-job horse. A horse is forked before it is needed (when the
    worker starts, and as soon as the last one was lost or retired) and warms up.
    """

    _horse: _Horse | None = None
    horse_jobs = 100  # WORKER_HORSE_JOBS
    job_class = PictorJob

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        self._horse_pid = self._hand_over(job, queue, execution)
        self.monitor_work_horse(job, queue, execution)
        horse = self._horse
        if horse is None or horse.spent or horse.done >= self.horse_jobs:  # lost, spent or old
            self._retire()
            self._fork_horse()
        self.set_state(WorkerStatus.IDLE)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat (three commands), sent as one round trip when it has no pipeline:
        it runs between every dequeue and the job's hand-over."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        with self.connection.pipeline(transaction=False) as batch:
            super().heartbeat(timeout, pipeline=batch)
            batch.execute()

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        self._fork_horse()

    def wait_for_horse(self) -> tuple[int | None, int | None, Any]:
        """Until the horse reports its job done (EX_OK) or dies (its status, as os.wait4)."""
        horse = self._horse
        if horse is None:  # reaped already (killed, then waited for)
            return None, None, None
        report = os.read(horse.reports, 1)
        if report:
            horse.done += 1
            horse.spent = report != b"."
            return horse.pid, os.EX_OK, None
        return self._reap(horse)

    def teardown(self) -> None:
        self._retire()
        super().teardown()

    def _hand_over(self, job: Job, queue: Queue, execution: Execution) -> int:
        line = job_line(job, queue.name, execution.id, execution.created_at.timestamp())
        try:
            return self._send(line)
        except BrokenPipeError:  # it died while idle: reap it and fork another, once
            self._retire()
            return self._send(line)

    def _send(self, line: bytes) -> int:
        horse = self._horse or self._fork_horse()
        view = memoryview(line)
        while view:  # the worker is the pipe's only writer: a line may take several writes
            view = view[os.write(horse.jobs, view) :]
        return horse.pid

    def _fork_horse(self) -> _Horse:
        jobs_out, jobs_in = os.pipe()
        reports_out, reports_in = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(jobs_in)
            os.close(reports_out)
            _PIPE_ENDS.update((jobs_out, reports_in))
            try:
                self._serve(jobs_out, reports_in)
            except BaseException:
                self.log.exception("Worker %s: work-horse failed", self.name)
                os._exit(1)
            os._exit(0)
        os.close(jobs_out)
        os.close(reports_in)
        _PIPE_ENDS.update((jobs_in, reports_out))
        self._horse = _Horse(pid, jobs_in, reports_out)
        self.procline(f"Forked {pid} at {time.time()}")
        return self._horse

    def _serve(self, jobs_out: int, reports_in: int) -> None:
        """The horse: run each job the worker hands over, until the worker closes the pipe."""
        from app.extensions import db

        os.setpgrp()
        random.seed()
        self.setup_work_horse_signals()
        self._is_horse = True
        db.engine.dispose(close=False)  # the worker's connections stay the worker's
        _warm_up()  # its own connection, and its PostgreSQL backend's caches
        with os.fdopen(jobs_out, "rb") as lines:
            for line in lines:
                job_id, queue_name, execution_id, created, raw = read_job_line(line)
                try:
                    job = self.job_from(job_id, raw)
                except NoSuchJobError:  # gone from Redis, and not handed over: nothing to run
                    os.write(reports_in, b".")
                    continue
                queue = next(q for q in self.queues if q.name == queue_name)
                execution = Execution(execution_id, job_id, self.connection, self.name)
                execution.created_at = datetime.fromtimestamp(created, UTC)
                self.executions[execution.id] = execution
                os.environ["RQ_JOB_ID"] = job_id
                succeeded = self.perform_job(job, queue, execution)
                os.write(reports_in, b"." if succeeded else b"!")

    def job_from(self, job_id: str, raw: dict[bytes, bytes] | None) -> Job:
        """The job as the worker dequeued it (`raw`), else as Redis has it now."""
        if raw is None:
            return self.job_class.fetch(
                job_id, connection=self.connection, serializer=self.serializer
            )
        job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
        job.restore(raw)
        return job

    def _reap(self, horse: _Horse) -> tuple[int | None, int | None, Any]:
        if self._horse is horse:
            self._horse = None
        _close(horse.jobs)
        _close(horse.reports)
        with suppress(ChildProcessError):
            return os.wait4(horse.pid, 0)
        return None, None, None

    def _retire(self) -> None:
        """Close the horse's pipe: it finishes its loop and exits."""
        if self._horse is not None:
            self._reap(self._horse)


def _warm_up() -> None:
    """Run the hot statements once: compiled in the worker, so every horse inherits them; in
    a horse, its connection opens and its PostgreSQL backend caches what the jobs touch."""
    from app.services import generations

    with app_context():
        try:
            generations.warm_up()
        except SQLAlchemyError as exc:  # the database may come up later; jobs will retry
            log.warning("warm-up skipped: %s", exc)


def _preload(app: Flask) -> None:
    """Import and build in the parent what every job needs, so each work-horse it forks
    starts warm."""
    from PIL import Image as PILImage
    from sqlalchemy.orm import configure_mappers

    from app.providers import get_provider
    from app.services import webhooks  # noqa: F401

    PILImage.init()
    get_provider(app.config)
    configure_mappers()
    with app.app_context():
        _warm_up()


def run_worker(app: Flask, connection: Redis, *, burst: bool = False) -> bool:
    """`flask --app wsgi worker`: work the queues until stopped (or until empty with burst)."""
    _preload(app)
    worker = PictorWorker(
        [Queue(name, connection=connection) for name in QUEUES],
        connection=connection,
        work_horse_killed_handler=horse_killed,
        job_monitoring_interval=int(app.config["WORKER_MONITOR_SECONDS"]),
    )
    worker.horse_jobs = int(app.config["WORKER_HORSE_JOBS"])
    stop = threading.Event()
    if not burst:
        cron = Cron(connection, app.config)
        ticker = threading.Thread(target=_cron_loop, args=(cron, stop), name="cron", daemon=True)
        ticker.start()
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
    finally:
        stop.set()


def _cron_loop(cron: Cron, stop: threading.Event) -> None:
    while not stop.is_set():
        cron.tick()
        stop.wait(CRON_TICK_SECONDS)


class ThreadWorker(SimpleWorker):
    """RQ's in-process worker, made safe for a thread (STACK.md "Embedded mode")."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread; the embedded worker is stopped by its owner."""

    def subscribe(self) -> None:
        """No remote-control channel: nothing outside this process can reach the thread."""

    def unsubscribe(self) -> None:
        """Nothing to undo (see subscribe)."""


class EmbeddedWorker(threading.Thread):
    """The worker of the embedded modes: burst after burst, woken by every enqueue."""

    def __init__(self, app: Flask, connection: Redis) -> None:
        super().__init__(name="pictor-embedded-worker", daemon=True)
        self.app = app
        self.connection = connection
        self._wake = threading.Event()
        self._halt = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        self._halt.set()
        self._wake.set()
        if self is not threading.current_thread():
            self.join(timeout)

    def run(self) -> None:
        queues = [Queue(name, connection=self.connection) for name in QUEUES]
        worker = ThreadWorker(queues, connection=self.connection)
        cron = Cron(self.connection, self.app.config)
        with self.app.app_context():
            while not self._halt.is_set():
                try:
                    worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
                    cron.tick()
                except Exception:
                    log.exception("embedded worker loop failed; retrying")
                    worker = ThreadWorker(queues, connection=self.connection)
                self._wake.wait(CRON_TICK_SECONDS)
                self._wake.clear()
