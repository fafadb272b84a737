"""Queue overhead: accept → success with the local provider at 0 ms delay, on real workers.

Starts N `flask --app wsgi worker` processes on real Redis and PostgreSQL (a throwaway database),
then keeps N generations in flight at a time (closed loop, so no generation waits behind
another) until COUNT have finished. Per generation, from the database row:

  overhead = completedAt − createdAt − providerMs         (the issue's definition)
  pickup   = startedAt − createdAt                        (commit → a worker starts it)
  in-job   = completedAt − startedAt − providerMs         (references, image validation and
                                                           re-encoding, thumbnail, storage, DB)

Run from the repository root:

  python bench/queue_overhead.py --redis-url redis://127.0.0.1:6379/2

The Redis database given is flushed. Record results in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ms(start, end) -> float:  # noqa: ANN001  (datetimes, naive UTC from RQ or aware)
    from datetime import UTC

    start, end = (v if v.tzinfo else v.replace(tzinfo=UTC) for v in (start, end))
    return (end - start).total_seconds() * 1000


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU, CPU of its children already reaped) in seconds, from /proc; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    own = (int(fields[11]) + int(fields[12])) / _TICK
    return own, (int(fields[13]) + int(fields[14])) / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _postgres_backends(database: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if command.startswith("postgres:") and f" {database} " in command:
                found.append(int(entry.name))
    return found


def cpu_snapshot(workers: list[int], database: str) -> dict[str, float]:
    """CPU seconds used so far by each part of the system under test (Linux /proc)."""
    snapshot = {"work-horses": 0.0, "worker processes": 0.0, "PostgreSQL backends": 0.0}
    for pid in workers:
        own, reaped = _proc_cpu(pid)
        snapshot["worker processes"] += own
        snapshot["work-horses"] += reaped + sum(_proc_cpu(c)[0] for c in _children(pid))
    snapshot["PostgreSQL backends"] = sum(_proc_cpu(p)[0] for p in _postgres_backends(database))
    times = os.times()
    snapshot["this process (client, API)"] = times.user + times.system
    return snapshot


def service_environment(database_url: str, redis_url: str, workdir: Path) -> dict[str, str]:
    """This environment, without Gemini or Flask settings, for the app on `database_url` and
    `redis_url`, with the local provider at 0 ms delay and its files in `workdir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "FLASK_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        STORAGE_DIR=str(workdir / "storage"),
        PICTOR_INSTANCE_DIR=str(workdir / "instance"),
        SECRET_KEY="bench",
        IMAGE_PROVIDER="local",
        LOCAL_PROVIDER_DELAY_MS="0",
        PYTHONPATH=str(ROOT),
    )
    return env


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "PICTOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("PICTOR_BENCH_REDIS", "redis://127.0.0.1:6379/14")
    )
    args = parser.parse_args()

    import redis
    from sqlalchemy import create_engine, text

    redis.Redis.from_url(args.redis_url).flushdb()
    name = f"pictor_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = re.sub(r"/[^/]*$", f"/{name}", args.pg_admin_url)
    workdir = Path(tempfile.mkdtemp(prefix="pictor-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        return run(args, database_url, workdir, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(
    args: argparse.Namespace,
    database_url: str,
    workdir: Path,
    processes: list[subprocess.Popen[bytes]],
) -> int:
    from rq import Worker
    from sqlalchemy import select

    from app import create_app, queue
    from app.extensions import db
    from app.models import Generation, Project, User
    from app.services import accounts, credits, generations, projects

    env = service_environment(database_url, args.redis_url, workdir)
    os.environ.update(env)
    app = create_app()
    with app.app_context():
        db.create_all()
        user = accounts.create_user("bench@example.com", "bench-password")
        credits.add(user.id, args.count + args.warmup + 10, "grant", note="benchmark")
        user_id, project_id = user.id, projects.list_projects(user)[0].id
        for index in range(args.workers):
            log = (workdir / f"worker-{index}.log").open("wb")
            processes.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        connection = queue.get_redis()
        deadline = time.monotonic() + 120
        while Worker.count(connection=connection) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start; see " + str(workdir))
            time.sleep(0.2)

    def drive(indexes: range) -> list[str]:
        """Keep `args.workers` generations in flight until every index has finished."""
        finished: list[str] = []
        lock = threading.Lock()
        counter = iter(indexes)

        def client() -> None:
            with app.app_context():
                user = db.session.get(User, user_id)
                project = db.session.get(Project, project_id)
                while True:
                    with lock:
                        index = next(counter, None)
                    if index is None:
                        return
                    generation, _ = generations.create(
                        project, user, {"prompt": f"benchmark picture {index}", "seed": index}
                    )
                    done = generations.wait(generation.id, 120)
                    if done.status != "success":
                        raise SystemExit(f"generation {done.id} ended {done.status}")
                    with lock:
                        finished.append(done.id)
                    db.session.commit()

        threads = [threading.Thread(target=client) for _ in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return finished

    drive(range(args.warmup))
    worker_pids = [process.pid for process in processes]
    database = database_url.rsplit("/", 1)[1]
    cpu_before = cpu_snapshot(worker_pids, database)
    started = time.monotonic()
    finished = drive(range(args.warmup, args.warmup + args.count))
    wall = time.monotonic() - started
    cpu_after = cpu_snapshot(worker_pids, database)

    with app.app_context():
        rows = db.session.scalars(select(Generation).where(Generation.id.in_(finished))).all()
        overhead, pickup, in_job, provider = [], [], [], []
        accept, dispatch, job_start = [], [], []
        for row in rows:
            job = queue.fetch_job(row.id)
            accept.append(_ms(row.created_at, job.enqueued_at))
            dispatch.append(_ms(job.enqueued_at, job.started_at))
            job_start.append(_ms(job.started_at, row.started_at))
            total = (row.completed_at - row.created_at).total_seconds() * 1000
            overhead.append(total - row.provider_ms)
            pickup.append((row.started_at - row.created_at).total_seconds() * 1000)
            in_job.append(
                (row.completed_at - row.started_at).total_seconds() * 1000 - row.provider_ms
            )
            provider.append(row.provider_ms)
        # What a generation no longer spends: its thumbnail, made by the first request for it.
        thumbnail = []
        client = app.test_client()
        for row in rows:
            started = time.perf_counter()
            response = client.get(f"/i/{row.output_image_id}/thumb.webp")
            thumbnail.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"thumbnail of {row.id}: {response.status_code}")

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"command: {command}")
    print(
        f"{len(rows)} generations, {args.workers} worker processes, closed loop of "
        f"{args.workers} in flight, local provider at 0 ms delay, PostgreSQL + Redis"
    )
    print(f"{'ms':<40}{'p50':>8}{'p99':>8}{'mean':>8}")
    for label, values in (
        ("overhead (completed-created-provider)", overhead),
        ("  pickup (started-created)", pickup),
        ("    accept (created-enqueued)", accept),
        ("    RQ dispatch + fork (enqueued-job)", dispatch),
        ("    job start (job-started)", job_start),
        ("  in-job (completed-started-provider)", in_job),
        ("provider (painting the picture)", provider),
        ("first thumbnail request, made then", thumbnail),
    ):
        print(
            f"{label:<40}{percentile(values, 50):8.1f}{percentile(values, 99):8.1f}"
            f"{statistics.fmean(values):8.1f}"
        )
    print(f"throughput: {len(rows) / wall:.2f} generations/s ({wall:.1f} s wall, warm-up excluded)")
    used = {part: cpu_after[part] - cpu_before[part] for part in cpu_after}
    print(
        "CPU per generation: "
        + ", ".join(f"{part} {seconds * 1000 / len(rows):.1f} ms" for part, seconds in used.items())
        + f"; {sum(used.values()) / wall:.2f} of {os.cpu_count()} CPUs busy with these"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
