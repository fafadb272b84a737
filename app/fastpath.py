"""The two reads that clients repeat most, answered before Flask builds a request: a HIT of a
public live URL (API.md §7) and an API-key poll of a generation this process remembers (§4).

Each answer is the one the Flask route gives, made by the same service calls, with the same
headers (tests/api/test_fastpath.py compares them), and counted in the same metrics; what is
skipped is the framework around them: the request context, the URL map, the session and the
dozen hooks that a request of this kind needs none of. Only a plain GET is taken (no cookie,
no query a route does not know); everything else, and every miss or error on the way, goes to
Flask untouched, which answers it as always. A request counted here for the rate limit and
then handed to Flask is not counted twice (`ratelimit.COUNTED_KEY`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)
from flask import Flask
from redis.exceptions import RedisError
from werkzeug.datastructures import EnvironHeaders, MultiDict
from werkzeug.exceptions import SecurityError

from app import metrics, observability, ratelimit, security
from app.api.auth import key_from_headers
from app.api.generations import kept_body
from app.errors import DomainError
from app.models import is_uuid
from app.services import api_keys, generations, live
from app.web.live import public_request, served_headers
from app.web.media import open_stored

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

LIVE_PREFIX = "/live/"
GENERATION_PREFIX = "/api/v1/generations/"
GENERATION_ENDPOINT = "api.get_generation"
LIVE_ENDPOINT = "live.live_image"
_REQUEST_ID = "HTTP_" + observability.REQUEST_ID_HEADER.upper().replace("-", "_")

Headers = list[tuple[str, str]]
Answer = tuple[Headers, Iterable[bytes]]


class FastPath:
    """WSGI middleware in front of the Flask app (`create_app` installs it)."""

    def __init__(self, app: Flask, flask: WSGIApplication) -> None:
        self.app = app
        self.flask = flask
        # What every response gets from app.security, and the Vary that Flask's session adds.
        self.common = security.response_headers(app.config["PRODUCTION"]) + [("Vary", "Cookie")]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and "HTTP_COOKIE" not in environ:
            path = environ.get("PATH_INFO", "")
            if path.startswith(LIVE_PREFIX):
                answer = self._answer(LIVE_ENDPOINT, self._live, path[len(LIVE_PREFIX) :], environ)
            elif path.startswith(GENERATION_PREFIX):
                rest = path[len(GENERATION_PREFIX) :]
                answer = self._answer(GENERATION_ENDPOINT, self._generation, rest, environ)
            else:
                answer = None
            if answer is not None:
                headers, body = answer
                start_response("200 OK", headers)
                return body
        return self.flask(environ, start_response)

    def _answer(
        self,
        endpoint: str,
        route: Callable[[str, WSGIEnvironment], Answer | None],
        resource_id: str,
        environ: WSGIEnvironment,
    ) -> Answer | None:
        if not is_uuid(resource_id):
            return None
        started = time.perf_counter()
        request_id = observability.accept_request_id(environ.get(_REQUEST_ID))
        with self.app.app_context(), observability.bind_request_id(request_id):
            try:
                found = route(resource_id, environ)
            except (DomainError, RedisError, OSError, SecurityError, ValueError):
                return None  # Flask answers it with its error handlers
            except Exception:
                log.exception("the fast path failed on %s; Flask answers it", endpoint)
                return None
            if found is None:
                return None
            metrics.count_request(endpoint, "GET", 200, time.perf_counter() - started)
        headers, body = found
        return headers + self.common + [(observability.REQUEST_ID_HEADER, request_id)], body

    def _live(self, project_id: str, environ: WSGIEnvironment) -> Answer | None:
        """A HIT of a public live URL: as app.web.live.live_image, less the MISS."""
        query = environ.get("QUERY_STRING", "").encode("latin1").decode()
        args = MultiDict(parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"))
        settings, prompt, ratio = public_request(project_id, args, EnvironHeaders(environ))
        served = live.hit(settings.project_id, live.cache_key(prompt, ratio))
        if served is None:
            return None
        # The hit is counted: from here a failure (a file gone from storage) reaches Flask,
        # which counts the hit again on the way to its error.
        body, size = open_stored(environ, served.storage_key)
        headers = [("Content-Type", served.mime_type)]
        if size is not None:
            headers.append(("Content-Length", str(size)))
        return headers + served_headers(served), body

    def _generation(self, generation_id: str, environ: WSGIEnvironment) -> Answer | None:
        """A poll of a generation by an API key this process remembers, of a read it
        remembers: as app.api.generations.get_generation, less every database statement."""
        if environ.get("QUERY_STRING"):
            return None
        plaintext = key_from_headers(
            environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION")
        )
        grant = api_keys.recall(plaintext) if plaintext else None
        if grant is None:
            return None
        counted = ratelimit.count(
            ratelimit.budget_for(GENERATION_ENDPOINT),
            ratelimit.key_identity(grant.key_id),
            ratelimit.epoch_key_for(GENERATION_ENDPOINT, {"generation_id": generation_id}),
        )
        environ[ratelimit.COUNTED_KEY] = counted  # for Flask, if it answers after all
        if not counted.allowed or not api_keys.trusted(grant.stamp, counted.auth_epoch):
            return None
        found = generations.recall(grant.project_id, generation_id, counted.endpoint_epoch)
        body = kept_body(found, environ) if found else None
        if body is None:
            return None
        del environ[ratelimit.COUNTED_KEY]
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        return headers + list(counted.window.headers().items()), [body]
