"""PostgreSQL round trips per generation: accepting it, and its job; and, with a simulated
distance to the database, what each costs in time.

Runs the service code in this process (the API's `generations.create`, the worker's
`generations.run`) against a throwaway PostgreSQL database reached through a small TCP relay
that reads the client's side of the wire protocol: every simple Query and every Sync is one
round trip (the client waits for ReadyForQuery before it goes on). With `--rtt-ms`, the relay
holds each of them that long before passing it on, as a database on another host would.

Run from the repository root:

  python bench/db_round_trips.py
  python bench/db_round_trips.py --rtt-ms 0.5

The Redis database given is flushed. Record results in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.queue_overhead import service_environment  # noqa: E402

_NEGOTIATIONS = {80877103, 80877104}  # SSLRequest, GSSENCRequest: untyped, before the startup
_ROUND_TRIP_ENDS = {b"Q", b"S"}  # a simple Query, or the Sync that ends an extended query


class Relay:
    """127.0.0.1:<port> → the database, counting the client's round trips."""

    def __init__(self, upstream: tuple[str, int], rtt_s: float) -> None:
        self.upstream = upstream
        self.rtt_s = rtt_s
        self.round_trips = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._client_side, args=(client, server), daemon=True).start()
            threading.Thread(target=self._copy, args=(server, client), daemon=True).start()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        with source, sink:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:  # the other direction closed both
                return

    @staticmethod
    def _read(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _client_side(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            try:
                while True:  # untyped messages until the StartupMessage
                    (length,) = struct.unpack(">I", self._read(client, 4))
                    body = self._read(client, length - 4)
                    server.sendall(struct.pack(">I", length) + body)
                    if struct.unpack(">I", body[:4])[0] not in _NEGOTIATIONS:
                        break
                while True:
                    head = self._read(client, 5)
                    body = self._read(client, struct.unpack(">I", head[1:])[0] - 4)
                    if head[:1] in _ROUND_TRIP_ENDS:
                        self.round_trips += 1
                        if self.rtt_s:
                            time.sleep(self.rtt_s)
                    server.sendall(head + body)
            except (EOFError, OSError):
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--rtt-ms", type=float, default=0.0)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument(
        "--redis-url", default=os.environ.get("PICTOR_BENCH_REDIS", "redis://127.0.0.1:6379/14")
    )
    args = parser.parse_args()

    import redis
    from sqlalchemy import create_engine, text

    redis.Redis.from_url(args.redis_url).flushdb()
    name = f"pictor_trips_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        f"postgresql+psycopg://postgres@{args.pg_host}:{args.pg_port}/postgres",
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return run(args, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(args: argparse.Namespace, database: str) -> int:
    relay = Relay((args.pg_host, args.pg_port), args.rtt_ms / 1000)
    workdir = Path(tempfile.mkdtemp(prefix="pictor-trips-"))
    # sslmode=disable: the relay reads the protocol, which TLS would hide.
    url = f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/{database}?sslmode=disable"
    env = service_environment(url, args.redis_url, workdir)
    os.environ.clear()
    os.environ.update(env)

    from app import create_app
    from app.extensions import db
    from app.models import Generation, Project, User
    from app.services import accounts, credits, generations, projects

    app = create_app()
    with app.app_context():
        db.create_all()
        user = accounts.create_user("bench@example.com", "bench-password")
        credits.add(user.id, 2 * args.count + 20, "grant", note="benchmark")
        user_id, project_id = user.id, projects.list_projects(user)[0].id
        db.session.remove()

        def accept(index: int) -> str:
            # As a request would: the caller and the project are read, then the generation
            # accepted (the API reads them while it authenticates).
            user = db.session.get(User, user_id)
            project = db.session.get(Project, project_id)
            generation, _ = generations.create(
                project, user, {"prompt": f"benchmark picture {index}", "seed": index}
            )
            generation_id = generation.id
            db.session.remove()
            return generation_id

        def job(generation_id: str) -> None:
            generations.run(generation_id)
            db.session.remove()

        for index in range(5):  # warm-up: connections, compiled statements
            job(accept(index))

        accept_trips, job_trips, job_ms = [], [], []
        for index in range(5, 5 + args.count):
            before = relay.round_trips
            generation_id = accept(index)
            accept_trips.append(relay.round_trips - before)
            before = relay.round_trips
            started = time.perf_counter()
            job(generation_id)
            job_ms.append((time.perf_counter() - started) * 1000)
            job_trips.append(relay.round_trips - before)
        done = db.session.scalars(db.select(Generation).where(Generation.status == "success")).all()
        provider_ms = statistics.median(g.provider_ms for g in done)
        db.session.remove()
        db.engine.dispose()

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"command: {command}")
    print(
        f"{args.count} generations in this process, PostgreSQL through a relay adding "
        f"{args.rtt_ms} ms per round trip, local provider at 0 ms delay"
    )
    print(
        f"round trips per generation: accept {statistics.median(accept_trips):.0f} "
        f"(incl. reading the caller and project: 2), job {statistics.median(job_trips):.0f}"
    )
    print(
        f"job wall time p50 {statistics.median(job_ms):.1f} ms "
        f"(provider p50 {provider_ms:.0f} ms; job minus provider "
        f"{statistics.median(job_ms) - provider_ms:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
