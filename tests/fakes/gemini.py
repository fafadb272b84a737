"""A fake Gemini API on a loopback port, spoken to by the real google-genai SDK.

Use it as a context manager or through the `fake_gemini` pytest fixture::

    from tests.fakes.gemini import FakeGemini, fake_gemini  # noqa: F401  (fixture import)

    def test_something(fake_gemini: FakeGemini) -> None:
        fake_gemini.enqueue_error(429)              # first call: rate limited
        fake_gemini.enqueue_image(png_bytes)        # second call: this image
        provider = get_provider(fake_gemini.config(GEMINI_RETRY_ATTEMPTS=2))
        ...
        assert fake_gemini.requests[-1]["path"].endswith("gemini-2.5-flash-image:generateContent")

`config(**overrides)` returns a provider config (a plain dict) pointing at the fake; in a Flask
test, `app.config.update(fake_gemini.config())` does the same. Queued answers are consumed in order,
one per request, whatever the model; with the queue empty, image models (or requests asking for
the IMAGE modality) get `DEFAULT_PNG` and other models get `DEFAULT_TEXT`. Each request is recorded
in `requests` as `{"path", "model", "json", "headers"}`.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

DEFAULT_TEXT = "A fake enhanced prompt, richly detailed."
_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def tiny_png(colour: tuple[int, int, int] = (200, 80, 40), size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


DEFAULT_PNG = tiny_png()


def image_body(data: bytes, mime_type: str = "image/png") -> dict[str, Any]:
    part = {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(data).decode()}}
    return _candidate([part], "STOP")


def text_body(text: str) -> dict[str, Any]:
    return _candidate([{"text": text}], "STOP")


def _candidate(parts: list[dict[str, Any]], finish_reason: str) -> dict[str, Any]:
    content = {"role": "model", "parts": parts}
    return {
        "candidates": [{"content": content, "finishReason": finish_reason, "index": 0}],
        "modelVersion": "fake",
    }


@dataclass
class _Answer:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    default_after_delay: bool = False


class FakeGemini:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._answers: deque[_Answer] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Provider settings aimed at this server, with fast retries."""
        settings: dict[str, Any] = {
            "IMAGE_PROVIDER": "gemini",
            "GEMINI_API_KEY": "fake-key",
            "GEMINI_BASE_URL": self.url,
            "GEMINI_TIMEOUT_MS": 5_000,
            "GEMINI_RETRY_ATTEMPTS": 3,
            "GEMINI_RETRY_BASE_DELAY": 0.01,
        }
        settings.update(overrides)
        return settings

    # --- scripting -----------------------------------------------------------------------------

    def enqueue(self, status: int, json_body: Any) -> None:
        self._push(_Answer(status, json.dumps(json_body).encode()))

    def enqueue_image(self, png_bytes: bytes = DEFAULT_PNG, mime_type: str = "image/png") -> None:
        self.enqueue(200, image_body(png_bytes, mime_type))

    def enqueue_text(self, text: str) -> None:
        self.enqueue(200, text_body(text))

    def enqueue_block(self, reason: str = "SAFETY") -> None:
        """The prompt itself was blocked: no candidates, only promptFeedback."""
        self.enqueue(200, {"promptFeedback": {"blockReason": reason}, "modelVersion": "fake"})

    def enqueue_finish(self, reason: str = "IMAGE_SAFETY") -> None:
        """A candidate that stopped for `reason` without any content."""
        candidate = {"finishReason": reason, "index": 0}
        self.enqueue(200, {"candidates": [candidate], "modelVersion": "fake"})

    def enqueue_error(self, status: int, message: str | None = None) -> None:
        name = _STATUS_NAMES.get(status, "UNKNOWN")
        error = {"code": status, "message": message or f"fake {name.lower()}", "status": name}
        self.enqueue(status, {"error": error})

    def enqueue_hang(self, seconds: float) -> None:
        """Wait `seconds` before answering (with the default answer), to trip client timeouts."""
        self._push(_Answer(delay=seconds, default_after_delay=True))

    def enqueue_garbage(self) -> None:
        self._push(_Answer(200, b"{not json at all"))

    def _push(self, answer: _Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    def _next_answer(self) -> _Answer | None:
        with self._lock:
            return self._answers.popleft() if self._answers else None

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    @property
    def pending(self) -> int:
        """Queued answers not consumed yet."""
        with self._lock:
            return len(self._answers)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _default_answer(model: str, body: Any) -> _Answer:
    modalities = []
    if isinstance(body, dict):
        modalities = body.get("generationConfig", {}).get("responseModalities") or []
    if "image" in model or "IMAGE" in modalities:
        return _Answer(200, json.dumps(image_body(DEFAULT_PNG)).encode())
    return _Answer(200, json.dumps(text_body(DEFAULT_TEXT)).encode())


def _handler_for(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw or b"null")
            except ValueError:
                body = None
            match = _PATH.match(self.path.split("?", 1)[0])
            model = match["model"] if match else ""
            fake._record(
                {"path": self.path, "model": model, "json": body, "headers": dict(self.headers)}
            )
            if not match:
                self._send(_Answer(404, b'{"error": {"code": 404, "status": "NOT_FOUND"}}'))
                return
            answer = fake._next_answer() or _default_answer(model, body)
            if answer.delay and fake._closing.wait(answer.delay):
                return
            if answer.default_after_delay:
                answer = _default_answer(model, body)
            self._send(answer)

        def _send(self, answer: _Answer) -> None:
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the client gave up (timeout) and closed the connection

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    """A running FakeGemini, closed after the test."""
    with FakeGemini() as server:
        yield server
