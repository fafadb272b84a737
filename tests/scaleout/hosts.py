"""Hosts on one machine: network namespaces joined by a bridge, for scale-out tests and benches.

`Cluster` builds web hosts (`gunicorn -c gunicorn.conf.py wsgi:app`) and worker hosts
(`flask --app wsgi worker`), each in its own network namespace with one veth link to a bridge
in the root namespace. The shared services sit on the bridge's address, private to the run:
a `redis-server`, a TCP forwarder to the machine's PostgreSQL (a fresh database, dropped at the
end) and a moto S3 server. The hosts reach nothing else; the test process talks to them over
the bridge like a load balancer would.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for `ip netns`; `netns_unavailable()` says why
not. `python -m tests.scaleout.hosts forward LISTEN_HOST:PORT TARGET_HOST:PORT` is the forwarder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "PICTOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SECRET_KEY = "scaleout-shared-secret-key-for-every-web-host"
BUCKET = "pictor-scaleout"
EMAIL = "scaleout@example.com"
WEB_PORT = 8000


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)  # noqa: S603


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    probe = f"pictor-probe-{os.getpid()}"
    added = run("ip", "netns", "add", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    if not _reachable("127.0.0.1", 5432):
        return "PostgreSQL is not running on 127.0.0.1:5432"
    return None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_subnet() -> int:
    used = run("ip", "-4", "addr").stdout
    for third in [*range(os.getpid() % 200 + 20, 250), *range(20, 250)]:
        if f"10.203.{third}." not in used:
            return third
    raise RuntimeError("no free 10.203.x.0/24 subnet")


@dataclass
class Host:
    name: str  # "a", "b", "w"
    role: str  # "web" | "worker"
    netns: str
    address: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{WEB_PORT}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the host (gunicorn master and workers, or worker)."""
        for pid in _netns_pids(self.netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


def _netns_pids(netns: str) -> list[int]:
    listed = run("ip", "netns", "pids", netns, check=False).stdout.split()
    return [int(pid) for pid in listed if pid.isdigit()]


@dataclass
class Cluster:
    workdir: Path
    web_hosts: int = 2
    worker_hosts: int = 1
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every host
    worker_env: dict[str, str] = field(default_factory=dict)
    hosts: list[Host] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)
    database: str = ""
    database_url: str = ""
    _tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _bridge: str = ""
    _gateway: str = ""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, keys: int = 1) -> Cluster:
        try:
            self._network()
            self._start_services()
            self._run_on(self.hosts[-1], "db", "upgrade")
            self._run_on(
                self.hosts[-1],
                "user",
                "create",
                EMAIL,
                "--password",
                "scaleout-pw",
                "--tier",
                "pro",
            )
            for index in range(keys):
                out = self._run_on(self.hosts[-1], "apikey", "create", EMAIL, "--name", f"k{index}")
                self.api_keys.append(out.strip().splitlines()[-1].strip())
            for host in self.hosts:
                self._start_host(host)
            for host in self.web:
                self.wait_healthy(host)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for host in self.hosts:
            host.kill()
            run("ip", "netns", "del", host.netns, check=False)
        for process in self._services:
            process.kill()
            process.wait(timeout=10)
        if self._bridge:
            run("ip", "link", "del", self._bridge, check=False)
        if self.database:
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            admin.dispose()
            self.database = ""

    # --- what tests use ---------------------------------------------------------------------

    @property
    def web(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "web"]

    @property
    def workers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "worker"]

    def headers(self, key_index: int = 0) -> dict[str, str]:
        return {"X-API-Key": self.api_keys[key_index]}

    def wait_healthy(self, host: Host, timeout: float = 60) -> None:
        def healthy() -> bool:
            assert host.alive(), self.logs(host)
            try:
                return requests.get(f"{host.url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, f"{host.name} to answer /health")

    def logs(self, *hosts: Host) -> str:
        return "\n".join(
            f"--- {h.name} ---\n{h.log.read_text(errors='replace')[-4000:]}"
            for h in hosts or self.hosts
            if h.log.exists()
        )

    def sql(self, statement: str, **params: object) -> list[tuple]:
        """Read the shared database directly (what every host sees)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(re.sub(r"/[^/]*$", f"/{self.database}", PG_ADMIN_URL))
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(statement), params)]
        finally:
            engine.dispose()

    # --- building -------------------------------------------------------------------------

    def _network(self) -> None:
        third = _free_subnet()
        self._gateway = f"10.203.{third}.1"
        self._bridge = f"pbr{self._tag}"
        run("ip", "link", "add", self._bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self._gateway}/24", "dev", self._bridge)
        run("ip", "link", "set", self._bridge, "up")
        names = [chr(ord("a") + i) for i in range(self.web_hosts)]
        roles = [("web", n) for n in names] + [
            ("worker", f"w{i}" if self.worker_hosts > 1 else "w") for i in range(self.worker_hosts)
        ]
        self.workdir.mkdir(parents=True, exist_ok=True)
        for index, (role, name) in enumerate(roles, start=2):
            host = Host(
                name=name,
                role=role,
                netns=f"pictor-{self._tag}-{name}",
                address=f"10.203.{third}.{index}",
                log=self.workdir / f"host-{name}.log",
            )
            self.hosts.append(host)
            veth = f"pv{self._tag}{name}"
            run("ip", "netns", "add", host.netns)
            run(
                "ip",
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            )
            run("ip", "link", "set", veth, "master", self._bridge, "up")
            run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            run("ip", "-n", host.netns, "link", "set", "eth0", "up")
            run("ip", "-n", host.netns, "link", "set", "lo", "up")

    def _service(self, name: str, *args: str) -> None:
        log = (self.workdir / f"service-{name}.log").open("wb")
        self._services.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: S603
        )

    def _start_services(self) -> None:
        from sqlalchemy import create_engine, text

        gw = self._gateway
        self._service(
            "redis",
            "redis-server",
            *("--bind", gw, "--port", "6379", "--save", "", "--appendonly", "no"),
            *("--protected-mode", "no", "--maxmemory-policy", "noeviction"),
        )
        self._service(
            "postgres-forwarder",
            sys.executable,
            *("-m", "tests.scaleout.hosts", "forward", f"{gw}:5432", "127.0.0.1:5432"),
        )
        self._service("s3", sys.executable, "-m", "moto.server", "-H", gw, "-p", "5000")
        self.database = f"pictor_scaleout_{os.getpid()}_{self._tag}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        self.database_url = f"postgresql://postgres@{gw}:5432/{self.database}"
        for port in (6379, 5432, 5000):
            wait_until(lambda p=port: _reachable(gw, p), 30, f"service on {gw}:{port}")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://{gw}:5000",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
        ).create_bucket(Bucket=BUCKET)

    def host_env(self, host: Host) -> dict[str, str]:
        gw = self._gateway
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "PICTOR_ENV": "development",
            "SECRET_KEY": SECRET_KEY,
            "PICTOR_INSTANCE_DIR": str(self.workdir / f"instance-{host.name}"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://{gw}:6379/0",
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": f"http://{gw}:5000",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "IMAGE_PROVIDER": "local",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "PICTOR_LOG_FORMAT": "json",
            "HOST": host.address,
            "PORT": str(WEB_PORT),
        }
        env.update(self.env)
        if host.role == "worker":
            env.update(self.worker_env)
        return env

    def _command(self, host: Host, *args: str) -> list[str]:
        return ["ip", "netns", "exec", host.netns, *args]

    def _run_on(self, host: Host, *cli: str) -> str:
        done = subprocess.run(  # noqa: S603
            self._command(host, str(BIN / "flask"), "--app", "wsgi", *cli),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=self.host_env(host),
            timeout=120,
        )
        assert done.returncode == 0, f"flask {' '.join(cli)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def _start_host(self, host: Host) -> None:
        if host.role == "web":
            args = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
        else:
            args = [str(BIN / "flask"), "--app", "wsgi", "worker"]
        log = host.log.open("ab")
        host.process = subprocess.Popen(  # noqa: S603
            self._command(host, *args),
            cwd=ROOT,
            env=self.host_env(host),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


# --- the PostgreSQL forwarder (a process of its own) -----------------------------------------


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = socket.create_server(listen, reuse_port=False, backlog=256)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__" and sys.argv[1:2] == ["forward"]:
    forward(_address(sys.argv[2]), _address(sys.argv[3]))
