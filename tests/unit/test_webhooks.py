"""Client webhooks (API.md §9): a receiver on loopback checks every delivery's signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.errors import Invalid
from app.extensions import db
from app.models import WebhookDelivery, utcnow
from app.services import generations, webhooks


class Receiver:
    """A webhook endpoint on 127.0.0.1 that verifies Standard Webhooks signatures."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.deliveries: list[dict[str, Any]] = []
        self.statuses: deque[int] = deque()
        self.delay = 0.0
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.received:
                    receiver.deliveries.append(
                        {
                            "id": self.headers["webhook-id"],
                            "timestamp": self.headers["webhook-timestamp"],
                            "signature": self.headers["webhook-signature"],
                            "verified": receiver.verify(self.headers, body),
                            "body": json.loads(body),
                        }
                    )
                    receiver.received.notify_all()
                    status = receiver.statuses.popleft() if receiver.statuses else 204
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pictor"

    def verify(self, headers: Any, body: bytes) -> bool:
        """The Standard Webhooks check, written out independently of the code under test."""
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
        offered = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
        return fresh and any(hmac.compare_digest(expected, s) for s in offered)

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        with self.received:
            assert self.received.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(project):
    hooks = Receiver()
    hooks.secret = project.webhook_secret
    yield hooks
    hooks.close()


@pytest.fixture
def app_config():
    return {"PUBLIC_BASE_URL": "https://pictor.example", "WEBHOOK_RETRY_BASE_SECONDS": 0.2}


def test_signature_matches_the_standard_webhooks_test_vector():
    signature = webhooks.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_completed_generation_posts_one_signed_webhook(api, receiver):
    created = api.post("/api/v1/generations", json={"prompt": "a kite", "webhookUrl": receiver.url})
    generation_id = created.get_json()["data"]["id"]
    (delivery,) = receiver.wait_for(1)
    assert delivery["verified"]
    assert delivery["body"]["type"] == "generation.completed"
    data = delivery["body"]["data"]
    assert data["id"] == generation_id and data["status"] == "success"
    assert data["outputImage"]["url"].startswith("https://pictor.example/i/")
    time.sleep(1.5)
    assert len(receiver.deliveries) == 1
    row = db.session.scalar(db.select(WebhookDelivery))
    assert (row.id, row.status, row.attempts) == (delivery["id"], "delivered", 1)


def test_failed_generation_posts_generation_failed(app, project, user, receiver):
    app.config["EMBEDDED_WORKER"] = True
    generation, _ = generations.create(
        project, user, {"prompt": "x", "webhookUrl": receiver.url}, enqueue=False
    )
    generations.fail(generation.id, "WORKER_LOST", "The worker died")
    (delivery,) = receiver.wait_for(1)
    assert delivery["verified"] and delivery["body"]["type"] == "generation.failed"
    assert delivery["body"]["data"]["error"] == {
        "code": "WORKER_LOST",
        "message": "The worker died",
    }


def test_failed_tries_are_retried_with_the_same_webhook_id(api, receiver):
    receiver.statuses.extend([500, 503])
    api.post("/api/v1/generations", json={"prompt": "x", "webhookUrl": receiver.url})
    first, second, third = receiver.wait_for(3)
    assert first["id"] == second["id"] == third["id"]
    assert all(d["verified"] for d in (first, second, third))
    deadline = time.monotonic() + 10
    while True:
        db.session.expire_all()
        row = db.session.scalar(db.select(WebhookDelivery))
        if row.status == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 204)


@pytest.fixture
def quiet_delivery(app, project, user, receiver):
    """A delivery for a finished generation, driven by hand (no worker thread)."""
    app.config["EMBEDDED_WORKER"] = False
    generation, _ = generations.create(
        project, user, {"prompt": "x", "webhookUrl": receiver.url}, enqueue=False
    )
    generations.fail(generation.id, "PROVIDER_ERROR", "nope")
    return db.session.scalar(db.select(WebhookDelivery.id))


def _due(delivery_id: str) -> None:
    db.session.execute(
        db.update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(next_attempt_at=utcnow())
    )
    db.session.commit()


def test_six_tries_in_all_then_it_gives_up(quiet_delivery, receiver):
    receiver.statuses.extend([500] * 10)
    waits = []
    for _ in range(6):
        _due(quiet_delivery)
        assert webhooks.deliver(quiet_delivery) is False
        row = db.session.get(WebhookDelivery, quiet_delivery)
        if row.next_attempt_at:
            waits.append((row.next_attempt_at - utcnow()).total_seconds())
    assert row.status == "failed" and row.attempts == 6
    assert waits == sorted(waits) and len(waits) == 5  # exponential: each wait is longer
    _due(quiet_delivery)
    assert webhooks.deliver(quiet_delivery) is False
    assert len(receiver.deliveries) == 6


