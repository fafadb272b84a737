"""Epochs: random tokens in the shared Redis that tell a process when what it remembers from
the database may have become wrong.

A process that keeps a database read in memory (an authenticated API key, a live cache entry)
stamps it with the epoch it read from Redis *before* reading the rows, and trusts it only
while the epoch is still the same. Every commit that could make such a memory wrong replaces
the epoch after it commits, so a stamp can only be current if the rows it was taken with are.
Redis losing its data loses the epoch as well, and a stamp is never empty, so a lost epoch
matches nothing. If the epoch cannot be replaced (Redis unreachable at that moment), the
memories' own time limit is the bound, which is why every user of an epoch has one.

Which changes replace an epoch is declared once per epoch (`Epoch.watched`) and found by the
session's flush, whatever service made them; a bulk statement that the flush cannot see says
so itself with `note_change`.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

_PENDING = "pictor.epochs_changed"  # session.info: the epochs a commit will replace
_BULK = "pictor.epochs_bulk"  # session.info: epochs whose watched rows a bulk statement changed


class UnnotedChange(RuntimeWarning):
    """A bulk statement changed rows an epoch watches, and nothing said which scopes."""


@dataclass(eq=False)
class Epoch:
    """One epoch. `watched` maps a model to the attributes whose change replaces it; a
    deletion of any watched model replaces it too. `forget(scope)` drops this process's
    memories (of that scope). With `scope_of`, there is one epoch per scope (a project, say),
    named by `scope_of(changed instance)`: a change in one scope leaves the others' memories
    trusted. Without it, one epoch for everything (scope None)."""

    key: str
    watched: Mapping[type, tuple[str, ...]]
    forget: Callable[[str | None], None]
    remember_for: float  # seconds a memory is trusted at most, whatever the epoch says
    what: str = field(default="remembered rows")  # for the log line when it cannot be replaced
    scope_of: Callable[[Any], str | None] | None = None  # None: the change is in no scope
    expire_after: int | None = None  # seconds Redis keeps a scope's epoch (many scopes)

    def key_for(self, scope: str | None) -> str:
        return self.key if scope is None else f"{self.key}:{scope}"

    def read(self, shared: Redis, scope: str | None = None) -> str:
        """The current epoch, created if Redis has none (first use, or a restart that lost it)."""
        key = self.key_for(scope)
        with shared.pipeline(transaction=False) as pipe:
            pipe.set(key, uuid.uuid4().hex, nx=True, ex=self.expire_after)
            pipe.get(key)
            _, value = pipe.execute()
        return value_of(value)

    def replace(self, scopes: set[str | None], *, publish: tuple[str, str] | None = None) -> None:
        """Forget here and make every other process forget (by a new epoch), per scope. With
        `publish` (channel, message), the message then goes to the queue's subscribers
        (`queue.publish`): in the same round trip as the new epochs when they live on the
        queue's Redis."""
        from app import queue, ratelimit

        for scope in scopes:
            self.forget(scope)
        shared = ratelimit.shared_redis()
        together = (
            publish is not None and shared is not None and ratelimit.shared_redis_is_the_queues()
        )
        if shared is not None:
            try:
                with shared.pipeline(transaction=False) as pipe:
                    for scope in scopes:
                        pipe.set(self.key_for(scope), uuid.uuid4().hex, ex=self.expire_after)
                    if together:
                        pipe.publish(*publish)
                    pipe.execute()
            except RedisError:
                log.warning(
                    "could not replace %s: other processes may use stale %s for up to %s s",
                    self.key,
                    self.what,
                    self.remember_for,
                )
        if publish is not None and not together:
            queue.publish(*publish)

    def is_current(self, stamp: str, epoch: str) -> bool:
        """Whether a memory stamped `stamp` may be trusted under an unscoped `epoch` (as Redis
        returned it with the request's other work); forgets every memory when not."""
        if stamp and hmac.compare_digest(stamp, epoch):
            return True
        self.forget(None)
        return False

    def changes(self, session: Session) -> set[str | None]:
        """The scopes a flush changed ({None} for an unscoped epoch, empty for none)."""
        changed: set[str | None] = set()
        for instance in session.deleted:
            if type(instance) in self.watched:
                changed.add(self._scope(instance))
        for instance in session.dirty:
            names = self.watched.get(type(instance))
            if names:
                state = inspect(instance)
                if any(state.attrs[name].history.has_changes() for name in names):
                    changed.add(self._scope(instance))
        if self.scope_of is not None:
            changed.discard(None)  # changes in no scope
        return changed

    def _scope(self, instance: Any) -> str | None:
        return None if self.scope_of is None else self.scope_of(instance)


