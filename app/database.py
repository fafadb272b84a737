"""How requests use the database connections: few round trips, none spent on bookkeeping
(measured by bench/api_bench.py, docs/decisions.md "Request cost").

- **Liveness without a round trip.** Instead of `pool_pre_ping` (a `SELECT 1`-like ping before
  every checkout), a pooled PostgreSQL connection is checked by looking at its socket: an idle
  connection has nothing to read, so a readable socket means the server sent its goodbye
  (restart, `pg_terminate_backend`, idle timeout) or hung up. Such a connection is dropped, with
  every connection pooled before it, as a failed pre-ping would; the request gets a new one.
- **A hot statement can skip SQLAlchemy's per-execution work** (`fetch_one`, `DirectRead`):
  ~0.15 ms of CPU per statement, as much as the statement costs the database, and ~1 ms for a
  row of 60 columns read as ORM objects. Used by the live HIT and GET /generations/{id}.
- **Read-only views run without a transaction.** A GET view marked `@read_only` gets an
  autocommitting connection: no `BEGIN` before its first query and no `ROLLBACK` at the end.
  Under READ COMMITTED every statement takes its own snapshot anyway, so the reads see exactly
  what they saw inside a transaction. Only views that never write may be marked.
- **A statement that is a transaction by itself is sent alone**, through the driver
  (`DirectRead`), autocommitted: one round trip instead of three (`BEGIN`, the statement,
  `COMMIT`), and none of the ORM's per-statement work. A generation's job claims its row and
  saves its stages so.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import flask_sqlalchemy.session
from flask import current_app, has_request_context, request
from sqlalchemy import Engine, Select, Update, event, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")
READ_METHODS = frozenset({"GET", "HEAD"})
_AUTOCOMMIT = "_pictor_autocommit"  # the attribute an engine keeps its autocommitting form in


def read_only(view: F) -> F:
    """Mark a view that only reads: its queries autocommit (no transaction around them)."""
    view.reads_only = True  # type: ignore[attr-defined]
    return view


def _request_reads_only() -> bool:
    if not has_request_context() or request.method not in READ_METHODS:
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "reads_only", False)


def _autocommit(engine: Engine) -> Engine:
    """The engine's autocommitting form, made once and kept on the engine: a cycle that is
    freed with it. (Kept in a WeakKeyDictionary it never was: the value refers to its key, so
    every engine a process made, pool and statement cache included, stayed alive.)"""
    found = getattr(engine, _AUTOCOMMIT, None)
    if found is None:
        found = engine.execution_options(isolation_level="AUTOCOMMIT")
        setattr(engine, _AUTOCOMMIT, found)
    return found


def attached(session: OrmSession, model: type[M], values: dict[str, Any]) -> M:
    """The row of `model` whose columns are `values` (as a DirectRead returned them), in
    `session` as if the session had loaded it: nothing to flush, no statement. An instance of
    that row already in the session takes the values (as `populate_existing` would)."""
    mapper = inspect(model)
    key = mapper.identity_key_from_primary_key([values[c.key] for c in mapper.primary_key])
    instance = session.identity_map.get(key)
    if instance is not None:
        for name, value in values.items():
            set_committed_value(instance, name, value)
        return instance
    instance = model(**values)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


def expire_loaded(
    session: OrmSession, model: type, key: Any, attributes: list[str] | None = None
) -> None:
    """After a statement that bypassed the ORM changed a row: its instance, if the session
    has it loaded, reads it again when next used (all of it, or `attributes`)."""
    instance = session.identity_map.get(session.identity_key(model, key))
    if instance is not None:
        session.expire(instance, attributes)


def commit_open(session: OrmSession) -> None:
    """Commit the session's transaction, if one is open: before a statement sent on a
    connection of its own, which must neither wait for it nor be committed with it."""
    if session.in_transaction():
        session.commit()


@contextmanager
def kept_across_commits(session: OrmSession) -> Iterator[None]:
    """The session's commits in the block leave its objects loaded instead of expired (each
    expiry costs a SELECT at the next attribute read). For objects whose rows the code changes
    only through them, or sets what it wrote on them."""
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    try:
        yield
    finally:
        session.expire_on_commit = expire_on_commit


def commit_keeping(session: OrmSession, kept: object) -> None:
    """Commit, leaving `kept` loaded: what it holds is what the transaction just wrote (no
    SELECT when it is read next). Everything else in the session is expired, as a commit
    does (other rows may have been changed by bulk statements)."""
    expiring = session.expire_on_commit
    with kept_across_commits(session):
        session.commit()
    if expiring:
        for instance in list(session.identity_map.values()):
            if instance is not kept:
                session.expire(instance)


class Session(flask_sqlalchemy.session.Session):
    """`db.session`: bound to the autocommitting form of the engine in a `@read_only` view."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any):  # noqa: ANN201
        engine = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if bind is None and isinstance(engine, Engine) and _request_reads_only():
            return _autocommit(engine)
        return engine


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


