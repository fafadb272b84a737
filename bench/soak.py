"""Soak: mixed traffic against the production shape while a chaos loop breaks things.

Runs on loopback only, everything private and thrown away afterwards: a PostgreSQL cluster and a
redis-server of its own (the shared servers are never touched), `gunicorn -c gunicorn.conf.py`
with 2 web workers and 2 `flask --app wsgi worker` processes. Load threads send a mix of UI pages,
API reads, generations (paced below what the workers finish), live HITs and MISSes (new prompts
paced the same way), uploads and image fetches. Once each, at 1/4, 1/2 and 3/4 of the run, the chaos
loop SIGKILLs an RQ worker (and starts a new one), restarts Redis, restarts PostgreSQL.

Then it waits for every accepted generation to end and reports: requests, error rate by status,
p50/p99 per route, generations accepted vs finished, the ledger check, RSS of each process at
start and end.

  python bench/soak.py --minutes 30          # the issue's run
  python bench/soak.py --minutes 3           # a quick proof that the machinery works

Not run in CI. Needs root only to start PostgreSQL as the `postgres` OS user (initdb refuses
root); see tests/faults/conftest.py, whose private servers it reuses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.conftest import PrivateCluster, PrivateRedis, free_port, wait_for_port  # noqa: E402

USERS = 4
CREDITS_EACH = 100_000


class Stack:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg_root = Path(tempfile.mkdtemp(prefix="pictor-soak-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.pg_root, "postgres", "postgres")
        self.pg = PrivateCluster(self.pg_root)
        self.redis = PrivateRedis()
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "FLASK_"))},
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis.url,
            "STORAGE_DIR": str(work / "storage"),
            "PICTOR_INSTANCE_DIR": str(work / "instance"),
            "SECRET_KEY": "soak-secret-key",
            "IMAGE_PROVIDER": "local",
            "LOCAL_PROVIDER_DELAY_MS": "300",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "8",
            "PORT": str(self.port),
            "PYTHONPATH": str(ROOT),
            "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
            "SWEEP_INTERVAL_SECONDS": "10",
            "WORKER_LOST_AFTER_SECONDS": "15",
            # Four keys carry the whole load: per-key limits (tested in tests/api) would answer
            # most of it with 429 and the soak would measure the limiter.
            "RATELIMIT_DEFAULT": "1000000/hour",
            "RATELIMIT_GENERATIONS": "1000000/hour",
        }
        (work / "metrics").mkdir()
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("ab")
        return subprocess.Popen(  # noqa: S603
            list(args), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        self.pg.init()
        self.pg.start()
        self.redis.start()
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run(
            [*flask, "db", "upgrade"],
            cwd=ROOT,
            env=self.env,
            check=True,  # noqa: S603
            capture_output=True,
            timeout=120,
        )
        self.web = self._spawn("web", sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py")
        wait_for_port(self.port, up=True, timeout=60)
        for _ in range(2):
            self.start_worker()

    def start_worker(self) -> None:
        name = f"worker-{len(self.workers)}"
        self.workers.append(
            self._spawn(name, sys.executable, "-m", "flask", "--app", "wsgi", "worker")
        )

    def processes(self) -> dict[str, int]:
        found = {"web-master": self.web.pid}
        for index, pid in enumerate(_children(self.web.pid)):
            found[f"web-{index}"] = pid
        for index, worker in enumerate(self.workers):
            if worker.poll() is None:
                found[f"rq-{index}"] = worker.pid
        return found

    def stop(self) -> None:
        for process in [*self.workers, self.web]:
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, self.web]:
            if process:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    for pid in [*_children(process.pid), process.pid]:
                        _kill(pid)
                    process.wait(timeout=10)
        self.redis.stop()
        self.pg.stop()
        shutil.rmtree(self.pg_root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def seed(stack: Stack) -> list[str]:
    """Users with plenty of credits and one API key each; returns the keys."""
    script = (
        "import json\n"
        "from app import create_app\n"
        "from app.services import accounts, api_keys, credits, projects\n"
        "app = create_app()\n"
        "keys = []\n"
        "with app.app_context():\n"
        f"    for i in range({USERS}):\n"
        "        user = accounts.create_user(f'soak{i}@example.com', 'soak-password-123')\n"
        "        project = projects.list_projects(user)[0]\n"
        f"        credits.add(user.id, {CREDITS_EACH}, 'grant', note='soak')\n"
        "        keys.append(api_keys.create_key(user, project, 'soak').plaintext)\n"
        "print(json.dumps(keys))\n"
    )
    return run_in_app(stack, script, timeout=120)


def run_in_app(stack: Stack, script: str, *, stdin: object = None, timeout: float) -> Any:
    """Run a Python script against the stack's app; its last printed line is JSON, returned."""
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=stack.env,
        input=json.dumps(stdin).encode(),
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


