"""Real servers for tests that cross processes: free ports, plain HTTP calls, gunicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_status(url: str, key: str) -> int:
    """GET with an API key on a connection of its own: the status code."""
    request = urllib.request.Request(url, headers={"X-API-Key": key, "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


@dataclass
class Gunicorn:
    port: int
    access_log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> set[str]:
        """The pids of the workers that have answered a request so far."""
        lines = self.access_log.read_text().splitlines()
        return {line.split()[0] for line in lines if line.strip()}

    @contextmanager
    def hold_one_worker(self, path: str) -> Iterator[HeldRequest]:
        """Keep one worker busy on a half-sent GET, so that the other serves the next requests."""
        held = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            held.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            time.sleep(0.5)
            yield HeldRequest(held)
        finally:
            held.close()


@dataclass
class HeldRequest:
    sock: socket.socket

    def finish(self, key: str) -> bytes:
        """Send the rest of the request (with the API key): the whole raw reply."""
        self.sock.sendall(f"X-API-Key: {key}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := self.sock.recv(65536):
            reply += chunk
        return reply


@contextmanager
def two_gunicorn_workers(
    database_url: str, redis_url: str, tmp_path: Path, **settings: str
) -> Iterator[Gunicorn]:
    """The app served by two gunicorn workers sharing `redis_url`. Plain sync workers and a
    text access log of worker pids, not the project's gunicorn.conf.py: a test can hold one
    worker on a half-sent request and tell from the log which workers answered."""
    port = free_port()
    log = tmp_path / "access.log"
    errors = tmp_path / "error.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key",
        "PICTOR_INSTANCE_DIR": str(tmp_path / "instance"),
        "STORAGE_DIR": str(tmp_path / "storage"),
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    bare_config = tmp_path / "gunicorn.conf.py"
    bare_config.write_text("")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            f"--config={bare_config}",
            "--workers=2",
            "--preload",
            f"--bind=127.0.0.1:{port}",
            f"--error-logfile={errors}",
            f"--access-logfile={log}",
            "--access-logformat=%(p)s %(s)s",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (errors.exists() and errors.read_text().count("Booting worker") == 2):
            assert time.monotonic() < deadline, "gunicorn did not start two workers"
            assert server.poll() is None, errors.read_text()[-2000:] if errors.exists() else ""
            time.sleep(0.2)
        yield Gunicorn(port, log)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
