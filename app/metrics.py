"""Prometheus metrics for `GET /metrics` (API.md §10); every name starts with `pictor_`.

HTTP traffic is measured by the process that served it (aggregated across gunicorn workers
through PROMETHEUS_MULTIPROC_DIR). Generations, provider latency and credits are read from the
database at scrape time, one query each, and queue depth from Redis: they are cluster-wide facts
that no single process sees, and they stay right however many workers on however many hosts
did the work (RQ work-horses are forks, replaced every WORKER_HORSE_JOBS jobs or when they die,
each of which would leave a metrics file behind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select

from app.extensions import db
from app.observability import brief

log = logging.getLogger(__name__)

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90)
PROVIDER_BUCKETS_MS = (250, 500, 1000, 2500, 5000, 10_000, 20_000, 30_000, 60_000, 120_000)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LABELS = ("route", "method", "status")

# Our own registry, not prometheus_client's default one: the contract says every name starts
# with `pictor_`, so the default process_/python_ collectors are left out.
REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "pictor_http_requests",
    "HTTP requests served, by route (endpoint), method and status",
    LABELS,
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "pictor_http_request_duration_seconds",
    "Time to build the response, by route (endpoint), method and status",
    LABELS,
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)


def count_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    # The endpoint name, never the raw path: one series per route, whatever the ids in URLs.
    labels = (endpoint or "unmatched", method if method in METHODS else "OTHER", str(status))
    HTTP_REQUESTS.labels(*labels).inc()
    HTTP_LATENCY.labels(*labels).observe(seconds)


def init_app(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_response(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            elapsed = time.perf_counter() - started
            count_request(request.endpoint, request.method, response.status_code, elapsed)
        return response


def _process_registry() -> CollectorRegistry:
    directory = current_app.config.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return registry


def _generation_metrics() -> list[Metric]:
    """Generations by status and provider latency by model, from one grouped query."""
    from app.models import STATUSES, Generation

    provider_ms = Generation.provider_ms
    bucket_counts = [func.sum(case((provider_ms <= le, 1), else_=0)) for le in PROVIDER_BUCKETS_MS]
    rows = db.session.execute(
        select(
            Generation.status,
            Generation.model,
            func.count(),
            func.count(provider_ms),
            func.coalesce(func.sum(provider_ms), 0),
            *bucket_counts,
        ).group_by(Generation.status, Generation.model)
    ).all()

    by_status = dict.fromkeys(STATUSES, 0)
    latency: dict[str, list[int]] = {}
    for status, model, total, timed, sum_ms, *buckets in rows:
        by_status[status] = by_status.get(status, 0) + int(total)
        acc = latency.setdefault(model, [0, 0] + [0] * len(PROVIDER_BUCKETS_MS))
        for i, value in enumerate((timed, sum_ms, *buckets)):
            acc[i] += int(value or 0)

    generations = GaugeMetricFamily(
        "pictor_generations",
        "Generations in the database (deleted included), by status",
        labels=["status"],
    )
    for status, count in by_status.items():
        generations.add_metric([status], count)
    provider = HistogramMetricFamily(
        "pictor_provider_latency_seconds",
        "Time the image provider took per generation, by model",
        labels=["model"],
    )
    for model, (timed, sum_ms, *buckets) in sorted(latency.items()):
        if timed:
            cumulative = [
                (floatToGoString(le / 1000), count)
                for le, count in zip(PROVIDER_BUCKETS_MS, buckets, strict=True)
            ]
            provider.add_metric([model], [*cumulative, ("+Inf", timed)], sum_ms / 1000)
    return [generations, provider]


def _credit_metrics() -> list[Metric]:
    from app.models import CreditTransaction

    # Usage rows are negative and refunds positive: their sum, negated, is what was spent.
    spent = db.session.scalar(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.type.in_(("usage", "refund"))
        )
    )
    return [
        CounterMetricFamily(
            "pictor_credits_spent",
            "Credits spent on generations, net of refunds (from the ledger)",
            value=-int(spent or 0),
        )
    ]


def _queue_metrics() -> list[Metric]:
    from rq import Queue, Worker

    from app.queue import QUEUES, get_redis

    conn = get_redis()
    names = set(QUEUES) | {q.name for q in Queue.all(connection=conn)}
    depth = GaugeMetricFamily(
        "pictor_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
    )
    for name in sorted(names):
        depth.add_metric([name], Queue(name, connection=conn).count)
    workers = GaugeMetricFamily(
        "pictor_workers", "RQ workers registered in Redis", value=Worker.count(connection=conn)
    )
    return [depth, workers]


def _read(dependency: str, read, up: GaugeMetricFamily) -> list[Metric]:  # noqa: ANN001
    """Run one scrape-time reader; a dependency that is down drops its metrics, never the page."""
    try:
        metrics = read()
    except Exception as exc:  # noqa: BLE001  (whatever broke, /metrics still answers)
        log.warning("metrics: could not read %s: %s", dependency, brief(exc))
        if dependency == "database":
            db.session.rollback()
        up.add_metric([dependency], 0)
        return []
    up.add_metric([dependency], 1)
    return metrics


class _Scrape:
    """Everything one scrape exposes: this host's processes plus the shared state."""

    def collect(self) -> Iterator[Metric]:
        yield from _process_registry().collect()
        up = GaugeMetricFamily(
            "pictor_dependency_up",
            "Whether the scrape could read a dependency (1) or not (0)",
            labels=["dependency"],
        )
        shared: Iterable[Metric] = [
            *_read("database", lambda: _generation_metrics() + _credit_metrics(), up),
            *_read("queue", _queue_metrics, up),
        ]
        info = GaugeMetricFamily("pictor_build_info", "The running version", labels=["version"])
        info.add_metric([current_app.config["VERSION"]], 1)
        yield from shared
        yield up
        yield info


def render(accept: str | None) -> tuple[bytes, str]:
    """The exposition (text format, or OpenMetrics if asked) and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Scrape()), content_type