def enforce_foreign_keys(engine: Engine) -> None:
    """SQLite checks foreign keys, and runs their ON DELETE actions, only when each connection
    asks: without it, deleting a project on the embedded default left its images, generations
    and live entries behind, and their public URLs kept answering. (Migrations turn it off for
    their own connection: a batch migration recreates tables, and dropping the old copy would
    cascade; see migrations/env.py.)"""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


def fetch_one(
    engine: Engine, sql: str, params: dict[str, Any], *, describe: bool = False
) -> tuple[tuple[Any, ...] | None, Any]:
    """Run one autocommitted statement (PostgreSQL, psycopg) on a pooled connection, straight
    through the driver: `sql` in the driver's `%(name)s` style, `params` already in the
    driver's types. The first row (or None) and, when asked (it costs as much as the row), the
    cursor's description. Errors come back as SQLAlchemy's, with a lost connection dropped from
    the pool, so a database outage answers 503 here as everywhere else."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    fairy = None
    try:
        fairy = engine.raw_connection()
        driver = fairy.driver_connection
        driver.autocommit = True
        try:
            cursor = driver.execute(sql, params)
            return cursor.fetchone(), cursor.description if describe else None
        finally:
            if not _lost(driver):
                driver.autocommit = False
    except dbapi_error as exc:
        lost = fairy is None or _lost(fairy.driver_connection)
        if fairy is not None and lost:
            fairy.invalidate(exc)
        raise DBAPIError.instance(
            sql, params, exc, dbapi_error, connection_invalidated=lost, dialect=engine.dialect
        ) from exc
    finally:
        if fairy is not None:
            fairy.close()


def _lost(driver: Any) -> bool:
    return bool(driver is None or driver.closed or driver.broken)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    constants: dict[str, Any]  # the statement's own values, as the driver takes them
    binders: dict[str, Callable[[Any], Any]]  # a parameter's bind processor, where it has one


class DirectRead:
    """A SELECT (or UPDATE … RETURNING) built once and run with `fetch_one` on PostgreSQL, its
    parameters and columns converted as SQLAlchemy converts them (a UTCDateTime is given and
    comes back timezone-aware); through the engine, autocommitted, on other databases."""

    def __init__(self, statement: Select[Any] | Update) -> None:
        self.statement = statement
        self._sql: dict[str, _Compiled] = {}
        self._processors: dict[str, list[Callable[[Any], Any] | None]] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._sql.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            binders = {
                name: binder
                for name, binder in (
                    (name, bind.type._cached_bind_processor(dialect))  # noqa: SLF001
                    for bind, name in compiled.bind_names.items()
                )
                if binder is not None
            }
            constants = {
                key: _processed(binders.get(key), value)
                for key, value in compiled.params.items()
                if value is not None
            }
            found = self._sql[dialect.name] = _Compiled(str(compiled), constants, binders)
        return found

    def _converters(self, dialect: Dialect, description: Any) -> list[Callable[[Any], Any] | None]:
        """Each column's result processor, worked out once from the driver's type codes."""
        found = self._processors[dialect.name] = [
            column.type._cached_result_processor(dialect, described.type_code)  # noqa: SLF001
            for column, described in zip(self.statement.exported_columns, description, strict=True)
        ]
        return found

    def first(self, engine: Engine, params: dict[str, Any]) -> tuple[Any, ...] | None:
        if engine.dialect.name != "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                row = conn.execute(self.statement, params).first()
            return None if row is None else tuple(row)
        compiled = self._compiled(engine.dialect)
        bound = {key: _processed(compiled.binders.get(key), value) for key, value in params.items()}
        converters = self._processors.get(engine.dialect.name)
        row, description = fetch_one(
            engine, compiled.sql, {**compiled.constants, **bound}, describe=converters is None
        )
        if row is None:
            return None
        if converters is None:
            converters = self._converters(engine.dialect, description)
        return tuple(
            _processed(convert, value) for convert, value in zip(converters, row, strict=True)
        )


def _processed(processor: Callable[[Any], Any] | None, value: Any) -> Any:
    """A value through SQLAlchemy's bind or result processor for its type, if it has one."""
    return value if processor is None or value is None else processor(value)
