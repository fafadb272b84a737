"""The web process of the production shape: `gunicorn -c gunicorn.conf.py` (docs/deploy.md).

Every value comes from the environment through app.config.server_settings(): HOST/PORT,
WEB_CONCURRENCY processes of GUNICORN_THREADS threads each, and the timeouts. The access log
is one JSON object per line on stdout; gunicorn's own messages follow PICTOR_LOG_FORMAT.
"""

from __future__ import annotations

import json
from pathlib import Path

from gunicorn.glogging import Logger

from app.config import server_settings
from app.observability import formatter_for, timestamp

settings = server_settings()

wsgi_app = "wsgi:app"
bind = [settings["bind"]]
worker_class = "gthread"
workers = settings["workers"]
threads = settings["threads"]
# A `Prefer: wait` request or a live MISS may hold a thread for 60 s: let it finish on a
# graceful stop (SIGTERM, deploys) before the worker is killed.
graceful_timeout = settings["graceful_timeout"]
timeout = settings["timeout"]
keepalive = settings["keepalive"]
accesslog = "-"
errorlog = "-"
loglevel = settings["log_level"]
proc_name = "pictor-web"
# gunicorn's control socket defaults to one path per user, which two web services on a host
# would share: off unless GUNICORN_CONTROL_SOCKET names a path (systemd and signals suffice).
control_socket_disable = settings["control_socket"] is None
if settings["control_socket"]:
    control_socket = settings["control_socket"]


class JsonLogger(Logger):
    """Access lines as JSON (time, method, path, status, duration_ms, request_id, remote)."""

    def setup(self, cfg) -> None:  # noqa: ANN001
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter_for(settings["log_format"]))

    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        entry = {
            "time": timestamp(),
            "logger": "gunicorn.access",
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "request_id": atoms.get("{x-request-id}o"),
            "remote": atoms["h"],
        }
        self.access_log.info(json.dumps(entry, ensure_ascii=False))


logger_class = JsonLogger


def on_starting(server) -> None:  # noqa: ANN001
    """Start each run of the web service with empty Prometheus multiprocess files."""
    directory = settings["prometheus_multiproc_dir"]
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server, worker) -> None:  # noqa: ANN001
    """Let the metrics of a finished worker process stop counting as live."""
    if settings["prometheus_multiproc_dir"]:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, settings["prometheus_multiproc_dir"])
