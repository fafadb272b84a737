"""Pages of a list with a `total` that stays cheap on big tables (docs/decisions.md "Totals").

The rows of a page are fetched with one indexed query (`limit + 1` rows, so `has_more` is always
exact). `total` is an exact count while the filtered set has at most `EXACT_COUNT_CAP` rows —
counted through `LIMIT cap + 1`, so the work is bounded whatever the table size. Above the cap,
PostgreSQL's planner estimate is used (no scan at all), and the process remembers for
`LARGE_MEMO_SECONDS` that this set is large, so the next pages skip the capped count too.
Other databases count exactly (SQLite is the single-process embedded mode, not the place for
millions of rows).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, literal_column, select

from app.extensions import db

T = TypeVar("T")
EXACT_COUNT_CAP = 10_000
LARGE_MEMO_SECONDS = 60.0
_known_large: dict[Hashable, float] = {}  # set → monotonic time until which it counts as large


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    has_more: bool


def fetch_page(
    query: Select[Any], *, limit: int, offset: int, memo: Hashable | None = None
) -> Page[Any]:
    """One page of `query` (already filtered and ordered) with its total.

    `memo` names the filtered set (e.g. the project and the filters) so that a set found to be
    large is not counted again for a while.
    """
    rows = list(db.session.scalars(query.limit(limit + 1).offset(offset)))
    has_more = len(rows) > limit
    items = rows[:limit]
    if not has_more and (items or offset == 0):
        # The page reaches the end of the set: the total needs no counting.
        return Page(items, offset + len(items), False)
    total = count(query, memo=memo)
    if total > EXACT_COUNT_CAP:  # an estimate: keep it consistent with what was seen
        total = max(total, offset + len(items) + int(has_more))
    return Page(items, total, has_more)


def count(query: Select[Any], *, memo: Hashable | None = None) -> int:
    """Rows `query` selects: exact up to EXACT_COUNT_CAP, a planner estimate above (PostgreSQL)."""
    base = (
        query.order_by(None)
        .limit(None)
        .offset(None)
        .with_only_columns(literal_column("1"), maintain_column_froms=True)
    )
    postgres = db.engine.dialect.name == "postgresql"
    now = time.monotonic()
    if postgres and memo is not None and _known_large.get(memo, 0.0) > now:
        return max(_estimate(base), EXACT_COUNT_CAP + 1)
    capped = db.session.scalar(
        select(func.count()).select_from(base.limit(EXACT_COUNT_CAP + 1).subquery())
    )
    if capped <= EXACT_COUNT_CAP:
        return int(capped)
    if not postgres:
        return int(db.session.scalar(select(func.count()).select_from(base.subquery())))
    if memo is not None:
        if len(_known_large) > 1024:
            for stale in [key for key, until in _known_large.items() if until <= now]:
                del _known_large[stale]
        _known_large[memo] = now + LARGE_MEMO_SECONDS
    return max(_estimate(base), EXACT_COUNT_CAP + 1)


def _estimate(query: Select[Any]) -> int:
    compiled = query.compile(dialect=db.engine.dialect)
    plan = (
        db.session.connection()
        .exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])
