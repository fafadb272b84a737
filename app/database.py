"""How requests use the database connections: few round trips, none spent on bookkeeping
(measured by bench/api_bench.py, docs/decisions.md "Round trips").

- **Liveness without a round trip.** Instead of `pool_pre_ping` (a `SELECT 1`-like ping before
  every checkout), a pooled PostgreSQL connection is checked by looking at its socket: an idle
  connection has nothing to read, so a readable socket means the server sent its goodbye
  (restart, `pg_terminate_backend`, idle timeout) or hung up. Such a connection is dropped, with
  every connection pooled before it, as a failed pre-ping would; the request gets a new one.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError


def server_hung_up(dbapi_connection: Any) -> bool:
    """True when an idle connection's socket has something to read: the server's goodbye."""
    if dbapi_connection.closed:
        return True
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # noqa: BLE001  (psycopg raises once the connection is closed)
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def watch_connections(engine: Engine) -> None:
    """Check pooled PostgreSQL connections at checkout without a round trip (see above)."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "checkout")
    def drop_if_hung_up(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if server_hung_up(dbapi_connection):
            raise InvalidatePoolError("the server closed this pooled connection")
