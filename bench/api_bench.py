"""API benchmarks of issue 4, with gunicorn (2 workers) on PostgreSQL and wrk on loopback.

(a) live HIT requests/s vs the same bytes from a bare static route (target ≥ 0.8×)
(b) GET /api/v1/generations/{id} requests/s vs a bare JSON route in the same app (target ≥ 0.5×)
(c) GET /api/v1/images?limit=20 p50 latency with 1k vs 1M images in the project (target ≤ 1.5×)

Usage:  python bench/api_bench.py [--duration 10] [--runs 2] [--skip-listing] [--write]
Needs PostgreSQL (BENCH_PG, an admin URL), Redis (BENCH_REDIS) and `wrk` (Debian package).
A fresh database is created and dropped; --write appends the results to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `app`, also when another one is installed
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/4")
PROMPT = "a red fox in the snow"


# --- the app gunicorn serves: Pictor plus two bare routes to compare against -----------------


def make_app():  # noqa: ANN201  (gunicorn factory: 'bench.api_bench:make_app()')
    from flask import Response, send_from_directory

    from app import create_app

    app = create_app()
    bare_dir = os.environ["BENCH_BARE_DIR"]
    bare_json = (Path(bare_dir) / "generation.json").read_bytes()

    @app.get("/bench/static/<path:name>")
    def bench_static(name: str):
        return send_from_directory(bare_dir, name, max_age=31536000)

    @app.get("/bench/bare.json")
    def bench_json():
        return Response(bare_json, mimetype="application/json")

    return app


# --- setup ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(database_url: str, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS,
        "SECRET_KEY": "bench-secret",
        "PICTOR_INSTANCE_DIR": str(work / "instance"),
        "STORAGE_DIR": str(work / "storage"),
        "BENCH_BARE_DIR": str(work / "bare"),
        "RATELIMIT_DEFAULT": "100000000/hour",
        "RATELIMIT_GENERATIONS": "100000000/hour",
        "PYTHONPATH": str(ROOT),
    }


def _bulk_images(project_id: str, count: int, start_index: int) -> None:
    """Insert image rows straight into PostgreSQL (the listing reads rows, not files)."""
    from sqlalchemy import text

    from app.extensions import db

    db.session.execute(
        text(
            """
            INSERT INTO images (id, project_id, source, storage_key, thumbnail_key, mime_type,
                width, height, file_size, sha256, focal_x, focal_y, meta, created_at)
            SELECT gen_random_uuid()::text, CAST(:project AS text), 'generated',
                CAST(:project AS text) || '/bulk/' || n || '.png', 'thumb-' || n || '.webp',
                'image/png', 1024, 1024, 48213, md5(n::text) || md5(n::text), 0.5, 0.5, '{}',
                (now() AT TIME ZONE 'UTC') - make_interval(secs => n)
            FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
            """
        ),
        {"project": project_id, "first": start_index, "last": start_index + count - 1},
    )
    db.session.commit()


def _picture() -> bytes:
    """What the local model draws for the prompt: a typical generated PNG."""
    from app.providers.local import LocalProvider

    return (
        LocalProvider()
        .generate(
            prompt=PROMPT,
            negative_prompt=None,
            aspect_ratio="1:1",
            references=[],
            seed=1,
            model=None,
        )
        .data
    )


def seed(env: dict[str, str], work: Path) -> dict[str, str]:
    """A user, a key, one cached live image, one generation, 1,000 images. Returns handles."""
    os.environ.update(env)
    from app import create_app
    from app.api import serializers
    from app.extensions import db
    from app.models import Generation, LiveCacheEntry
    from app.services import accounts, api_keys, imaging, live, projects
    from app.storage import get_storage

    app = create_app()
    with app.app_context(), app.test_request_context(base_url="http://127.0.0.1"):
        db.create_all()
        user = accounts.create_user("bench@example.com", "bench password 123")
        project = projects.list_projects(user)[0]
        key = api_keys.create_key(user, project, "bench").plaintext
        image = imaging.store(project.id, imaging.judge_output(_picture()), source="generated")
        db.session.add(
            LiveCacheEntry(
                project_id=project.id,
                cache_key=live.cache_key(PROMPT, "1:1"),
                prompt=PROMPT,
                aspect_ratio="1:1",
                image_id=image.id,
                generation_id=None,
                hit_count=0,
            )
        )
        gen = Generation(
            project_id=project.id,
            user_id=user.id,
            prompt=PROMPT,
            aspect_ratio="1:1",
            model="local",
            status="success",
            stage="done",
            output_image_id=image.id,
            credits_charged=1,
        )
        db.session.add(gen)
        db.session.commit()
        bare = work / "bare"
        bare.mkdir(parents=True, exist_ok=True)
        (bare / "fox.png").write_bytes(get_storage().get(image.storage_key))
        (bare / "generation.json").write_text(
            json.dumps({"data": serializers.generation(gen, image)})
        )
        _bulk_images(project.id, 999, 1)
        sig = live.sign(project, PROMPT, "1:1")
        live_path = (
            f"/live/{project.id}?prompt={PROMPT.replace(' ', '%20')}&aspectRatio=1:1&sig={sig}"
        )
        handles = {
            "key": key,
            "project": project.id,
            "generation": gen.id,
            "live_path": live_path,
            "image_bytes": str(image.file_size),
        }
        db.session.remove()
        db.engine.dispose()
    return handles


def top_up_to_a_million(env: dict[str, str], project_id: str) -> None:
    os.environ.update(env)
    from sqlalchemy import create_engine, text

    from app import create_app

    app = create_app()
    with app.app_context():
        _bulk_images(project_id, 999_000, 1000)
    engine = create_engine(env["DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE images"))
    engine.dispose()


# --- measuring ----------------------------------------------------------------------------------


class Servers:
    """The processes that serve the benchmark: gunicorn (master and workers), the PostgreSQL
    backends of the bench database and redis-server. Their CPU time per request is what a
    machine of its own would spend, whatever else runs on this shared one."""

    def __init__(self, gunicorn_pid: int, admin, database: str, redis_pid: int) -> None:  # noqa: ANN001
        self.gunicorn_pid, self.admin, self.database = gunicorn_pid, admin, database
        self.redis_pid = redis_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None

    def pids(self) -> set[int]:
        from sqlalchemy import text

        found = {self.gunicorn_pid, self.redis_pid}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = self._stat(int(entry.name))
                if fields and fields[1] == str(self.gunicorn_pid):
                    found.add(int(entry.name))
        with self.admin.connect() as conn:
            backends = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": self.database}
            )
            found.update(backends.scalars())
        return found

    def cpu(self, pids: set[int]) -> dict[int, float]:
        """Seconds of CPU (user + system) each process has used so far."""
        used = {}
        for pid in pids:
            fields = self._stat(pid)
            if fields:
                used[pid] = (int(fields[11]) + int(fields[12])) / self.tick
        return used


def wrk(
    url: str,
    *,
    duration: int,
    connections: int,
    headers: dict[str, str] | None = None,
    servers: Servers | None = None,
):
    """Requests/s, p50 latency (ms) and server CPU ms per request; every answer must be 2xx."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    before_pids = servers.pids() if servers else set()
    before = servers.cpu(before_pids) if servers else {}
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    cpu_ms = None
    if servers:
        after = servers.cpu(before_pids | servers.pids())
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        used = sum(after[pid] - before.get(pid, 0.0) for pid in after)
        cpu_ms = 1000 * used / max(requests, 1)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return rps, float(p50.group(1)) * scale, cpu_ms


