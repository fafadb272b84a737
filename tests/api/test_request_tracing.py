"""The request id of POST /generations follows the generation into its job and its webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import queue


class WebhookReceiver:
    """A client's webhook endpoint on loopback that remembers what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[dict[str, str], dict]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} webhooks came"
            time.sleep(0.05)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def test_the_request_id_reaches_the_job_and_the_webhook_of_its_generation(api, receiver):
    sent = {}
    for incoming in ("trace-generation-0001", None):
        headers = {"X-Request-Id": incoming} if incoming else {}
        response = api.post(
            "/api/v1/generations",
            json={"prompt": "a fox in the snow", "webhookUrl": receiver.url},
            headers=headers,
        )
        assert response.status_code == 202
        request_id = response.headers["X-Request-Id"]
        if incoming:
            assert request_id == incoming
        sent[response.get_json()["data"]["id"]] = request_id

    deliveries = receiver.wait_for(2)

    by_generation = {body["data"]["id"]: headers for headers, body in deliveries}
    assert set(by_generation) == set(sent)
    for generation_id, request_id in sent.items():
        assert by_generation[generation_id]["X-Request-Id"] == request_id
        job = queue.fetch_job(generation_id)
        assert job is not None and job.meta["request_id"] == request_id