class Load:
    def __init__(
        self,
        base: str,
        keys: list[str],
        generations_per_second: float,
        live_misses_per_second: float,
    ) -> None:
        self.base = base
        self.keys = keys
        # Generations are paced below what 2 workers finish, as a real user base's arrival rate
        # would be: a generator that outruns the workers only measures the backlog it builds.
        self.generation_interval = 1 / generations_per_second
        self.next_generation = time.monotonic()
        # Live: most requests repeat a prompt already drawn (HIT); a new prompt (MISS, which
        # queues a generation) is paced like the API's generations.
        self.live_interval = 1 / live_misses_per_second
        self.next_live_miss = time.monotonic()
        self.live_prompts: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.accepted: list[str] = []
        self.owners: dict[str, str] = {}
        self.images: list[str] = []
        self.stop = threading.Event()

    def call(
        self,
        route: str,
        method: str,
        path: str,
        key: str | None = None,
        body: dict | None = None,
        upload: bytes | None = None,
    ) -> tuple[int, dict | None]:
        headers = {"X-API-Key": key} if key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if upload is not None:
            boundary = f"soak{random.getrandbits(64):x}"
            data = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="soak.png"\r\nContent-Type: image/png\r\n\r\n'
                ).encode()
                + upload
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,  # noqa: S310
            headers=headers,
        )
        started = time.monotonic()
        payload = None
        try:
            with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310  # nosec B310
                status = response.status
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError:
            status, raw = 0, b""  # connection refused/reset: counted as status 0
        elapsed = (time.monotonic() - started) * 1000
        if raw[:1] == b"{":
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
        with self.lock:
            self.latencies[route].append(elapsed)
            self.statuses[(route, status)] += 1
        return status, payload

    def _generation_due(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if now < self.next_generation:
                return False
            self.next_generation = max(self.next_generation + self.generation_interval, now - 1)
            return True

    def _live_request(self, rng: random.Random, key: str) -> None:
        with self.lock:
            now = time.monotonic()
            miss = now >= self.next_live_miss or not self.live_prompts
            if miss:
                self.next_live_miss = max(self.next_live_miss + self.live_interval, now - 1)
                choice = (key, f"live soak {rng.random():.6f}")
            else:
                choice = rng.choice(self.live_prompts)
        key, prompt = choice
        query = urllib.parse.urlencode({"prompt": prompt, "aspectRatio": "1:1"})
        status, _ = self.call(
            "GET /api/v1/live (MISS)" if miss else "GET /api/v1/live (HIT)",
            "GET",
            f"/api/v1/live?{query}",
            key,
        )
        if miss and status == 200:
            with self.lock:
                self.live_prompts.append(choice)

    def run(self, seed_value: int) -> None:
        rng = random.Random(seed_value)
        while not self.stop.is_set():
            key = rng.choice(self.keys)
            roll = rng.random()
            if roll < 0.25 and self._generation_due():
                status, payload = self.call(
                    "POST /api/v1/generations",
                    "POST",
                    "/api/v1/generations",
                    key,
                    {"prompt": f"soak {rng.random():.6f}", "aspectRatio": "1:1"},
                )
                if status == 202 and payload:
                    with self.lock:
                        self.accepted.append(payload["data"]["id"])
                        self.owners[payload["data"]["id"]] = key
            elif roll < 0.45 and self.accepted:
                with self.lock:
                    generation_id = rng.choice(self.accepted)
                status, payload = self.call(
                    "GET /api/v1/generations/<id>",
                    "GET",
                    f"/api/v1/generations/{generation_id}",
                    self.owners[generation_id],
                )
            elif roll < 0.6:
                status, payload = self.call(
                    "GET /api/v1/generations", "GET", "/api/v1/generations?limit=20", key
                )
                for item in (payload or {}).get("data", []) if status == 200 else []:
                    image = item.get("outputImage")
                    if image:
                        with self.lock:
                            self.images.append(image["url"].split("://", 1)[-1].split("/", 1)[1])
            elif roll < 0.75 and self.images:
                with self.lock:
                    path = "/" + rng.choice(self.images[-200:])
                self.call("GET /i/<id>", "GET", path)
            elif roll < 0.8:
                self.call("GET /login (page)", "GET", "/login")
            elif roll < 0.87:
                self._live_request(rng, key)
            elif roll < 0.9:
                self.call(
                    "POST /api/v1/images/upload",
                    "POST",
                    "/api/v1/images/upload",
                    key,
                    upload=_small_png(rng),
                )
            elif roll < 0.95:
                self.call("GET /api/v1/project", "GET", "/api/v1/project", key)
            else:
                self.call("GET /health", "GET", "/health")
            time.sleep(rng.uniform(0.01, 0.05))


def _small_png(rng: random.Random) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    colour = tuple(rng.randrange(256) for _ in range(3))
    Image.new("RGB", (rng.randrange(32, 256), rng.randrange(32, 256)), colour).save(buffer, "PNG")
    return buffer.getvalue()


def supervise(stack: Stack, stop: threading.Event, events: list[str]) -> None:
    """Restart RQ workers that exit, as systemd's Restart=always does in docs/deploy.md."""
    started = time.monotonic()
    while not stop.wait(2):
        for worker in list(stack.workers):
            if worker.poll() is not None and not getattr(worker, "replaced", False):
                worker.replaced = True  # type: ignore[attr-defined]
                stack.start_worker()
                events.append(
                    f"{time.monotonic() - started:6.0f}s  supervisor: rq worker pid {worker.pid} "
                    f"exited ({worker.returncode}), started a new one"
                )


def chaos(stack: Stack, seconds: float, stop: threading.Event, events: list[str]) -> None:
    started = time.monotonic()

    def at(fraction: float) -> bool:
        remaining = started + seconds * fraction - time.monotonic()
        return not stop.wait(max(remaining, 0))

    if at(0.25):
        victim = stack.workers[0]
        for pid in [*_children(victim.pid), victim.pid]:
            _kill(pid)
        victim.wait(timeout=10)
        events.append(
            f"{time.monotonic() - started:6.0f}s  SIGKILL rq worker pid {victim.pid} + work-horse"
        )
    if at(0.5):
        stack.redis.stop()
        time.sleep(2)
        stack.redis.start()
        events.append(
            f"{time.monotonic() - started:6.0f}s  Redis stopped 2 s and restarted "
            "(no persistence: queued jobs lost)"
        )
    if at(0.75):
        stack.pg.restart()
        events.append(f"{time.monotonic() - started:6.0f}s  PostgreSQL restarted (fast)")


def final_state(stack: Stack, accepted: list[str], wait_seconds: float) -> dict:
    script = (
        "import json, sys, time\n"
        "from sqlalchemy import select, func\n"
        "from app import create_app\n"
        "from app.extensions import db\n"
        "from app.models import Generation\n"
        "from app import doctor\n"
        "ids = json.load(sys.stdin)\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    deadline = time.monotonic() + {wait_seconds}\n"
        "    while True:\n"
        "        rows = dict(db.session.execute(select(Generation.id, Generation.status)"
        ".where(Generation.id.in_(ids))).all()) if ids else {}\n"
        "        db.session.commit()\n"
        "        open_ = [i for i, s in rows.items() if s not in ('success', 'failed')]\n"
        "        live = db.session.scalar(select(func.count()).where("
        "Generation.status.in_(('pending', 'processing'))))\n"
        "        db.session.commit()\n"
        "        if (not open_ and not live) or time.monotonic() > deadline: break\n"
        "        time.sleep(2)\n"
        "    codes = dict(db.session.execute(select(Generation.error_code, func.count())"
        ".where(Generation.id.in_(ids)).group_by(Generation.error_code)).all()) if ids else {}\n"
        "    every = dict(db.session.execute(select(Generation.status, func.count())"
        ".group_by(Generation.status)).all())\n"
        "    bad, examples = doctor.inconsistent_ledgers()\n"
        "    print(json.dumps({'statuses': dict(__import__('collections').Counter(rows.values())),"
        " 'found': len(rows), 'error_codes': {str(k): v for k, v in codes.items()},"
        " 'all_statuses': every, 'ledger_inconsistent_users': bad}))\n"
    )
    return run_in_app(stack, script, stdin=accepted, timeout=wait_seconds + 120)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=8, help="load generator threads")
    parser.add_argument(
        "--generations-per-second",
        type=float,
        default=1.5,
        help="pace of API generations (2 workers at a 300 ms provider delay finish ~4/s)",
    )
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument(
        "--live-misses-per-second",
        type=float,
        default=0.3,
        help="pace of live requests with a new prompt (each queues a generation)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=600.0,
        help="how long to wait for accepted generations to end",
    )
    args = parser.parse_args()
    seconds = args.minutes * 60

    work = Path(tempfile.mkdtemp(prefix="pictor-soak-"))
    stack = Stack(work)
    try:
        stack.start()
        keys = seed(stack)
        load = Load(
            f"http://127.0.0.1:{stack.port}",
            keys,
            args.generations_per_second,
            args.live_misses_per_second,
        )
        events: list[str] = []
        supervising = threading.Event()
        threads = [
            threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(args.threads)
        ]
        chaos_thread = threading.Thread(
            target=chaos, args=(stack, seconds, load.stop, events), daemon=True
        )
        supervisor = threading.Thread(
            target=supervise, args=(stack, supervising, events), daemon=True
        )
        supervisor.start()
        for thread in threads:
            thread.start()
        # Warm-up: every process imports, compiles and caches what it lazily needs; RSS and
        # the figures are taken from here (growth after warm-up is what a leak looks like).
        time.sleep(args.warmup_seconds)
        rss_start = {name: rss_mb(pid) for name, pid in stack.processes().items()}
        with load.lock:
            load.latencies.clear()
            load.statuses.clear()
        began = time.monotonic()
        chaos_thread.start()
        load.stop.wait(seconds)
        load.stop.set()
        for thread in [*threads, chaos_thread]:
            thread.join(timeout=120)
        wall = time.monotonic() - began
        state = final_state(stack, load.accepted, args.drain_seconds)
        rss_end = {name: rss_mb(pid) for name, pid in stack.processes().items()}
        supervising.set()
        report(args, wall, load, events, state, rss_start, rss_end)
    finally:
        stack.stop()
        print(f"logs: {work}", file=sys.stderr)