def _cpu(measured: tuple, baseline: tuple) -> str:
    return f"{measured[2]:.2f}, {baseline[2]:.2f} ({baseline[2] / measured[2]:.2f}×)"


def _best(results: list):  # noqa: ANN202
    """The best run's req/s and p50, and the lowest CPU per request of all runs."""
    best = max(results, key=lambda r: r[0])
    return best[0], best[1], min(r[2] for r in results)


def best_of(runs: int, measure):  # noqa: ANN001, ANN201
    """The best of a few runs: the machine is shared, the best run is the least disturbed."""
    return _best([measure() for _ in range(runs)])


def best_pair(runs: int, baseline, measured):  # noqa: ANN001, ANN201
    """Runs of the baseline and the measured route taken in turns (so a change in the machine's
    load falls on both), the best of each."""
    pairs = [(baseline(), measured()) for _ in range(runs)]
    return _best([p[0] for p in pairs]), _best([p[1] for p in pairs])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=2, help="runs per measurement (best kept)")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--skip-listing", action="store_true", help="measure (a) and (b) only (no 1M-row insert)"
    )
    parser.add_argument(
        "--only-live", action="store_true", help="measure (a) only (live HIT vs static route)"
    )
    options = parser.parse_args()
    options.skip_listing = options.skip_listing or options.only_live
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    from sqlalchemy import create_engine, text

    load_before = os.getloadavg()
    name = f"pictor_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN)
    work = Path(tempfile.mkdtemp(prefix="pictor-bench-"))
    env = _env(database_url, work)
    server = None
    try:
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        handles = seed(env, work)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config=gunicorn.conf.py",  # the production shape: gthread workers
                "--workers=2",
                f"--bind=127.0.0.1:{port}",
                "bench.api_bench:make_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        key = {"X-API-Key": handles["key"]}
        d, runs = options.duration, options.runs
        redis_pid = int(redis.Redis.from_url(REDIS).info("server")["process_id"])
        servers = Servers(server.pid, admin, name, redis_pid)
        for url in (f"{base}/bench/static/fox.png", base + handles["live_path"]):
            wrk(url, duration=2, connections=8)  # warm up both workers
        static, hit = best_pair(
            runs,
            lambda: wrk(f"{base}/bench/static/fox.png", duration=d, connections=8, servers=servers),
            lambda: wrk(base + handles["live_path"], duration=d, connections=8, servers=servers),
        )

        gen_url = f"{base}/api/v1/generations/{handles['generation']}"
        probe = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                f"X-API-Key: {handles['key']}",
                gen_url,
            ],
            capture_output=True,
            text=True,
        ).stdout
        if probe == "200" and not options.only_live:
            wrk(gen_url, duration=2, connections=8, headers=key)  # warm up
            bare, gen = best_pair(
                runs,
                lambda: wrk(f"{base}/bench/bare.json", duration=d, connections=8, servers=servers),
                lambda: wrk(gen_url, duration=d, connections=8, headers=key, servers=servers),
            )
        else:
            bare = gen = None

        small = large = None
        if not options.skip_listing:
            list_url = f"{base}/api/v1/images?limit=20"
            wrk(list_url, duration=2, connections=2, headers=key)
            listing = {"duration": d, "connections": 2, "headers": key, "servers": servers}
            small = best_of(runs, lambda: wrk(list_url, **listing))
            top_up_to_a_million(env, handles["project"])
            wrk(list_url, duration=2, connections=2, headers=key)
            large = best_of(runs, lambda: wrk(list_url, **listing))
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()
    threads = os.environ.get("GUNICORN_THREADS", "8")
    lines = [
        f"## API (issue 4) — {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"gunicorn 2 gthread workers × {threads} threads (gunicorn.conf.py), PostgreSQL, Redis "
        f"rate limits, wrk on loopback ({os.cpu_count()} CPUs shared with the load generator), "
        f"{d} s per run, best of {runs}. Load average before: "
        f"{' '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        "| benchmark | Pictor | baseline | ratio | target | server CPU ms/request: Pictor, "
        "baseline (ratio) |",
        "|---|---|---|---|---|---|",
        f"| (a) live HIT ({handles['image_bytes']} B PNG), req/s | {hit[0]:.0f} | "
        f"{static[0]:.0f} (bare static route) | {hit[0] / static[0]:.2f}× | ≥ 0.8× | "
        f"{_cpu(hit, static)} |",
    ]
    if gen is not None:
        lines.append(
            f"| (b) GET /api/v1/generations/{{id}}, req/s | {gen[0]:.0f} | {bare[0]:.0f} "
            f"(bare JSON route) | {gen[0] / bare[0]:.2f}× | ≥ 0.5× | {_cpu(gen, bare)} |"
        )
    else:
        lines.append("| (b) GET /api/v1/generations/{id} | not measured | | | | |")
    if large is not None:
        lines.append(
            f"| (c) GET /api/v1/images?limit=20, p50 ms | {large[1]:.2f} (1M images) | "
            f"{small[1]:.2f} (1k images) | {large[1] / small[1]:.2f}× | ≤ 1.5× | "
            f"{large[2]:.2f}, {small[2]:.2f} ({large[2] / small[2]:.2f}×) |"
        )
    lines += [
        "",
        "Server CPU is the CPU time of gunicorn, the database's backends and redis-server per "
        "request (lowest of the runs); baseline ÷ Pictor is the req/s ratio a machine of their "
        "own would give, whatever else runs on this one.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if options.write:
        results = ROOT / "bench" / "RESULTS.md"
        existing = results.read_text() if results.exists() else "# Benchmark results\n"
        results.write_text(existing.rstrip("\n") + "\n\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
