"""Lua scripts on the shared Redis for the hottest requests (the rate-limit count of every API
request, a live HIT), each run on a connection of the calling thread's own.

redis-py's general path (connection pool checkout and release, retry wrapper, metrics hooks)
costs as much client CPU as sending the command and reading the reply; a thread that keeps
its own connection skips all of it. The connection is made from the client's pool settings,
once per thread and process; on a connection error it is closed (the next call reconnects)
and the error raised as redis-py raises it, so callers handle an outage as before. A thread
that ends takes its connection with it (redis-py closes a collected connection); gunicorn's
threads live as long as their worker.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, ResponseError

if TYPE_CHECKING:
    from redis import Redis
    from redis.connection import AbstractConnection

_local = threading.local()


class SharedScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, shared: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = _connection(shared)
        try:
            try:
                connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
                return connection.read_response()
            except NoScriptError:  # first use since Redis started: send the source
                connection.send_command("EVAL", self.source, len(keys), *keys, *args)
                return connection.read_response()
        except ResponseError:
            raise  # an error reply: the connection is fine
        except BaseException:
            connection.disconnect()  # it may hold half a reply
            raise


def _connection(shared: Redis) -> AbstractConnection:
    pool = shared.connection_pool
    # pool → (pid, connection); a pool no longer used is dropped with its connection
    mine: weakref.WeakKeyDictionary[Any, tuple[int, AbstractConnection]]
    mine = _local.__dict__.setdefault("mine", weakref.WeakKeyDictionary())
    found = mine.get(pool)
    if found is None or found[0] != os.getpid():
        mine[pool] = found = (os.getpid(), pool.connection_class(**pool.connection_kwargs))
    return found[1]