def report(args, wall, load: Load, events, state, rss_start, rss_end) -> None:  # noqa: ANN001
    total = sum(load.statuses.values())
    by_status: Counter[int] = Counter()
    for (_route, status), count in load.statuses.items():
        by_status[status] += count
    errors = sum(c for s, c in by_status.items() if s == 0 or s >= 500)
    print(
        f"## Soak: {args.minutes:g} min, {args.threads} load threads, 2 gunicorn + 2 RQ workers, "
        f"generations paced at {args.generations_per_second:g}/s, "
        f"new live prompts at {args.live_misses_per_second:g}/s"
    )
    print(
        f"\nwall {wall:.0f} s, {total} requests ({total / wall:.1f}/s), "
        f"5xx+connection errors {errors} ({100 * errors / max(total, 1):.2f}%)"
    )
    print("\nstatus counts: " + ", ".join(f"{s}: {c}" for s, c in sorted(by_status.items())))
    print("\n```\nroute                              count    p50 ms    p99 ms  statuses")
    for route, values in sorted(load.latencies.items()):
        statuses = {s: c for (r, s), c in load.statuses.items() if r == route}
        print(
            f"{route:33} {len(values):6} {statistics.median(values):9.1f} "
            f"{percentile(values, 0.99):9.1f}  {statuses}"
        )
    print("```")
    print("\nchaos:\n" + "\n".join(f"- {e}" for e in events))
    finished = sum(v for k, v in state["statuses"].items() if k in ("success", "failed"))
    print(
        f"\ngenerations accepted {len(load.accepted)}, found {state['found']}, "
        f"finished {finished} ({state['statuses']}); error codes {state['error_codes']}"
    )
    print(f"every generation in the database (API, live, uploads' flows): {state['all_statuses']}")
    print(
        f"ledger: {state['ledger_inconsistent_users']} user(s) whose balance differs "
        "from their ledger"
    )
    print("\n```\nprocess        RSS start MB   RSS end MB   growth")
    for name, start in rss_start.items():
        end = rss_end.get(name)
        growth = f"{100 * (end - start) / start:+.0f}%" if start and end else "(gone)"
        print(f"{name:14} {start or 0:12.0f} {end or 0:12.0f}   {growth}")
    for name in rss_end.keys() - rss_start.keys():
        print(f"{name:14} {'(new)':>12} {rss_end[name] or 0:12.0f}")
    print("```")


if __name__ == "__main__":
    main()
