"""Workers: `flask --app wsgi worker` (forking RQ worker) and the embedded worker thread.

Both run the same queues, RQ's scheduler (delayed jobs: retries, webhook backoff) and the same
periodic jobs (`Cron`). Generations that die with their work-horse are ended by
`horse_killed`; those whose whole worker died are ended by the periodic sweep.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.cron import CronScheduler
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
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


class PictorWorker(Worker):
    """RQ's forking worker; the work-horse must not share the parent's database connections."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        from app.extensions import db

        db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


def _preload(app: Flask) -> None:
    """Import and build in the parent what every job needs, so each forked work-horse
    starts warm instead of paying for it per job."""
    from PIL import Image as PILImage
    from sqlalchemy.orm import configure_mappers

    from app.providers import get_provider
    from app.services import generations, webhooks  # noqa: F401

    PILImage.init()
    get_provider(app.config)
    configure_mappers()
    with app.app_context():
        try:
            generations.warm_up()
        except SQLAlchemyError as exc:  # the database may come up later; jobs will retry
            log.warning("warm-up skipped: %s", exc)


def run_worker(app: Flask, connection: Redis, *, burst: bool = False) -> bool:
    """`flask --app wsgi worker`: work the queues until stopped (or until empty with burst)."""
    _preload(app)
    worker = PictorWorker(
        [Queue(name, connection=connection) for name in QUEUES],
        connection=connection,
        work_horse_killed_handler=horse_killed,
        job_monitoring_interval=int(app.config["WORKER_MONITOR_SECONDS"]),
    )
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