class Memory:
    """Database reads a process keeps, each under a scope of an epoch and stamped with the
    epoch it read before the rows. `recall` gives one back only while the epoch it is asked
    with is still that stamp; `peek` gives it with its stamp, for a caller that checks the
    stamp elsewhere (in a Redis script, say). Nothing is given back after `remember_for`
    seconds, and at most `at_most` reads are kept (all are dropped when full: they are read
    again)."""

    def __init__(self, remember_for: float, at_most: int) -> None:
        self.remember_for = remember_for
        self.at_most = at_most
        self._found: dict[tuple[str | None, Hashable], tuple[Any, str, float]] = {}
        self._keys: dict[str | None, set[Hashable]] = {}  # scope → its keys, to forget it

    def peek(self, scope: str | None, key: Hashable) -> tuple[Any, str] | None:
        found = self._found.get((scope, key))
        if found is None or time.monotonic() >= found[2]:
            return None
        return found[0], found[1]

    def recall(self, scope: str | None, key: Hashable, epoch: str) -> Any | None:
        found = self.peek(scope, key)
        if found is None:
            return None
        value, stamp = found
        if hmac.compare_digest(stamp, epoch):
            return value
        self.forget(scope)
        return None

    def remember(self, scope: str | None, key: Hashable, value: Any, stamp: str) -> None:
        if not stamp:  # an empty stamp would match a lost epoch
            return
        if (scope, key) not in self._found and len(self._found) >= self.at_most:
            self.forget(None)
        self._found[(scope, key)] = (value, stamp, time.monotonic() + self.remember_for)
        self._keys.setdefault(scope, set()).add(key)

    def forget(self, scope: str | None) -> None:
        """Drop the reads of `scope` (of every scope: None)."""
        if scope is None:
            self._found.clear()
            self._keys.clear()
            return
        for key in self._keys.pop(scope, ()):
            self._found.pop((scope, key), None)


_epochs: list[Epoch] = []


def register(epoch: Epoch) -> Epoch:
    _epochs.append(epoch)
    return epoch


def value_of(raw: Any) -> str:
    """An epoch as Redis returned it (bytes, or None when it has none): empty for none."""
    return raw.decode() if isinstance(raw, bytes) else ""


def note_change(session: Session, epoch: Epoch, scopes: Iterable[str | None] = (None,)) -> None:
    """For a change the flush cannot see (a bulk statement): replace `epoch` (of `scopes`)
    after the commit."""
    pending: dict[Epoch, set[str | None]] = session.info.setdefault(_PENDING, {})
    pending.setdefault(epoch, set()).update(scopes)


@event.listens_for(Session, "after_flush")
def _watch(session: Session, _context: Any) -> None:
    for epoch in _epochs:
        if changed := epoch.changes(session):
            note_change(session, epoch, changed)


@event.listens_for(Session, "do_orm_execute")
def _watch_bulk(state: ORMExecuteState) -> None:
    """Bulk UPDATE and DELETE statements of watched rows, which the flush does not see: each
    must say what it changed with `note_change` before the commit (checked after it)."""
    if not (state.is_update or state.is_delete) or state.bind_mapper is None:
        return
    model = state.bind_mapper.class_
    values = getattr(state.statement, "_values", None)
    # None: any column (a DELETE, or an UPDATE whose values come with its parameters)
    changed = {getattr(column, "key", column) for column in values} if values else None
    for epoch in _epochs:
        names = epoch.watched.get(model)
        if names is not None and (changed is None or changed.intersection(names)):
            state.session.info.setdefault(_BULK, set()).add(epoch)


@event.listens_for(Session, "after_commit")
def _replace_after_commit(session: Session) -> None:
    pending: dict[Epoch, set[str | None]] = session.info.pop(_PENDING, {})
    for epoch in session.info.pop(_BULK, set()) - pending.keys():
        if epoch.scope_of is None:
            pending[epoch] = {None}  # the one epoch: replacing it is always right
        else:
            warnings.warn(
                f"a bulk statement changed rows that {epoch.key} watches without note_change: "
                f"other processes may use stale {epoch.what} for up to {epoch.remember_for} s",
                UnnotedChange,
                stacklevel=2,
            )
    for epoch, scopes in pending.items():
        epoch.replace(scopes)


@event.listens_for(Session, "after_rollback")
def _forget_uncommitted(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_BULK, None)
