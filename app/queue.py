"""The job queue: RQ on Redis at REDIS_URL, or an embedded one when REDIS_URL is unset.

Three modes, chosen once per app and logged when first used:

- ``redis``: REDIS_URL is set. Workers are separate processes (`flask --app wsgi worker`), on
  any number of machines.
- ``embedded-redis``: no REDIS_URL and a `redis-server` binary on PATH. A private redis-server
  listens on a unix socket under `instance/redis/` (no TCP port) and is stopped with the process;
  this process runs the worker in a thread.
- ``embedded-fakeredis``: neither. RQ runs over an in-process fake Redis with a worker thread.

Embedded modes serve a single web process (the worker lives in it). The worker thread starts on
the first enqueue and stops with `stop(app)` or at exit.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess  # nosec B404  # only to run redis-server, see _start_server
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from app.errors import ServiceUnavailable
from app.observability import current_request_id

log = logging.getLogger(__name__)

GENERATION_QUEUE = "generations"
MAINTENANCE_QUEUE = "maintenance"
# Workers take jobs in this order. Maintenance first: the sweeper, webhook deliveries and resets
# are short, and behind a backlog of generations they would starve (a lost job never swept).
QUEUES = (MAINTENANCE_QUEUE, GENERATION_QUEUE)
# Held by the one process that enqueues the periodic jobs (jobs/worker.py; flask doctor reads it).
CRON_LEADER_KEY = "pictor:cron:leader"
UNAVAILABLE = "The job queue is unavailable, try again shortly"

# Runs redis-server and stops it when our end of stdin closes, i.e. when this process exits,
# however it exits (a SIGKILLed test run leaves no server behind).
_SUPERVISOR = 'redis-server "$@" & pid=$!; cat >/dev/null; kill "$pid"; wait "$pid"'
_UNIX_PATH_MAX = 100


class QueueRuntime:
    """The Redis connection of one app, and in embedded modes the server and worker thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.url: str | None = app.config.get("REDIS_URL")
        self.mode = "redis" if self.url else _embedded_mode(app.config.get("EMBEDDED_QUEUE"))
        self._lock = threading.RLock()
        self._redis: Redis | None = None
        self._fake_server: Any = None
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None
        self._socket_dir_is_temporary = False
        self._worker: Any = None
        self._stopped = False

    @property
    def embedded(self) -> bool:
        return self.mode != "redis"

    def redis(self) -> Redis:
        with self._lock:
            if self._redis is None:
                self._redis = self._connect()
                if self.embedded:
                    atexit.register(self.stop)
                else:
                    log.info("queue mode: %s", self.describe())
            return self._redis

    def new_connection(self) -> Redis:
        """Another connection to the same server with its own pool (for a worker)."""
        self.redis()
        if self.mode == "redis":
            return Redis.from_url(self.url or "", socket_connect_timeout=2)
        if self.mode == "embedded-redis":
            return Redis(unix_socket_path=str(self._socket))
        import fakeredis

        return fakeredis.FakeStrictRedis(server=self._fake_server)

    def describe(self) -> str:
        if self.mode == "redis":
            return f"Redis at {_redact(self.url or '')}; run `flask --app wsgi worker` for workers"
        where = f"redis-server on {self._socket}" if self._socket else "in-process fake Redis"
        return f"{self.mode}: {where}, worker thread in this process (single process only)"

    def _connect(self) -> Redis:
        if self.mode == "redis":
            return Redis.from_url(self.url or "", socket_timeout=5, socket_connect_timeout=2)
        if self.mode == "embedded-redis":
            try:
                return self._start_server()
            except (OSError, RedisError, subprocess.SubprocessError) as exc:
                log.warning("redis-server did not start (%s); using an in-process fake Redis", exc)
                self.mode = "embedded-fakeredis"
        import fakeredis

        self._fake_server = fakeredis.FakeServer()
        return fakeredis.FakeStrictRedis(server=self._fake_server)

    def _start_server(self) -> Redis:
        directory = Path(self.app.instance_path) / "redis"
        name = f"redis-{id(self):x}.sock"
        if len(str(directory / name)) > _UNIX_PATH_MAX:
            directory = Path(tempfile.mkdtemp(prefix="pictor-redis-"))
            self._socket_dir_is_temporary = True
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._socket = directory / name
        self._socket.unlink(missing_ok=True)
        args = ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        args += ["--loglevel", "warning", "--logfile", str(directory / "redis.log")]
        self._supervisor = subprocess.Popen(  # noqa: S603  # nosec B603  # fixed program, our arguments
            ["/bin/sh", "-c", _SUPERVISOR, "pictor-redis", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        conn = Redis(unix_socket_path=str(self._socket), socket_timeout=5)
        deadline = time.monotonic() + 5
        while True:
            try:
                conn.ping()
                return conn
            except RedisError:
                if time.monotonic() > deadline or self._supervisor.poll() is not None:
                    self._stop_server()
                    raise
                time.sleep(0.01)

    # --- embedded worker ---------------------------------------------------------------------

    def worker_started(self) -> None:
        """Start the embedded worker thread if this mode has one and it is not running."""
        if not self.embedded or not self.app.config.get("EMBEDDED_WORKER", True):
            return
        with self._lock:
            if self._stopped or (self._worker is not None and self._worker.is_alive()):
                return
            from jobs.worker import EmbeddedWorker

            self._worker = EmbeddedWorker(self.app, self.new_connection())
            self._worker.start()
            log.warning("queue mode: %s", self.describe())

    def wake(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.wake()

    def stop(self) -> None:
        """Stop the worker thread (waiting for its current job) and the embedded server."""
        atexit.unregister(self.stop)  # which held this runtime, and its app, until exit
        with self._lock:
            self._stopped = True
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        with self._lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None
            self._stop_server()

    def _stop_server(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            if supervisor.stdin:
                supervisor.stdin.close()
            try:
                supervisor.wait(timeout=5)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
            if self._socket_dir_is_temporary:
                shutil.rmtree(self._socket.parent, ignore_errors=True)


def _embedded_mode(choice: str | None) -> str:
    choice = (choice or "auto").strip().lower()
    if choice == "fakeredis":
        return "embedded-fakeredis"
    if choice in ("auto", "redis-server") and shutil.which("redis-server"):
        return "embedded-redis"
    return "embedded-fakeredis"


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def init_app(app: Flask) -> None:
    app.extensions["pictor.queue"] = QueueRuntime(app)


def runtime(app: Flask | None = None) -> QueueRuntime:
    return (app or current_app).extensions["pictor.queue"]


def get_redis() -> Redis:
    """The shared Redis connection for queues, locks, rate limits and progress."""
    return runtime().redis()


def ping() -> None:
    """Raise when the queue's Redis cannot be reached."""
    get_redis().ping()


def stop(app: Flask) -> None:
    """Stop the embedded worker thread and server of `app` (tests, shutdown)."""
    runtime(app).stop()


def enqueue(
    queue_name: str,
    func: Callable[..., Any] | str,
    *args: Any,
    delay: float | None = None,
    **options: Any,
) -> Job:
    """Put a job on a queue (after `delay` seconds when given: RQ's scheduler moves it).

    `options` are RQ's (job_id, job_timeout, retry, on_failure, …). ServiceUnavailable (503)
    when Redis cannot be reached.
    """
    request_id = current_request_id()
    if request_id:  # the job (and what it enqueues) logs under the request that caused it
        options["meta"] = {"request_id": request_id, **options.get("meta", {})}
    rt = runtime()
    try:
        connection = rt.redis()
        queue = Queue(queue_name, connection=connection)
        # On a pipeline of ours: one round trip. Without one, RQ sends two (the queue's entry
        # in its set of queues, then the job and its push).
        with connection.pipeline() as pipeline:
            if delay is not None:
                job = queue.enqueue_in(
                    timedelta(seconds=delay), func, *args, pipeline=pipeline, **options
                )
            else:
                job = queue.enqueue(func, *args, pipeline=pipeline, **options)
            pipeline.execute()
    except RedisError as exc:
        log.warning("enqueue on %s failed: %s", queue_name, exc)
        raise ServiceUnavailable(UNAVAILABLE) from exc
    rt.worker_started()
    rt.wake()
    return job


def fetch_job(job_id: str) -> Job | None:
    """The RQ job, or None when it no longer exists (or Redis cannot be reached: RedisError)."""
    from rq.exceptions import NoSuchJobError

    try:
        return Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return None


def worker_heartbeat(worker_name: str) -> float | None:
    """Seconds since the named RQ worker's last heartbeat; None when it is gone."""
    from rq.utils import now, utcparse

    raw = get_redis().hget(f"rq:worker:{worker_name}", "last_heartbeat")
    if raw is None:
        return None
    return (now() - utcparse(raw.decode())).total_seconds()


def publish(channel: str, message: str) -> None:
    """Best effort: progress notifications must never break the work that sends them."""
    try:
        get_redis().publish(channel, message)
    except RedisError as exc:
        log.warning("publish on %s failed: %s", channel, exc)


class Listener:
    """Waits for messages on one channel; without Redis it just sleeps (callers poll)."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def wait(self, timeout: float) -> bool:
        """True when a message arrived (or the caller should look again), False on timeout."""
        return self.next(timeout) is not None

    def next(self, timeout: float) -> str | None:
        """The next message, "" when the caller should just look again (polling), None on
        timeout."""
        if self._pubsub is not None:
            try:
                message = self._message(timeout)
            except RedisError as exc:
                log.warning("subscription lost (%s); polling instead", exc)
                self._pubsub = None
            else:
                if message is None:
                    return None
                data = message["data"]
                return data.decode() if isinstance(data, bytes) else str(data)
        time.sleep(min(timeout, 1.0))
        return ""

    def _message(self, timeout: float) -> dict[str, Any] | None:
        """The next published message within `timeout`. redis-py answers None at once for the
        subscription's confirmation, which is not a timeout: that would have every waiter read
        its row once more, for nothing, right after subscribing."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=max(0.0, deadline - time.monotonic())
            )
            if message is not None or time.monotonic() >= deadline:
                return message

    def close(self) -> None:
        if self._pubsub is not None:
            with suppress(RedisError):
                self._pubsub.close()


@contextmanager
def listen(channel: str) -> Iterator[Listener]:
    try:
        pubsub = get_redis().pubsub()
        pubsub.subscribe(channel)
    except RedisError as exc:
        log.warning("subscribe to %s failed (%s); polling instead", channel, exc)
        pubsub = None
    listener = Listener(pubsub)
    try:
        yield listener
    finally:
        listener.close()
