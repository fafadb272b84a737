"""Scale-out throughput: GET /api/v1/generations/{id} against one web host vs two.

Builds the hosts of tests/scaleout/test_netns.py (network namespaces on this machine: web hosts
running `gunicorn -c gunicorn.conf.py wsgi:app`, a worker host, shared PostgreSQL through a
forwarder, a private Redis and moto S3), finishes one generation, then drives a closed-loop
load of CLIENTS threads (keep-alive connections) for DURATION seconds: first all against web
host A, then split evenly across A and B. Repeated ROUNDS times; prints requests/s, latency
and the ratio two/one.

Needs root for `ip netns`. Run from the repository root:

  python bench/scaleout.py

Record results in bench/RESULTS.md and docs/deploy.md ("Measured scale-out").
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scaleout.hosts import Cluster, Host, netns_unavailable  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


def drive(
    targets: list[Host], path: str, headers: dict[str, str], clients: int, duration: float
) -> dict[str, float]:
    """Closed loop: each client thread sends the next request when the previous one answered."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        host = targets[index % len(targets)]
        conn = http.client.HTTPConnection(host.address, 8000, timeout=10)
        start.wait()
        while (now := time.perf_counter()) < deadline[0]:
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host.address, 8000, timeout=10)
                ok = False
            if ok:
                latencies[index].append(time.perf_counter() - now)
            else:
                errors[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + duration
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join(duration + 30)
    elapsed = time.perf_counter() - started
    done = [value for per_client in latencies for value in per_client]
    return {
        "rps": len(done) / elapsed,
        "p50_ms": statistics.median(done) * 1000 if done else 0.0,
        "p99_ms": percentile(done, 99) * 1000 if done else 0.0,
        "errors": sum(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--web-concurrency", default="2")
    parser.add_argument("--threads", default="8")
    args = parser.parse_args()
    reason = netns_unavailable()
    if reason:
        print(f"cannot build hosts: {reason}", file=sys.stderr)
        return 2

    cluster = Cluster(
        Path(tempfile.mkdtemp(prefix="pictor-scaleout-bench-")),
        env={
            "WEB_CONCURRENCY": args.web_concurrency,
            "GUNICORN_THREADS": args.threads,
            "RATELIMIT_DEFAULT": "100000000/hour",
            "PICTOR_LOG_LEVEL": "WARNING",
        },
    ).start()
    try:
        a, b = cluster.web
        headers = cluster.headers()
        created = http.client.HTTPConnection(a.address, 8000, timeout=60)
        created.request(
            "POST",
            "/api/v1/generations",
            body=b'{"prompt": "benchmark subject"}',
            headers={**headers, "Content-Type": "application/json", "Prefer": "wait=60"},
        )
        response = created.getresponse()
        body = response.read().decode()
        assert response.status == 201, body
        generation_id = json.loads(body)["data"]["id"]
        path = f"/api/v1/generations/{generation_id}"

        drive([a, b], path, headers, args.clients, 3)  # warm-up: connections, pools, caches
        print(f"command: python bench/scaleout.py {shlex.join(sys.argv[1:])}".rstrip())
        print(
            f"GET {path.replace(generation_id, '{id}')}, {args.clients} closed-loop clients, "
            f"{args.duration:.0f} s per measurement; each web host: gunicorn gthread, "
            f"WEB_CONCURRENCY={args.web_concurrency}, GUNICORN_THREADS={args.threads}; "
            f"{os.cpu_count()} CPUs, load average before: "
            f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
        )
        print(f"{'round':>5} {'hosts':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        ratios = []
        for round_number in range(1, args.rounds + 1):
            results = {}
            for label, targets in (("one", [a]), ("two", [a, b])):
                results[label] = drive(targets, path, headers, args.clients, args.duration)
                r = results[label]
                print(
                    f"{round_number:>5} {len(targets):>5} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} "
                    f"{r['p99_ms']:>8.1f} {r['errors']:>6}"
                )
            ratios.append(results["two"]["rps"] / results["one"]["rps"])
            print(f"round {round_number}: two hosts / one host = {ratios[-1]:.2f}")
        print(f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