def test_a_try_that_is_not_due_is_not_sent(app, quiet_delivery, receiver):
    app.config["WEBHOOK_RETRY_BASE_SECONDS"] = 60
    receiver.statuses.append(500)
    _due(quiet_delivery)
    assert webhooks.deliver(quiet_delivery) is False
    assert webhooks.deliver(quiet_delivery) is False  # the retry is scheduled for later
    assert len(receiver.deliveries) == 1


def test_no_answer_in_time_counts_as_a_failed_try(app, quiet_delivery, receiver):
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 0.3
    receiver.delay = 1.0
    _due(quiet_delivery)
    assert webhooks.deliver(quiet_delivery) is False
    row = db.session.get(WebhookDelivery, quiet_delivery)
    assert row.status == "pending" and "Timeout" in row.last_error


def test_lost_schedules_are_picked_up_by_the_due_sweep(app, quiet_delivery, receiver):
    db.session.execute(
        db.update(WebhookDelivery).values(next_attempt_at=utcnow().replace(year=2020))
    )
    db.session.commit()
    app.config["EMBEDDED_WORKER"] = True
    assert webhooks.deliver_due() == 1
    (delivery,) = receiver.wait_for(1)
    assert delivery["verified"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
    ],
)
def test_private_and_non_http_urls_are_refused(app, url):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    with pytest.raises(Invalid) as refused:
        webhooks.validate_url(url)
    assert refused.value.code == "INVALID_WEBHOOK_URL"


def test_public_url_is_accepted(app):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    assert webhooks.validate_url("https://hooks.example.com/x") == "https://hooks.example.com/x"


def test_a_host_resolving_to_loopback_is_refused_at_delivery(app, quiet_delivery, receiver):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    db.session.execute(
        db.update(WebhookDelivery).values(url=receiver.url.replace("127.0.0.1", "localhost"))
    )
    db.session.commit()
    _due(quiet_delivery)
    assert webhooks.deliver(quiet_delivery) is False
    row = db.session.get(WebhookDelivery, quiet_delivery)
    assert row.status == "failed" and row.last_error.startswith("refused:")
    assert receiver.deliveries == []


def test_a_host_that_rebinds_to_loopback_after_the_check_is_not_followed(
    app, quiet_delivery, receiver, monkeypatch
):
    """DNS rebinding: the name is public when checked, loopback a moment later. The delivery
    connects to the address that was checked, so the receiver on loopback gets nothing."""
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 2
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["93.184.215.14"])  # public (and unreachable from here)

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    db.session.execute(
        db.update(WebhookDelivery).values(url=receiver.url.replace("127.0.0.1", "rebind.example"))
    )
    db.session.commit()
    _due(quiet_delivery)

    assert webhooks.deliver(quiet_delivery) is False
    assert receiver.deliveries == []
    row = db.session.get(WebhookDelivery, quiet_delivery)
    assert row.status != "success" and row.last_error


def _certificate_authority(tmp_path, host: str) -> tuple[str, ssl.SSLContext]:
    """A throwaway CA (its PEM file) and a server context with a certificate for `host`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def issue(subject, issuer, public_key, signing_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("Test CA", "Test CA", ca_key.public_key(), ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue(host, "Test CA", leaf_key.public_key(), ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return str(tmp_path / "ca.pem"), context


@pytest.mark.parametrize("name, delivered", [("hooks.test", True), ("other.test", False)])
def test_https_delivery_to_the_checked_address_verifies_the_urls_host(
    app, quiet_delivery, receiver, tmp_path, monkeypatch, name, delivered
):
    ca_file, context = _certificate_authority(tmp_path, "hooks.test")
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # the client trusts the throwaway CA
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        local = host in ("hooks.test", "other.test")
        return real_getaddrinfo("127.0.0.1" if local else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = receiver.server.server_address[1]
    db.session.execute(db.update(WebhookDelivery).values(url=f"https://{name}:{port}/hooks/x"))
    db.session.commit()
    _due(quiet_delivery)

    assert webhooks.deliver(quiet_delivery) is delivered
    if delivered:
        assert receiver.wait_for(1)[0]["verified"]
    else:  # a certificate for another name: refused before anything is sent
        assert receiver.deliveries == []
        error = db.session.get(WebhookDelivery, quiet_delivery).last_error
        assert error.startswith("SSLError") and "other.test" in error


def test_private_webhook_url_is_a_400_at_creation(app, api):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    response = api.post(
        "/api/v1/generations", json={"prompt": "x", "webhookUrl": "http://192.168.1.10/h"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "INVALID_WEBHOOK_URL"
