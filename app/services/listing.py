"""Pages of a list with a `total` that stays cheap on big tables (docs/decisions.md "Totals").

The rows of a page are fetched with one indexed query (`limit + 1` rows, so `has_more` is always
exact). `total` is an exact count while the filtered set has at most `EXACT_COUNT_CAP` rows —
counted through `LIMIT cap + 1`, so the work is bounded whatever the table size. Above the cap,
PostgreSQL's planner estimate is used (no scan at all); other databases count exactly (SQLite is
the single-process embedded mode, not the place for millions of rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, literal_column, select

from app.extensions import db

T = TypeVar("T")
EXACT_COUNT_CAP = 10_000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    has_more: bool


def fetch_page(query: Select[Any], *, limit: int, offset: int) -> Page[Any]:
    """One page of `query` (already filtered and ordered) with its total."""
    rows = list(db.session.scalars(query.limit(limit + 1).offset(offset)))
    has_more = len(rows) > limit
    items = rows[:limit]
    if not has_more and (items or offset == 0):
        # The page reaches the end of the set: the total needs no counting.
        return Page(items, offset + len(items), False)
    total = count(query)
    if total > EXACT_COUNT_CAP:  # an estimate: keep it consistent with what was seen
        total = max(total, offset + len(items) + int(has_more))
    return Page(items, total, has_more)


def count(query: Select[Any]) -> int:
    """Rows `query` selects: exact up to EXACT_COUNT_CAP, a planner estimate above (PostgreSQL)."""
    base = (
        query.order_by(None)
        .limit(None)
        .offset(None)
        .with_only_columns(literal_column("1"), maintain_column_froms=True)
    )
    capped = db.session.scalar(
        select(func.count()).select_from(base.limit(EXACT_COUNT_CAP + 1).subquery())
    )
    if capped <= EXACT_COUNT_CAP:
        return int(capped)
    if db.engine.dialect.name == "postgresql":
        return max(_estimate(base), EXACT_COUNT_CAP + 1)
    return int(db.session.scalar(select(func.count()).select_from(base.subquery())))


def _estimate(query: Select[Any]) -> int:
    compiled = query.compile(dialect=db.engine.dialect)
    plan = (
        db.session.connection()
        .exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])
